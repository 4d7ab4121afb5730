//! Reconnecting links to other servers (msg_server -> route_server, db_proxy, login_server...).
//!
//! An [`Upstream`] keeps one TCP link to one of a list of peers: it connects to the first that
//! answers (failover to the next on failure), runs the handler's registration
//! ([`UpstreamHandler::on_connect`], e.g. IMMsgServInfo or IMOnlineUserInfo, FLOWS.md 1.4),
//! feeds every inbound PDU to the handler, and after a drop reconnects with the backoff of
//! Decisions 3 (100 ms doubling to 1 s, jitter). Requests wait for their reply by seq_num.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use im_proto::Pdu;
use im_proto::client::{ClientConfig, ClientError, ClientTls, Events, ImClient, split_tls_addr};
use im_proto::codec::LinkKind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, BackoffConfig};

/// What a server does on its side of an upstream link.
pub trait UpstreamHandler: Send + Sync + 'static {
    /// Just connected: send what the peer must know first. An error drops the link and
    /// retries.
    fn on_connect(&self, link: &ImClient) -> impl Future<Output = Result<(), ClientError>> + Send {
        let _ = link;
        async { Ok(()) }
    }

    /// A PDU from the peer that is not the reply to one of our requests.
    fn on_pdu(&self, link: &ImClient, pdu: Pdu) -> impl Future<Output = ()> + Send;

    /// The link went down (called once per established link).
    fn on_disconnect(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Settings of one upstream link.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Peer kind for logs and stats ("route_server", "db_proxy_server"...).
    pub kind: &'static str,
    /// Peers to try, in order; the link uses one at a time. `tls://host:port` is dialled
    /// over TLS with [`UpstreamOptions::tls`].
    pub addrs: Vec<String>,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Heartbeat after this long without sending (FLOWS.md 1.1: 5 s).
    pub heartbeat: Duration,
    /// Drop the link after this long without receiving (FLOWS.md 1.1: 30 s).
    pub idle_timeout: Duration,
    /// Default wait for replies.
    pub request_timeout: Duration,
    /// Measure the round-trip time with an echoed heartbeat this often (None: never).
    /// Only peers that echo heartbeats answer; others simply leave the RTT unknown.
    pub rtt_probe: Option<Duration>,
    /// Bytes queued toward the peer before sends fail.
    pub queue_limit: usize,
    /// TLS settings for the `tls://` addresses (`[tls_client]`); such an address without
    /// them fails to connect, with a log line saying why.
    pub tls: Option<ClientTls>,
}

impl UpstreamOptions {
    /// Defaults for a link to `addrs` of kind `kind`.
    pub fn new(kind: &'static str, addrs: Vec<String>) -> Self {
        UpstreamOptions {
            kind,
            addrs,
            backoff: BackoffConfig::default(),
            heartbeat: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            rtt_probe: Some(Duration::from_secs(5)),
            queue_limit: 256 << 20,
            tls: None,
        }
    }
}

/// State of an upstream link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connected and registered.
    Connected,
    /// Trying to connect.
    Connecting,
    /// Waiting before the next attempt.
    Down,
}

/// A snapshot of an upstream link.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    /// Peer kind.
    pub kind: &'static str,
    /// Peer in use (or last tried).
    pub addr: String,
    /// State.
    pub state: LinkState,
    /// Time in this state.
    pub state_age: Duration,
    /// Last measured round-trip time.
    pub rtt: Option<Duration>,
    /// Successful connects minus one.
    pub reconnects: u64,
    /// PDUs received / sent on the current connection.
    pub pdus_in: u64,
    /// PDUs sent on the current connection.
    pub pdus_out: u64,
    /// Frames queued toward the peer.
    pub queue_depth: usize,
}

struct Shared {
    opts: UpstreamOptions,
    client: watch::Sender<Option<ImClient>>,
    status: Mutex<(LinkState, String, Instant)>,
    connects: AtomicU64,
}

