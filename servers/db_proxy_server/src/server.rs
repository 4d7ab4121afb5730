//! The server: shared state, the per-connection pipeline and the shutdown sequence.
//!
//! Each msg_server link gets a reader (im-common's serve loop, calling [`Link::on_pdu`]) and a
//! driver task. The reader hands PDUs to the driver over a bounded channel, in arrival order;
//! the driver dispatches them in that order (each handler calls the store at once, so writes
//! are queued in arrival order: Decisions 6) and keeps the rest of every request in flight
//! concurrently, so a msg_server that pipelines thousands of stores on one link is not served
//! one round trip at a time. At most `max_in_flight_per_conn` requests of a link are worked on
//! at once; beyond that the driver stops taking PDUs, the channel fills, the reader waits, and
//! the peer's TCP window closes.
//!
//! Voice messages are uploaded to msfs before they can be stored. Meanwhile the later stores
//! of the same conversation wait behind them (in the driver, not in the store), so a
//! conversation's messages still get their ids in arrival order; other conversations go on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use im_common::{Conn, ConnRegistry, Handler};
use im_proto::Pdu;
use im_proto::crypto::MessageCipher;
use im_proto::server::ImStopReceivePacket;
use im_storage::Store;
use im_storage::config::PasswordHashing;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::handlers::{self, ConvKey, Dispatch, PreparedStore, Step, Work};
use crate::localtime::LocalZone;
use crate::metrics::Metrics;
use crate::msfs::Msfs;
use crate::throttle::LoginThrottle;

/// PDUs read from a link but not yet taken by its driver. Small: the in-flight set is where
/// concurrency comes from; this only smooths the hand-over.
const CHANNEL_DEPTH: usize = 256;

/// State shared by every connection and background task.
pub struct Shared<S> {
    /// The store.
    pub store: S,
    /// Counters and latencies.
    pub metrics: Metrics,
    /// Failed logins per name.
    pub throttle: LoginThrottle,
    /// Where voice bytes live.
    pub msfs: Msfs,
    /// The encrypted "[语音]" shown as the last message of a voice conversation (FLOWS.md 18),
    /// encrypted once at start-up as the original does.
    pub voice_placeholder: Bytes,
    /// The host's time zone (night-time push mute).
    pub zone: LocalZone,
    /// Password storage mode (Decisions 9).
    pub password_hash: PasswordHashing,
    /// Per-link in-flight bound.
    pub max_in_flight: usize,
    /// The msg_server links.
    pub links: ConnRegistry,
    /// Set once the stop-receive announcement went out: new requests are refused.
    stopping: AtomicBool,
    /// Requests accepted and not finished, over all links.
    pending: AtomicUsize,
}

