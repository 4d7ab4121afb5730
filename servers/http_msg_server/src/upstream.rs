//! Links to db_proxy and route_server (FLOWS.md 1.2, 1.4).
//!
//! * [`DbPool`]: `db_connections_per_server` links per db_proxy address; a request's link is
//!   chosen by a hash of its conversation, so the changes of one group and the messages of one
//!   conversation are applied in order (Decisions 6); a link db_proxy asked us to stop using
//!   (IMStopReceivePacket, 1.5) is skipped. Replies are matched by seq_num.
//! * [`RouteLinks`]: a link to every route_server; the live one connected longest is the
//!   master, told so with IMRoleSet as the original http_msg_server does, and carries every
//!   notify and message. What route_server broadcasts to us is ignored, as in the original.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::attach::RequestTag;
use im_proto::client::{ClientError, ClientTls, ImClient};
use im_proto::message::ImMsgData;
use im_proto::server::ImRoleSet;
use im_proto::{Pdu, cid};
use thiserror::Error;

/// Which conversation a request belongs to (Decisions 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Requests about one user (group creation by that user, discovery with 0).
    User(u32),
    /// A single-chat conversation: the unordered pair.
    Pair(u32, u32),
    /// A group.
    Group(u32),
}

impl Key {
    fn hash(self) -> u64 {
        let raw = match self {
            Key::User(u) => u64::from(u),
            Key::Pair(a, b) => (u64::from(a.min(b)) << 32) | u64::from(a.max(b)),
            Key::Group(g) => u64::from(g) ^ 0x5bd1_e995_0000_0000,
        };
        // Fibonacci hashing spreads consecutive ids over all links.
        raw.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    }
}

/// Why a request to db_proxy failed.
#[derive(Debug, Error)]
pub enum DbError {
    /// No link is connected (or all were stopped by db_proxy).
    #[error("no db_proxy link is available")]
    NoLink,
    /// The link failed or no answer came in time.
    #[error(transparent)]
    Link(#[from] ClientError),
    /// The answer did not decode.
    #[error("db_proxy answer did not decode: {0}")]
    Body(#[from] im_proto::BodyError),
    /// db_proxy answered a store with msg_id 0.
    #[error("db_proxy did not store the message (msg_id 0)")]
    NotStored,
}

struct DbLink {
    up: Upstream,
    stopped: Arc<AtomicBool>,
}

impl DbLink {
    fn usable(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed) && self.up.is_connected()
    }
}

struct DbHandler {
    addr: String,
    stopped: Arc<AtomicBool>,
}

impl UpstreamHandler for DbHandler {
    async fn on_connect(&self, _link: &ImClient) -> Result<(), ClientError> {
        self.stopped.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        if pdu.command_id() == cid::CID_OTHER_STOP_RECV_PACKET {
            self.stopped.store(true, Ordering::Relaxed);
            tracing::info!(peer = %self.addr, "db_proxy asked to stop using this link");
        } else {
            // Late answers to requests that timed out.
            tracing::debug!(peer = %self.addr, cmd = pdu.command_name(), "unsolicited db_proxy PDU ignored");
        }
    }
}

/// The db_proxy links.
pub struct DbPool {
    links: Vec<DbLink>,
    timeout: Duration,
    origin: u64,
    next_tag: AtomicU64,
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPool")
            .field("links", &self.links.len())
            .finish()
    }
}

/// Attempts per message store; retries carry the same request tag (Decisions 4).
const STORE_ATTEMPTS: u32 = 3;

