//! The pool of db_proxy links (FLOWS.md 1.2, Decisions 4 and 6).
//!
//! `db_connections_per_server` links per configured address. Every request names the
//! conversation it belongs to ([`Key`]); the link is chosen by a hash of it, so the requests
//! of one conversation always travel on the same link and db_proxy applies them in order. When
//! that link is down (or db_proxy asked us to stop using it, 1.5) the next usable link takes
//! over. Replies are matched by seq_num (the link replaces our seq with its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::attach::RequestTag;
use im_proto::client::{ClientError, ClientTls, ImClient};
use im_proto::message::ImMsgData;
use im_proto::{Pdu, cid};
use thiserror::Error;

use crate::metrics::Metrics;
use crate::upstream::push_now;

/// Which conversation a request belongs to (Decisions 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Requests about one user only (sessions, unread counts, profile, tokens...).
    User(u32),
    /// A single-chat conversation: the unordered pair.
    Pair(u32, u32),
    /// A group conversation.
    Group(u32),
    /// A login name (validation), hashed.
    Name(u64),
}

impl Key {
    /// The conversation of a session seen by `user`: single with `session_id`, or a group.
    pub fn session(user: u32, is_group: bool, session_id: u32) -> Key {
        if is_group {
            Key::Group(session_id)
        } else {
            Key::Pair(user.min(session_id), user.max(session_id))
        }
    }

    /// The key of a login name.
    pub fn name(name: &str) -> Key {
        // FNV-1a: stable, cheap, good enough to spread names over links.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Key::Name(h)
    }

    fn hash(self) -> u64 {
        let raw = match self {
            Key::User(u) => u64::from(u),
            Key::Pair(a, b) => (u64::from(a) << 32) | u64::from(b),
            Key::Group(g) => u64::from(g) ^ 0x5bd1_e995_0000_0000,
            Key::Name(h) => h,
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

/// The db_proxy links.
pub struct DbPool {
    links: Vec<DbLink>,
    timeout: Duration,
    attempts: u32,
    origin: u64,
    next_tag: AtomicU64,
    metrics: Metrics,
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPool")
            .field("links", &self.links.len())
            .finish()
    }
}

struct DbHandler {
    addr: String,
    stopped: Arc<AtomicBool>,
}

impl UpstreamHandler for DbHandler {
    async fn on_connect(&self, _link: &ImClient) -> Result<(), ClientError> {
        // A new connection is open again, even if db_proxy stopped the previous one.
        self.stopped.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        match pdu.command_id() {
            cid::CID_OTHER_STOP_RECV_PACKET => {
                // FLOWS.md 1.5: db_proxy is shutting down; no new requests on this link.
                self.stopped.store(true, Ordering::Relaxed);
                tracing::info!(peer = %self.addr, "db_proxy asked to stop using this link");
            }
            // Answers to fire-and-forget requests (device token) and late answers to requests
            // that timed out.
            _ => tracing::debug!(peer = %self.addr, cmd = pdu.command_name(),
                "unsolicited db_proxy PDU ignored"),
        }
    }
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct DbPoolOptions {
    /// db_proxy addresses.
    pub addrs: Vec<String>,
    /// Links per address.
    pub per_server: usize,
    /// Wait for each answer.
    pub timeout: Duration,
    /// Attempts per store.
    pub attempts: u32,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// TLS for `tls://` addresses (`[tls_client]`).
    pub tls: Option<ClientTls>,
}

impl DbPool {
    /// Opens the links.
    pub fn spawn(opts: DbPoolOptions, metrics: Metrics, shutdown: CancellationToken) -> Self {
        let mut links = Vec::with_capacity(opts.addrs.len() * opts.per_server);
        // Links of one address sit next to each other, so failing over to "the next link"
        // usually stays on the same db_proxy_server (whose request-tag de-duplication then
        // covers a retried store).
        for addr in &opts.addrs {
            for _ in 0..opts.per_server {
                let stopped = Arc::new(AtomicBool::new(false));
                let mut uo = UpstreamOptions::new("db_proxy_server", vec![addr.clone()]);
                uo.backoff = opts.backoff;
                uo.request_timeout = opts.timeout;
                uo.tls = opts.tls.clone();
                let handler = Arc::new(DbHandler {
                    addr: addr.clone(),
                    stopped: stopped.clone(),
                });
                links.push(DbLink {
                    up: Upstream::spawn(uo, handler, shutdown.clone()),
                    stopped,
                });
            }
        }
        DbPool {
            links,
            timeout: opts.timeout,
            attempts: opts.attempts.max(1),
            origin: rand::random(),
            next_tag: AtomicU64::new(1),
            metrics,
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

    /// True when at least one link can take requests (login needs one, FLOWS.md 4 step 3).
    pub fn any_usable(&self) -> bool {
        self.links.iter().any(DbLink::usable)
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(|l| l.up.status()).collect()
    }

    /// Sends a request and waits for the answer with command `expect`. The request is
    /// queued on its link during the first poll of the returned future.
    pub async fn request(&self, key: Key, pdu: Pdu, expect: u16) -> Result<Pdu, DbError> {
        let link = self.pick(key).ok_or(DbError::NoLink)?;
        Ok(link.up.request_timeout(pdu, expect, self.timeout).await?)
    }

    /// Sends a PDU that gets no answer we wait for (read ack, device token); seq 0 so that
    /// an answer never matches a waiting request.
    pub fn send(&self, key: Key, mut pdu: Pdu) -> bool {
        pdu.header.seq_num = 0;
        match self.pick(key).and_then(|l| l.up.client()) {
            Some(c) => push_now(&c, pdu.to_frame()),
            None => false,
        }
    }

    /// A fresh request tag for a store (Decisions 4).
    pub fn tag(&self) -> RequestTag {
        RequestTag {
            origin: self.origin,
            seq: self.next_tag.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Stores a message: `msg` goes to db_proxy with a request tag in attach_data; a link
    /// failure or a missing answer is retried with the same tag (db_proxy de-duplicates it),
    /// a msg_id 0 answer is final. Returns db_proxy's answer (msg_id set).
    pub async fn store(
        &self,
        key: Key,
        mut msg: ImMsgData,
        seq: u16,
    ) -> Result<ImMsgData, DbError> {
        msg.attach_data = Some(self.tag().encode());
        let pdu = Pdu::from_msg(&msg, seq);
        let mut last = DbError::NoLink;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                self.metrics.store_retries.inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_pairs_unordered() {
        assert_eq!(Key::session(5, false, 9), Key::session(9, false, 5));
        assert_eq!(Key::session(5, true, 9), Key::Group(9));
        assert_eq!(Key::name("alice"), Key::name("alice"));
        assert_ne!(Key::name("alice"), Key::name("bob"));
        // Consecutive users spread over 4 links.
        let mut seen = [false; 4];
        for u in 0..16u32 {
            seen[(Key::User(u).hash() % 4) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
