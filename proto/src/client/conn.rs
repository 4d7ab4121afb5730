//! The TCP (and TLS) side of the client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream, lookup_host};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ClientError, ClientTls};
use crate::base::{ClientType, ResultType, UserStatType};
use crate::codec::{LinkKind, PduCodec};
use crate::command::{Command, Request, cid};
use crate::crypto::password_digest;
use crate::io::{FrameReader, OutQueue, QueueError, WriteOptions, write_loop};
use crate::login::{ImLoginReq, ImLoginRes};
use crate::other::ImHeartBeat;
use crate::pdu::{Header, Pdu, decode_body};

/// How a client connection behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Default wait for a reply.
    pub request_timeout: Duration,
    /// Send a heartbeat when nothing was sent for this long (`None`: never). Stock clients
    /// use 5 s to 4 min; the original's test client 30 s; server links 5 s.
    pub heartbeat_interval: Option<Duration>,
    /// Close the connection when nothing at all was received for this long (`None`: never).
    /// Server links use 30 s (FLOWS.md 1.1).
    pub idle_timeout: Option<Duration>,
    /// Bytes that may wait in the outbound queue before sends fail with `Full`.
    pub queue_limit: usize,
    /// Which caps apply. A client talking to msg_server uses `Client` caps for what it
    /// receives... from the server's point of view; we accept server-sized frames from any
    /// server, so the default is `Server` (64 MiB inbound).
    pub link: LinkKind,
    /// Unsolicited PDUs buffered before the reader waits for the consumer.
    pub event_buffer: usize,
    /// Local address to bind before connecting (spread load-test sockets over 127.0.0.x).
    pub local_addr: Option<IpAddr>,
    /// Echo heartbeats that are not answers to our own (when playing a server's part).
    pub echo_heartbeats: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            heartbeat_interval: Some(Duration::from_secs(30)),
            idle_timeout: None,
            queue_limit: 64 << 20,
            link: LinkKind::Server,
            event_buffer: 1024,
            local_addr: None,
            echo_heartbeats: false,
        }
    }
}

/// What [`ImClient::login`] sends.
#[derive(Debug, Clone)]
pub struct LoginParams {
    /// Login name.
    pub user_name: String,
    /// Plain password; hashed with MD5 before sending, as stock clients do.
    pub password: String,
    /// Client type (decides PC/mobile rules on the server).
    pub client_type: ClientType,
    /// Requested presence.
    pub online_status: UserStatType,
    /// Free text, logged by the server.
    pub client_version: String,
}

impl LoginParams {
    /// A Windows client going online.
    pub fn new(user_name: impl Into<String>, password: impl Into<String>) -> Self {
        LoginParams {
            user_name: user_name.into(),
            password: password.into(),
            client_type: ClientType::Windows,
            online_status: UserStatType::UserStatusOnline,
            client_version: concat!("im-proto/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// Same, with another client type.
    pub fn with_client_type(mut self, client_type: ClientType) -> Self {
        self.client_type = client_type;
        self
    }
}

struct Pending {
    expect: u16,
    tx: oneshot::Sender<Pdu>,
}

struct Shared {
    out: OutQueue,
    pending: Mutex<HashMap<u16, Pending>>,
    next_seq: AtomicU16,
    closed: CancellationToken,
    config: ClientConfig,
    local: SocketAddr,
    peer: SocketAddr,
    last_rtt_micros: AtomicU64,
    pdus_in: AtomicU64,
    pdus_out: AtomicU64,
}

/// Closes the connection when the last [`ImClient`] handle is dropped.
struct CloseOnDrop(CancellationToken);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A connected client; cheap to clone, all clones share the connection.
#[derive(Clone)]
pub struct ImClient {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for ImClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImClient")
            .field("local", &self.shared.local)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

/// Unsolicited PDUs: notifications, deliveries, kicks, and replies nobody waited for.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Pdu>,
}

impl Events {
    /// The next PDU; `None` once the connection is closed and everything was read.
    pub async fn recv(&mut self) -> Option<Pdu> {
        self.rx.recv().await
    }

    /// The next PDU within `timeout` (`Ok(None)`: closed).
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Pdu>, ClientError> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .map_err(|_| ClientError::Timeout {
                command: "event",
                timeout,
            })
    }

    /// Waits for the next PDU carrying `M`, discarding other PDUs on the way.
    pub async fn next_of<M: Command>(&mut self, timeout: Duration) -> Result<M, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pdu = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| ClientError::Timeout {
                    command: M::NAME,
                    timeout,
                })?
                .ok_or(ClientError::Closed)?;
            if pdu.command_id() == M::COMMAND_ID {
                return Ok(pdu.decode::<M>()?);
            }
        }
    }

    /// PDUs already received, without waiting.
    pub fn try_recv(&mut self) -> Option<Pdu> {
        self.rx.try_recv().ok()
    }
}