/// A handle on an upstream link; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("kind", &self.shared.opts.kind)
            .field("addrs", &self.shared.opts.addrs)
            .finish()
    }
}

impl Upstream {
    /// Starts the link's task; it runs until `shutdown`.
    pub fn spawn<H: UpstreamHandler>(
        opts: UpstreamOptions,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> Upstream {
        let (tx, _) = watch::channel(None);
        let first = opts.addrs.first().cloned().unwrap_or_default();
        let shared = Arc::new(Shared {
            opts,
            client: tx,
            status: Mutex::new((LinkState::Connecting, first, Instant::now())),
            connects: AtomicU64::new(0),
        });
        tokio::spawn(run(shared.clone(), handler, shutdown));
        Upstream { shared }
    }

    /// Peer kind.
    pub fn kind(&self) -> &'static str {
        self.shared.opts.kind
    }

    /// The current connection, if up.
    pub fn client(&self) -> Option<ImClient> {
        self.shared
            .client
            .borrow()
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// True when connected and registered.
    pub fn is_connected(&self) -> bool {
        self.client().is_some()
    }

    /// Waits until connected, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.client.subscribe();
        let wait = async {
            loop {
                if rx
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|c| !c.is_closed())
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Sends a PDU as is; `Err(Closed)` when the link is down.
    pub async fn send(&self, pdu: &Pdu) -> Result<(), ClientError> {
        match self.client() {
            Some(c) => c.send_pdu(pdu).await,
            None => Err(ClientError::Closed),
        }
    }

    /// Sends a request (its seq_num is replaced) and waits for the reply with command
    /// `expect`.
    pub async fn request(&self, pdu: Pdu, expect: u16) -> Result<Pdu, ClientError> {
        let timeout = self.shared.opts.request_timeout;
        self.request_timeout(pdu, expect, timeout).await
    }

    /// Same with an explicit timeout.
    pub async fn request_timeout(
        &self,
        pdu: Pdu,
        expect: u16,
        timeout: Duration,
    ) -> Result<Pdu, ClientError> {
        match self.client() {
            Some(c) => c.request_pdu(pdu, expect, timeout).await,
            None => Err(ClientError::Closed),
        }
    }

    /// A snapshot for admin stats.
    pub fn status(&self) -> LinkStatus {
        let (state, addr, since) = self.shared.status.lock().map(|s| s.clone()).unwrap_or((
            LinkState::Down,
            String::new(),
            Instant::now(),
        ));
        let client = self.client();
        let (pdus_in, pdus_out) = client.as_ref().map_or((0, 0), |c| c.pdu_counts());
        LinkStatus {
            kind: self.shared.opts.kind,
            addr,
            state,
            state_age: since.elapsed(),
            rtt: client.as_ref().and_then(|c| c.last_rtt()),
            reconnects: self
                .shared
                .connects
                .load(Ordering::Relaxed)
                .saturating_sub(1),
            pdus_in,
            pdus_out,
            queue_depth: client.as_ref().map_or(0, |c| c.queue_depth()),
        }
    }
}

/// Connects to `addr`, over TLS when it is written `tls://host:port`.
async fn dial(
    addr: &str,
    tls: Option<&ClientTls>,
    config: &ClientConfig,
) -> Result<(ImClient, Events), ClientError> {
    match (split_tls_addr(addr), tls) {
        ((false, plain), _) => ImClient::connect(plain, config.clone()).await,
        ((true, host_port), Some(tls)) => {
            ImClient::connect_tls(host_port, tls, config.clone()).await
        }
        ((true, _), None) => Err(ClientError::Connect {
            addr: addr.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a tls:// address needs TLS settings ([tls_client] ca_file)",
            ),
        }),
    }
}

/// rustls errors reach us as `InvalidData` I/O errors; an address without TLS settings as
/// `InvalidInput`.
fn is_tls_failure(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { source, .. }
        if matches!(source.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput))
}