impl DbPool {
    /// Opens `per_server` links to each of `addrs`.
    pub fn spawn(
        addrs: &[String],
        per_server: usize,
        timeout: Duration,
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        shutdown: &CancellationToken,
    ) -> Self {
        let mut links = Vec::with_capacity(addrs.len() * per_server);
        for addr in addrs {
            for _ in 0..per_server {
                let stopped = Arc::new(AtomicBool::new(false));
                let mut o = UpstreamOptions::new("db_proxy_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                o.request_timeout = timeout;
                let h = Arc::new(DbHandler {
                    addr: addr.clone(),
                    stopped: stopped.clone(),
                });
                links.push(DbLink {
                    up: Upstream::spawn(o, h, shutdown.clone()),
                    stopped,
                });
            }
        }
        DbPool {
            links,
            timeout,
            origin: rand::random(),
            next_tag: AtomicU64::new(1),
        }
    }

    fn pick(&self, key: Key) -> Option<&DbLink> {
        let n = self.links.len();
        if n == 0 {
            return None;
        }
        let start = (key.hash() % n as u64) as usize;
        (0..n)
            .map(|i| &self.links[(start + i) % n])
            .find(|l| l.usable())
    }

    /// True when a request could be sent now.
    pub fn any_usable(&self) -> bool {
        self.links.iter().any(DbLink::usable)
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(|l| l.up.status()).collect()
    }

    /// Sends a request and waits for the answer with command `expect`.
    pub async fn request(&self, key: Key, pdu: Pdu, expect: u16) -> Result<Pdu, DbError> {
        let link = self.pick(key).ok_or(DbError::NoLink)?;
        Ok(link.up.request_timeout(pdu, expect, self.timeout).await?)
    }

    /// Stores a message with a request tag; a failed link or a missing answer is retried with
    /// the same tag (db_proxy de-duplicates it), msg_id 0 is final. Returns db_proxy's answer.
    pub async fn store(&self, key: Key, mut msg: ImMsgData) -> Result<ImMsgData, DbError> {
        let tag = RequestTag {
            origin: self.origin,
            seq: self.next_tag.fetch_add(1, Ordering::Relaxed),
        };
        msg.attach_data = Some(tag.encode());
        let pdu = Pdu::from_msg(&msg, 0);
        let mut last = DbError::NoLink;
        for attempt in 0..STORE_ATTEMPTS {
            if attempt > 0 {
                // A short pause lets a dropped link fail over or reconnect.
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            match self.request(key, pdu.clone(), cid::CID_MSG_DATA).await {
                Ok(reply) => {
                    let stored = reply.decode::<ImMsgData>()?;
                    if stored.msg_id == 0 {
                        return Err(DbError::NotStored);
                    }
                    return Ok(stored);
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "store attempt failed");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[derive(Default)]
struct RouteState {
    /// Per link: when it came up, and its connection.
    live: Vec<Option<(Instant, ImClient)>>,
    master: Option<usize>,
}

impl RouteState {
    /// Elects the live link connected longest; `Some` with its connection when the master
    /// changed to a link that must be told.
    fn elect(&mut self) -> Option<ImClient> {
        let best = self
            .live
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|(since, c)| (i, *since, c)))
            .min_by_key(|(_, since, _)| *since);
        let new = best.as_ref().map(|(i, _, _)| *i);
        if new == self.master {
            return None;
        }
        self.master = new;
        best.map(|(_, _, c)| c.clone())
    }
}

/// The route_server links.
pub struct RouteLinks {
    links: Vec<Upstream>,
    state: Arc<Mutex<RouteState>>,
}

impl std::fmt::Debug for RouteLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLinks")
            .field("links", &self.links.len())
            .finish()
    }
}

struct RouteHandler {
    idx: usize,
    state: Arc<Mutex<RouteState>>,
}

/// The IMRoleSet frame that makes a route link the master.
fn role_set() -> Pdu {
    Pdu::from_msg(&ImRoleSet { master: 1 }, 0)
}

impl UpstreamHandler for RouteHandler {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        let tell = {
            let Ok(mut s) = self.state.lock() else {
                return Err(ClientError::Closed);
            };
            s.live[self.idx] = Some((Instant::now(), link.clone()));
            s.elect()
        };
        // FLOWS.md 1.4: IMRoleSet if it became master, nothing else.
        if let Some(c) = tell {
            c.send_pdu(&role_set()).await?;
            tracing::info!(link = self.idx, "route_server link is the master");
        }
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        // Broadcasts meant for msg_servers; the original http_msg_server ignores them too.
        tracing::trace!(cmd = pdu.command_name(), "route_server PDU ignored");
    }

    async fn on_disconnect(&self) {
        let tell = match self.state.lock() {
            Ok(mut s) => {
                s.live[self.idx] = None;
                s.elect()
            }
            Err(_) => None,
        };
        if let Some(c) = tell {
            let _ = c.send_pdu(&role_set()).await;
            tracing::info!("route_server master changed");
        }
    }
}

impl RouteLinks {
    /// Opens a link to each address.
    pub fn spawn(
        addrs: &[String],
        timeout: Duration,
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        shutdown: &CancellationToken,
    ) -> Self {
        let state = Arc::new(Mutex::new(RouteState {
            live: vec![None; addrs.len()],
            master: None,
        }));
        let links = addrs
            .iter()
            .enumerate()
            .map(|(idx, addr)| {
                let mut o = UpstreamOptions::new("route_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                o.request_timeout = timeout;
                let h = Arc::new(RouteHandler {
                    idx,
                    state: state.clone(),
                });
                Upstream::spawn(o, h, shutdown.clone())
            })
            .collect();
        RouteLinks { links, state }
    }

    /// Sends `pdu` through the master link; false when no route_server is connected.
    pub async fn send(&self, pdu: &Pdu) -> bool {
        let master = self.state.lock().ok().and_then(|s| {
            s.master
                .and_then(|i| s.live.get(i).cloned().flatten())
                .map(|(_, c)| c)
        });
        match master {
            Some(c) => c.send_pdu(pdu).await.is_ok(),
            None => false,
        }
    }

    /// True when a master link is up.
    pub fn is_connected(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.master.is_some())
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(Upstream::status).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_unordered_and_keys_spread() {
        assert_eq!(Key::Pair(5, 9).hash(), Key::Pair(9, 5).hash());
        let mut seen = [false; 4];
        for u in 0..16u32 {
            seen[(Key::User(u).hash() % 4) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