impl ImClient {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(
        addr: &str,
        config: ClientConfig,
    ) -> Result<(ImClient, Events), ClientError> {
        let stream = tokio::time::timeout(config.connect_timeout, dial_any(addr, &config))
            .await
            .map_err(|_| ClientError::ConnectTimeout(addr.to_owned()))??;
        Ok(Self::from_stream(stream, config))
    }

    /// Connects to `addr` (`host:port`, without the `tls://` of config files) and runs the
    /// TLS handshake; `connect_timeout` covers both. A refused certificate is a
    /// [`ClientError::Connect`] whose source says why.
    pub async fn connect_tls(
        addr: &str,
        tls: &ClientTls,
        config: ClientConfig,
    ) -> Result<(ImClient, Events), ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let name = tls.server_name_for(addr).map_err(connect_err)?;
        let secured = tokio::time::timeout(config.connect_timeout, async {
            let stream = dial_any(addr, &config).await?;
            let _ = stream.set_nodelay(true);
            let (local, peer) = socket_addrs(&stream);
            let stream = tls
                .connector()
                .connect(name, stream)
                .await
                .map_err(connect_err)?;
            Ok::<_, ClientError>((stream, local, peer))
        })
        .await
        .map_err(|_| ClientError::ConnectTimeout(addr.to_owned()))??;
        let (stream, local, peer) = secured;
        Ok(Self::from_io(stream, local, peer, config))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream, config: ClientConfig) -> (ImClient, Events) {
        let _ = stream.set_nodelay(true);
        let (local, peer) = socket_addrs(&stream);
        // Owned halves: no lock between reader and writer on the plain path.
        let (read, write) = stream.into_split();
        Self::start(read, write, local, peer, config)
    }

    /// Wraps any connected byte stream (a TLS stream, an in-memory pipe); `local` and `peer`
    /// are what [`ImClient::local_addr`] and [`ImClient::peer_addr`] report.
    pub fn from_io<S>(
        io: S,
        local: SocketAddr,
        peer: SocketAddr,
        config: ClientConfig,
    ) -> (ImClient, Events)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        Self::start(read, write, local, peer, config)
    }

    fn start<R, W>(
        read: R,
        write: W,
        local: SocketAddr,
        peer: SocketAddr,
        config: ClientConfig,
    ) -> (ImClient, Events)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (ev_tx, ev_rx) = mpsc::channel::<Pdu>(config.event_buffer.max(1));
        let closed = CancellationToken::new();
        let shared = Arc::new(Shared {
            out: OutQueue::new(config.queue_limit),
            pending: Mutex::new(HashMap::new()),
            next_seq: AtomicU16::new(1),
            closed: closed.clone(),
            config,
            local,
            peer,
            last_rtt_micros: AtomicU64::new(0),
            pdus_in: AtomicU64::new(0),
            pdus_out: AtomicU64::new(0),
        });
        {
            let shared = shared.clone();
            let opts = WriteOptions {
                heartbeat_when_idle: shared.config.heartbeat_interval,
            };
            tokio::spawn(async move {
                let _ = write_loop(write, &shared.out, opts).await;
                shared.closed.cancel();
            });
        }
        let reader = FrameReader::new(read, PduCodec::new(shared.config.link));
        tokio::spawn(read_loop(reader, shared.clone(), ev_tx));
        let client = ImClient {
            shared,
            _guard: Arc::new(CloseOnDrop(closed)),
        };
        (client, Events { rx: ev_rx })
    }

    /// Local socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Peer socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Closes the connection; pending requests fail with [`ClientError::Closed`].
    pub fn close(&self) {
        self.shared.closed.cancel();
        self.shared.out.close(false);
    }

    /// Closes the connection after everything queued was written.
    pub fn close_after_flush(&self) {
        self.shared.out.close(true);
    }

    /// Frames waiting in the outbound queue.
    pub fn queue_depth(&self) -> usize {
        self.shared.out.depth()
    }

    /// Round-trip time of the last answered heartbeat.
    pub fn last_rtt(&self) -> Option<Duration> {
        match self.shared.last_rtt_micros.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// PDUs received and sent so far.
    pub fn pdu_counts(&self) -> (u64, u64) {
        (
            self.shared.pdus_in.load(Ordering::Relaxed),
            self.shared.pdus_out.load(Ordering::Relaxed),
        )
    }

    /// Allocates a seq_num: never 0 (unsolicited PDUs use 0), never one still pending.
    fn alloc_seq(&self) -> Result<u16, ClientError> {
        let pending = self
            .shared
            .pending
            .lock()
            .map_err(|_| ClientError::Closed)?;
        for _ in 0..=u16::MAX {
            let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
            if seq != 0 && !pending.contains_key(&seq) {
                return Ok(seq);
            }
        }
        Err(ClientError::SeqExhausted)
    }

    /// Queues raw frame bytes.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        self.shared.out.push(frame).map_err(|e| match e {
            QueueError::Closed => ClientError::Closed,
            QueueError::Full { queued, limit } => ClientError::QueueFull { queued, limit },
        })?;
        self.shared.pdus_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends a PDU as is.
    pub async fn send_pdu(&self, pdu: &Pdu) -> Result<(), ClientError> {
        self.send_frame(pdu.to_frame()).await
    }

    /// Sends `msg` with a fresh seq_num, without waiting for anything; returns the seq.
    pub async fn send<M: Command>(&self, msg: &M) -> Result<u16, ClientError> {
        let seq = self.alloc_seq()?;
        self.send_pdu(&Pdu::from_msg(msg, seq)).await?;
        Ok(seq)
    }

    /// Sends `pdu` (its seq_num is replaced by a fresh one) and waits for a reply with the
    /// same seq and command `expect`.
    pub async fn request_pdu(
        &self,
        mut pdu: Pdu,
        expect: u16,
        timeout: Duration,
    ) -> Result<Pdu, ClientError> {
        let seq = self.alloc_seq()?;
        pdu.header.seq_num = seq;
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(seq, Pending { expect, tx });
        if self.is_closed() {
            // The reader may already have cleared the pending table; do not wait for nothing.
            if let Ok(mut p) = self.shared.pending.lock() {
                p.remove(&seq);
            }
            return Err(ClientError::Closed);
        }
        let result = async {
            self.send_pdu(&pdu).await?;
            // The reader drops every waiter when the connection ends, so `rx` fails with
            // Closed then; a reply that arrived just before the close is still delivered.
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(pdu)) => Ok(pdu),
                Ok(Err(_)) => Err(ClientError::Closed),
                Err(_) => Err(ClientError::Timeout {
                    command: pdu.command_name(),
                    timeout,
                }),
            }
        }
        .await;
        if result.is_err()
            && let Ok(mut p) = self.shared.pending.lock()
        {
            p.remove(&seq);
        }
        result
    }

    /// Sends a request and waits for its typed answer, with the default timeout.
    pub async fn request<M: Request>(&self, msg: &M) -> Result<M::Response, ClientError> {
        let timeout = self.shared.config.request_timeout;
        self.request_timeout(msg, timeout).await
    }

    /// Sends a request and waits for its typed answer.
    pub async fn request_timeout<M: Request>(
        &self,
        msg: &M,
        timeout: Duration,
    ) -> Result<M::Response, ClientError> {
        let pdu = Pdu::from_msg(msg, 0);
        let reply = self
            .request_pdu(pdu, <M::Response as Command>::COMMAND_ID, timeout)
            .await?;
        Ok(decode_body::<M::Response>(&reply.body)?)
    }

    /// Sends a heartbeat and waits for the echo; returns the round-trip time.
    pub async fn heartbeat(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.request(&ImHeartBeat {}).await?;
        let rtt = start.elapsed();
        self.shared
            .last_rtt_micros
            .store(rtt.as_micros().max(1) as u64, Ordering::Relaxed);
        Ok(rtt)
    }

    /// Logs in on a msg_server; `Err(LoginRefused)` when the result code is not 0.
    pub async fn login(&self, params: &LoginParams) -> Result<ImLoginRes, ClientError> {
        let req = ImLoginReq {
            user_name: params.user_name.clone(),
            password: password_digest(&params.password),
            online_status: params.online_status as i32,
            client_type: params.client_type as i32,
            client_version: Some(params.client_version.clone()),
        };
        let res = self.request(&req).await?;
        if res.result_code != ResultType::RefuseReasonNone as i32 {
            return Err(ClientError::LoginRefused {
                code: res.result_code,
                message: res.result_string.clone().unwrap_or_default(),
            });
        }
        Ok(res)
    }
}