impl<S> std::fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("links", &self.links.len())
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: Store> Shared<S> {
    /// The shared state for `store` under `config`.
    pub fn new(config: &Config, store: S) -> anyhow::Result<Self> {
        let cipher = MessageCipher::new(config.aes_key.as_bytes())
            .map_err(|e| anyhow::anyhow!("config key `aes_key`: {e}"))?;
        Ok(Shared {
            store,
            metrics: Metrics::new(),
            throttle: LoginThrottle::new(
                config.login_failures_max,
                Duration::from_secs(config.login_failure_window_secs),
            ),
            msfs: Msfs::new(
                &config.msfs_url,
                Duration::from_secs(config.msfs_timeout_secs),
            )?,
            voice_placeholder: Bytes::from(cipher.encrypt("[语音]".as_bytes())),
            zone: match config.night_mute_utc_offset_minutes {
                Some(m) => LocalZone::fixed(m * 60),
                None => LocalZone::from_host(),
            },
            password_hash: config.storage.password_hash,
            max_in_flight: config.max_in_flight_per_conn,
            links: ConnRegistry::new(),
            stopping: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
        })
    }

    /// True once shutdown started.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Requests accepted and not finished.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    fn begin(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.add(1);
    }

    fn end(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.add(-1);
    }

    /// FLOWS.md 1.5: tells every link to stop sending (IMStopReceivePacket{0}) and refuses
    /// requests from now on; requests already taken still finish.
    pub fn stop_receiving(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let links = self.links.all();
        tracing::info!(
            links = links.len(),
            pending = self.pending(),
            "announcing stop-receive to every link"
        );
        for conn in links {
            send_stop(&conn);
        }
    }

    /// Waits until every accepted request has finished, at most `grace`; false on timeout.
    pub async fn drained(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        // Only runs during shutdown; a short poll is simpler than a notification on every
        // request.
        while self.pending() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

fn send_stop(conn: &Conn) {
    let _ = conn.send_msg(&ImStopReceivePacket { result: 0 }, 0);
}

/// The reader side of one msg_server link.
pub struct Link<S> {
    shared: Arc<Shared<S>>,
    tx: mpsc::Sender<Pdu>,
    /// Whether this link was told about refused requests already (one log line per link).
    told_stopping: bool,
}

impl<S: Store> Link<S> {
    /// A handler for a just-accepted link, with its driver task spawned on `tasks`.
    pub fn start(
        shared: Arc<Shared<S>>,
        conn: &Conn,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        tracing::info!(conn_id = conn.id(), peer = %conn.peer(), "msg_server link up");
        if shared.is_stopping() {
            send_stop(conn);
        }
        tasks.spawn(drive(shared.clone(), conn.clone(), rx));
        Link {
            shared,
            tx,
            told_stopping: false,
        }
    }
}

impl<S: Store> Handler for Link<S> {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if self.shared.is_stopping() {
            self.shared.metrics.refused_stopping.inc();
            if !self.told_stopping {
                self.told_stopping = true;
                tracing::info!(
                    conn_id = conn.id(),
                    cmd = pdu.command_name(),
                    "refusing requests after the stop-receive announcement"
                );
            }
            return;
        }
        self.shared.begin();
        if self.tx.send(pdu).await.is_err() {
            // The driver is gone (cannot happen while this handler lives); keep the count.
            self.shared.end();
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        tracing::info!(conn_id = conn.id(), peer = %conn.peer(),
            reason = %conn.close_reason().map(|r| r.to_string()).unwrap_or_default(),
            "msg_server link down");
    }
}

/// A queued entry of a conversation that has a voice message uploading.
enum Slot {
    /// The voice message in this slot is still uploading.
    Uploading(u64),
    /// A store waiting for the slots before it.
    Ready(Box<PreparedStore>),
}

/// The driver of one link: dispatches PDUs in arrival order and runs their work.
struct Driver<'a, S> {
    sh: &'a Shared<S>,
    conn: Conn,
    in_flight: FuturesUnordered<Work<'a>>,
    /// Conversations with a voice message uploading, and what waits behind it.
    held: HashMap<ConvKey, VecDeque<Slot>>,
    next_slot: u64,
    /// Requests taken and not finished on this link.
    busy: usize,
}

async fn drive<S: Store>(shared: Arc<Shared<S>>, conn: Conn, mut rx: mpsc::Receiver<Pdu>) {
    let mut d = Driver {
        sh: &shared,
        conn,
        in_flight: FuturesUnordered::new(),
        held: HashMap::new(),
        next_slot: 0,
        busy: 0,
    };
    let mut open = true;
    while open || d.busy > 0 {
        let can_take = open && d.busy < d.sh.max_in_flight;
        tokio::select! {
            // Finishing work first keeps memory bounded under a flood.
            biased;
            Some(step) = d.in_flight.next(), if !d.in_flight.is_empty() => d.step(step),
            pdu = rx.recv(), if can_take => match pdu {
                Some(pdu) => {
                    d.busy += 1;
                    let dispatched = handlers::dispatch(d.sh, &d.conn, pdu);
                    d.accept(dispatched);
                }
                None => open = false,
            },
            else => d.unstick(),
        }
    }
    tracing::debug!(conn_id = d.conn.id(), "link driver finished");
}