fn set_state(shared: &Shared, state: LinkState, addr: &str) {
    if let Ok(mut s) = shared.status.lock()
        && (s.0 != state || s.1 != addr)
    {
        *s = (state, addr.to_owned(), Instant::now());
    }
}

async fn run<H: UpstreamHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let opts = shared.opts.clone();
    let mut backoff = Backoff::new(opts.backoff);
    let mut next_addr = 0usize;
    let mut tls_warned = false;
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(3),
        request_timeout: opts.request_timeout,
        heartbeat_interval: Some(opts.heartbeat),
        idle_timeout: Some(opts.idle_timeout),
        queue_limit: opts.queue_limit,
        link: LinkKind::Server,
        event_buffer: 4096,
        local_addr: None,
        echo_heartbeats: false,
    };
    while !shutdown.is_cancelled() {
        if opts.addrs.is_empty() {
            set_state(&shared, LinkState::Down, "");
            shutdown.cancelled().await;
            break;
        }
        // One pass over the peer list, starting with the one that worked last.
        let mut connected = None;
        for i in 0..opts.addrs.len() {
            let idx = (next_addr + i) % opts.addrs.len();
            let addr = &opts.addrs[idx];
            set_state(&shared, LinkState::Connecting, addr);
            let attempt = tokio::select! {
                r = dial(addr, opts.tls.as_ref(), &config) => r,
                () = shutdown.cancelled() => return,
            };
            match attempt {
                Ok(c) => {
                    connected = Some((idx, c));
                    break;
                }
                Err(e) => {
                    // A refused certificate (or a plain peer on a tls:// address) is a
                    // configuration problem, not an outage: say so once per failing streak.
                    if is_tls_failure(&e) && !tls_warned {
                        tls_warned = true;
                        tracing::warn!(peer_kind = opts.kind, peer = %addr, error = %e,
                            "TLS handshake with the peer failed");
                    } else {
                        tracing::debug!(peer_kind = opts.kind, peer = %addr, error = %e, "connect failed");
                    }
                }
            }
        }
        let Some((idx, (client, mut events))) = connected else {
            let delay = backoff.next_delay();
            let addr = opts.addrs[next_addr % opts.addrs.len()].clone();
            set_state(&shared, LinkState::Down, &addr);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        };
        next_addr = idx;
        let addr = opts.addrs[idx].clone();
        // Registration happens before anyone else may use the link, so that the peer hears
        // IMMsgServInfo / IMOnlineUserInfo first.
        if let Err(e) = handler.on_connect(&client).await {
            tracing::warn!(peer_kind = opts.kind, peer = %addr, error = %e, "registration failed");
            client.close();
            let delay = backoff.next_delay();
            set_state(&shared, LinkState::Down, &addr);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        backoff.reset();
        tls_warned = false;
        let n = shared.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer_kind = opts.kind, peer = %addr, reconnect = n > 0, "upstream connected");
        set_state(&shared, LinkState::Connected, &addr);
        shared.client.send_replace(Some(client.clone()));

        let probe = opts.rtt_probe.map(|every| {
            let c = client.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if c.is_closed() {
                        break;
                    }
                    // Peers that do not echo heartbeats leave the RTT unknown; not an error.
                    let _ = c.heartbeat().await;
                }
            })
        });
        loop {
            let pdu = tokio::select! {
                p = events.recv() => p,
                () = shutdown.cancelled() => None,
            };
            let Some(pdu) = pdu else { break };
            handler.on_pdu(&client, pdu).await;
        }
        if let Some(p) = probe {
            p.abort();
        }
        client.close();
        shared.client.send_replace(None);
        set_state(&shared, LinkState::Down, &addr);
        handler.on_disconnect().await;
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(peer_kind = opts.kind, peer = %addr, "upstream link lost, reconnecting");
        // Reconnect quickly: the first retry after a drop uses the initial delay.
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
        // Try the peer that just worked first; the pass moves on to the others if it fails.
        next_addr = idx;
    }
}