/// Resolves `addr` and connects to the first address that answers.
async fn dial_any(addr: &str, config: &ClientConfig) -> Result<TcpStream, ClientError> {
    let connect_err = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let mut last = None;
    for target in lookup_host(addr).await.map_err(connect_err)? {
        match dial(target, config.local_addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(connect_err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
}

fn socket_addrs(stream: &TcpStream) -> (SocketAddr, SocketAddr) {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    (
        stream.local_addr().unwrap_or(unknown),
        stream.peer_addr().unwrap_or(unknown),
    )
}

async fn dial(target: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    match local {
        None => TcpStream::connect(target).await,
        Some(ip) => {
            let socket = if target.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(target).await
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut frames: FrameReader<R>,
    shared: Arc<Shared>,
    events: mpsc::Sender<Pdu>,
) {
    let idle = shared.config.idle_timeout;
    loop {
        let next = tokio::select! {
            n = frames.next() => n,
            () = shared.closed.cancelled() => None,
            () = sleep_or_pending(idle) => {
                tracing::debug!(peer = %shared.peer, "closing: nothing received for {idle:?}");
                None
            }
        };
        let Some(Ok(pdu)) = next else { break };
        shared.pdus_in.fetch_add(1, Ordering::Relaxed);
        let seq = pdu.seq_num();
        let waiter = if seq == 0 {
            None
        } else {
            shared.pending.lock().ok().and_then(|mut p| {
                if p.get(&seq).is_some_and(|w| w.expect == pdu.command_id()) {
                    p.remove(&seq)
                } else {
                    None
                }
            })
        };
        if let Some(w) = waiter {
            let _ = w.tx.send(pdu);
            continue;
        }
        if pdu.command_id() == cid::CID_OTHER_HEARTBEAT {
            if shared.config.echo_heartbeats {
                let echo = Pdu::new(
                    Header::new(pdu.header.service_id, pdu.header.command_id, seq),
                    Bytes::new(),
                );
                let _ = shared.out.push(echo.to_frame());
            }
            continue;
        }
        // A dropped Events receiver just means nobody listens.
        let _ = events.send(pdu).await;
    }
    shared.closed.cancel();
    shared.out.close(false);
    // Fail every pending request now rather than at its timeout.
    if let Ok(mut p) = shared.pending.lock() {
        p.clear();
    }
}

async fn sleep_or_pending(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