impl<'a, S: Store> Driver<'a, S> {
    /// Polls new work once, right now, and keeps it in flight if it is not done. The first
    /// poll runs a handler up to its first wait, which is its store call: so store calls are
    /// made in the order the requests arrived (the store queues writes in call order), even
    /// when a call borrows the request and so can only be made inside the work.
    fn launch(&mut self, mut work: Work<'a>) {
        let mut cx = Context::from_waker(Waker::noop());
        match work.as_mut().poll(&mut cx) {
            // FuturesUnordered polls a pushed future again with its own waker.
            Poll::Pending => self.in_flight.push(work),
            Poll::Ready(step) => self.step(step),
        }
    }

    fn accept(&mut self, d: Dispatch<'a>) {
        match d {
            Dispatch::Finished(step) => self.step(step),
            Dispatch::Work(w) => self.launch(w),
            Dispatch::Store(p) => match self.held.get_mut(&p.key) {
                Some(queue) => queue.push_back(Slot::Ready(Box::new(p))),
                None => self.launch(handlers::message::issue(self.sh, p)),
            },
            Dispatch::Audio(upload) => {
                let slot = self.next_slot;
                self.next_slot += 1;
                self.held
                    .entry(upload.key)
                    .or_default()
                    .push_back(Slot::Uploading(slot));
                self.launch(upload.start(self.sh, slot));
            }
        }
    }

    /// Nothing is in flight and nothing can be taken, yet requests are counted busy: only
    /// stores held behind an upload could be, and an upload is always in flight while
    /// anything is held. Should it ever happen, fail them rather than hang the link.
    fn unstick(&mut self) {
        if self.busy == 0 {
            return;
        }
        tracing::error!(
            conn_id = self.conn.id(),
            busy = self.busy,
            "link driver stuck; failing its held requests"
        );
        let held = std::mem::take(&mut self.held);
        for slot in held.into_values().flatten() {
            if let Slot::Ready(p) = slot {
                p.req.reply(&p.failed_reply());
                self.step(p.req.done(false));
            }
        }
        for _ in 0..self.busy {
            self.sh.end();
        }
        self.busy = 0;
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Done { cmd, started, ok } => {
                self.sh.metrics.finish(cmd, started.elapsed(), ok);
                self.busy = self.busy.saturating_sub(1);
                self.sh.end();
            }
            Step::AudioReady { key, slot, outcome } => {
                let Some(queue) = self.held.get_mut(&key) else {
                    return;
                };
                let pos = queue
                    .iter()
                    .position(|s| matches!(s, Slot::Uploading(n) if *n == slot));
                let failed = match (pos, outcome) {
                    (Some(pos), Ok(p)) => {
                        queue[pos] = Slot::Ready(p);
                        None
                    }
                    (Some(pos), Err(done)) => {
                        queue.remove(pos);
                        Some(*done)
                    }
                    // Cannot happen: every upload has its slot until it reports.
                    (None, Ok(p)) => {
                        p.req.reply(&p.failed_reply());
                        Some(p.req.done(false))
                    }
                    (None, Err(done)) => Some(*done),
                };
                if let Some(done) = failed {
                    self.step(done);
                }
                self.release(key);
            }
        }
    }

    /// Issues the stores at the head of a held conversation, up to the next upload.
    fn release(&mut self, key: ConvKey) {
        loop {
            let Some(queue) = self.held.get_mut(&key) else {
                return;
            };
            match queue.front() {
                Some(Slot::Ready(_)) => {
                    if let Some(Slot::Ready(p)) = queue.pop_front() {
                        let work = handlers::message::issue(self.sh, *p);
                        self.launch(work);
                    }
                }
                Some(Slot::Uploading(_)) => return,
                None => {
                    self.held.remove(&key);
                    return;
                }
            }
        }
    }
}
