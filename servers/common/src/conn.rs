//! An accepted connection: identity, outbound queue, timers, statistics.
//!
//! Each connection runs a reader task that decodes PDUs and calls the server's handler one
//! PDU at a time (so requests of one client are processed in order), and a writer task that
//! drains the outbound queue, many PDUs per write call. On client links the writer exists
//! only while something is queued (the write half waits in the queue meanwhile, see
//! [`im_proto::io::write_until_idle`]); server links, which send heartbeats when idle, keep
//! theirs. Idle and login deadlines are checked by the listener's sweep
//! ([`ConnRegistry::sweep`]), not by a timer per connection: with tens of thousands of idle
//! clients those were a third of each one's memory. Anything may send to a connection
//! through its [`Conn`] handle; a peer that stops reading fills its queue and is disconnected
//! as a slow consumer instead of making the server buffer without limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use im_proto::codec::LinkKind;
use im_proto::io::{
    OutQueue, ParkedWriter, QueueError, Signal, WriteNow, WriterExit, write_now, write_until_idle,
};
use im_proto::{Command, Pdu};
use thiserror::Error;
use tokio::sync::Notify;

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// A framing error (length < 16, over the cap, truncated) or a socket error.
    Protocol(String),
    /// Nothing received for the idle timeout.
    IdleTimeout,
    /// A deadline set by the server passed (e.g. not logged in within 15 s).
    Deadline,
    /// The outbound queue overflowed: the peer does not read.
    SlowConsumer,
    /// The server closed it (kick, logout, drain...).
    Server(&'static str),
    /// Server shutdown.
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Deadline => f.write_str("deadline passed"),
            CloseReason::SlowConsumer => f.write_str("slow consumer"),
            CloseReason::Server(why) => write!(f, "closed by server: {why}"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
        }
    }
}

/// Why a PDU was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The connection is closed or closing.
    #[error("connection closed")]
    Closed,
    /// The PDU is above the link's outbound cap (400 KiB toward clients).
    #[error("PDU of {len} bytes exceeds this link's outbound cap of {cap}")]
    TooLarge {
        /// PDU length.
        len: usize,
        /// Cap.
        cap: usize,
    },
    /// The queue overflowed; the connection was closed as a slow consumer.
    #[error("slow consumer: outbound queue full, connection closed")]
    SlowConsumer,
}

/// Counters shared by all connections of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused because the limit was reached.
    pub refused: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_consumers: AtomicU64,
    /// Connections closed for framing errors.
    pub protocol_errors: AtomicU64,
    /// TLS handshakes that failed or timed out (TLS listeners only).
    pub tls_handshake_failures: AtomicU64,
    /// PDUs received.
    pub pdus_in: AtomicU64,
    /// PDUs queued for sending.
    pub pdus_out: AtomicU64,
    /// Wakes the listener's sweep when a connection's deadline moved close
    /// ([`SWEEP_EVERY`]).
    pub(crate) timers: Notify,
    /// Where writer tasks are started (a send may come from outside the runtime); kept here
    /// rather than in every connection.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Sends write on the sending task when the socket has room ([`Conn::start_writer`]);
    /// set from [`ServeOptions::inline_writes`](crate::serve::ServeOptions::inline_writes).
    pub(crate) inline_writes: AtomicBool,
}

/// The longest pause between two sweeps for idle and login deadlines; a deadline closer
/// than this wakes the sweep early, so short deadlines (tests, file_server's login) keep
/// their precision.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// See [`Conn::busy`]: 2 ms tells a burst from a chatting client's next message (tens of ms
/// apart).
const BUSY_WINDOW_MS: u32 = 2;

/// True if a writer started at `last` is recent at `now` (ms since the connection was
/// accepted, wrapping after 49 days).
fn within_busy_window(last: u32, now: u32) -> bool {
    now.wrapping_sub(last) < BUSY_WINDOW_MS
}

/// Every field here is paid for by every idle connection: shared things live in
/// [`ListenerStats`], and one [`Signal`] serves both "closed" and "a writer task ended".
pub(crate) struct ConnInner {
    id: u64,
    peer: SocketAddr,
    link: LinkKind,
    pub(crate) queue: OutQueue,
    /// Set when the connection is closed; also woken (without being set) when a writer task
    /// ends, for [`Conn::writers_done`].
    pub(crate) closed: Signal,
    /// The reader, woken when `closed` is set (a `Notify` waiter in the reader's future
    /// would cost every idle connection more than this).
    pub(crate) reader: AtomicWaker,
    close_reason: OnceLock<CloseReason>,
    created: Instant,
    /// Idle timeout in ms (0 = none); changed after login on client links.
    idle_ms: AtomicU32,
    /// Deadline in ms since `created` (0 = none).
    deadline_ms: AtomicU32,
    /// When the last PDU arrived, in ms since `created` (for the idle timeout).
    pub(crate) last_rx_ms: AtomicU64,
    /// When a writer last started, in ms since `created` (wrapping): a connection written
    /// to within [`BUSY_WINDOW_MS`] gets a writer task rather than an inline write.
    last_writer_ms: AtomicU32,
    /// Writer tasks running (0 or 1, briefly 2 while one parks and the next starts).
    writers: AtomicUsize,
    user_id: AtomicU32,
    client_type: AtomicU32,
    pub(crate) pdus_in: AtomicU64,
    pdus_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) stats: Arc<ListenerStats>,
}

/// A handle on a connection; cheap to clone and safe to use from any task.
#[derive(Clone)]
pub struct Conn {
    pub(crate) inner: Arc<ConnInner>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer)
            .finish()
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

impl Conn {
    pub(crate) fn new(
        peer: SocketAddr,
        link: LinkKind,
        queue_limit: usize,
        idle: Option<Duration>,
        stats: Arc<ListenerStats>,
    ) -> Conn {
        stats.runtime.get_or_init(tokio::runtime::Handle::current);
        Conn {
            inner: Arc::new(ConnInner {
                id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                link,
                queue: OutQueue::new(queue_limit),
                closed: Signal::default(),
                reader: AtomicWaker::new(),
                close_reason: OnceLock::new(),
                created: Instant::now(),
                idle_ms: AtomicU32::new(idle.map_or(0, millis_u32)),
                deadline_ms: AtomicU32::new(0),
                last_rx_ms: AtomicU64::new(0),
                last_writer_ms: AtomicU32::new(0),
                writers: AtomicUsize::new(0),
                user_id: AtomicU32::new(0),
                client_type: AtomicU32::new(0),
                pdus_in: AtomicU64::new(0),
                pdus_out: AtomicU64::new(0),
                bytes_in: AtomicU64::new(0),
                stats,
            }),
        }
    }

    /// Process-unique connection id (used as the handle in attach_data and in logs).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Peer address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Link kind (decides caps).
    pub fn link(&self) -> LinkKind {
        self.inner.link
    }

    /// Time since accept.
    pub fn age(&self) -> Duration {
        self.inner.created.elapsed()
    }

    /// Queues an encoded frame. On overflow the connection is closed as a slow consumer.
    pub fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        if let Some(writer) = self.queue_frame(frame)? {
            self.start_writer(writer);
        }
        Ok(())
    }

    /// Queues `frame`, runs `then`, and only then lets the frame be written: the peer cannot
    /// read the frame before what `then` does is in place, and frames queued during or after
    /// `then` follow it. (That holds when no writer task is busy on the connection, as
    /// before a login; a running writer may write the frame at once.)
    pub fn send_frame_then(&self, frame: Bytes, then: impl FnOnce()) -> Result<(), SendError> {
        let parked = self.queue_frame(frame);
        then();
        if let Some(writer) = parked? {
            self.start_writer(writer);
        }
        Ok(())
    }

    /// Queues `frame`; returns the parked write half for the caller to start a writer with.
    fn queue_frame(&self, frame: Bytes) -> Result<Option<ParkedWriter>, SendError> {
        let cap = self.inner.link.outbound_cap();
        if frame.len() > cap {
            return Err(SendError::TooLarge {
                len: frame.len(),
                cap,
            });
        }
        match self.inner.queue.push_and_wake(frame) {
            Ok(parked) => {
                self.inner.pdus_out.fetch_add(1, Ordering::Relaxed);
                self.inner.stats.pdus_out.fetch_add(1, Ordering::Relaxed);
                Ok(parked)
            }
            Err(QueueError::Closed) => Err(SendError::Closed),
            Err(QueueError::Full { queued, limit }) => {
                tracing::warn!(
                    conn_id = self.inner.id, peer = %self.inner.peer, user_id = self.user_id(),
                    queued, limit, "closing slow consumer"
                );
                self.inner
                    .stats
                    .slow_consumers
                    .fetch_add(1, Ordering::Relaxed);
                self.close(CloseReason::SlowConsumer);
                Err(SendError::SlowConsumer)
            }
        }
    }

    /// Queues a PDU.
    pub fn send_pdu(&self, pdu: &Pdu) -> Result<(), SendError> {
        self.send_frame(pdu.to_frame())
    }

    /// Encodes and queues a message with the given seq_num.
    pub fn send_msg<M: Command>(&self, msg: &M, seq_num: u16) -> Result<(), SendError> {
        self.send_pdu(&Pdu::from_msg(msg, seq_num))
    }

    /// Replies to `request` (same seq_num).
    pub fn reply<M: Command>(&self, request: &Pdu, msg: &M) -> Result<(), SendError> {
        self.send_pdu(&request.reply(msg))
    }

    /// Replies to `request`, written only after `then` ran ([`Conn::send_frame_then`]).
    pub fn reply_then<M: Command>(
        &self,
        request: &Pdu,
        msg: &M,
        then: impl FnOnce(),
    ) -> Result<(), SendError> {
        self.send_frame_then(request.reply(msg).to_frame(), then)
    }

    /// Closes now; queued PDUs are dropped. The first reason given is kept.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.inner.close_reason.set(reason);
        self.inner.queue.close(false);
        self.mark_closed();
    }

    /// Sets `closed` and wakes the reader.
    pub(crate) fn mark_closed(&self) {
        self.inner.closed.cancel();
        self.inner.reader.wake();
    }

    /// Closes after everything queued so far has been written (kick, logout). The reader
    /// handles no PDU that it reads from now on.
    pub fn close_after_flush(&self, reason: CloseReason) {
        let _ = self.inner.close_reason.set(reason);
        if let Some(writer) = self.inner.queue.close_and_wake(true) {
            // Nothing was being written: a writer starts to shut the stream down.
            self.start_writer(writer);
        }
    }

    /// True once a close was asked for (flushing or not).
    pub(crate) fn closing(&self) -> bool {
        self.inner.close_reason.get().is_some()
    }

    /// Starts a writer task for a write half that was parked in the queue (or, at accept,
    /// not yet given to anyone).
    ///
    /// On listeners with [`ListenerStats::inline_writes`], what the socket takes at once is
    /// written right here by the sending task ([`write_now`]), and a task is started only
    /// for the rest. Not on threads outside the runtime (the SQLite writer, say), which
    /// have better things to do than socket writes.
    pub(crate) fn start_writer(&self, writer: ParkedWriter) {
        self.inner.writers.fetch_add(1, Ordering::AcqRel);
        let mut carry = Bytes::new();
        let mut writer = writer;
        if self.inner.stats.inline_writes.load(Ordering::Relaxed)
            && !self.busy()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            match write_now(writer, &self.inner.queue) {
                WriteNow::Parked => {
                    self.writer_ended();
                    return;
                }
                WriteNow::Failed(e) => {
                    tracing::debug!(conn_id = self.id(), error = %e, "write failed");
                    self.close(CloseReason::Protocol(format!("write: {e}")));
                    self.writer_ended();
                    return;
                }
                WriteNow::Continue(w, rest) => (writer, carry) = (w, rest),
            }
        }
        let conn = self.clone();
        let runtime = self.inner.stats.runtime.get();
        let task = async move {
            match write_until_idle(writer, &conn.inner.queue, carry).await {
                Ok(WriterExit::Parked) => {}
                Ok(WriterExit::Closed) => conn.mark_closed(),
                Err(e) => {
                    tracing::debug!(conn_id = conn.id(), error = %e, "write failed");
                    conn.close(CloseReason::Protocol(format!("write: {e}")));
                }
            }
            conn.writer_ended();
        };
        match runtime {
            Some(rt) => drop(rt.spawn(task)),
            // Set by `Conn::new`, which runs in the runtime.
            None => drop(tokio::spawn(task)),
        }
    }

    /// True if a writer started on this connection moments ago: frames are coming in a
    /// burst (acks of a batch, deliveries from one route_server read), and a writer task,
    /// which writes all that is queued by the time it runs in one call, beats one write
    /// call per frame. Inline writes everywhere cost 13% of the closed-model maximum (42k
    /// against 48k msgs/s, fresh SQLite cluster).
    fn busy(&self) -> bool {
        let now = self.inner.created.elapsed().as_millis() as u32;
        let last = self.inner.last_writer_ms.swap(now, Ordering::Relaxed);
        within_busy_window(last, now)
    }

    /// Records that a writer task (either kind) ended.
    pub(crate) fn writer_ended(&self) {
        self.inner.writers.fetch_sub(1, Ordering::AcqRel);
        self.inner.closed.wake_waiters();
    }

    /// Counts a writer task started by the caller ([`im_proto::io::write_loop`]).
    pub(crate) fn writer_started(&self) {
        self.inner.writers.fetch_add(1, Ordering::AcqRel);
    }

    /// Resolves once the connection is closed and no writer task runs any more (the last
    /// one wrote out what a flushing close left and shut the stream down).
    pub(crate) async fn writers_done(&self) {
        self.inner
            .closed
            .wait_until(|| {
                self.inner.queue.is_closed() && self.inner.writers.load(Ordering::Acquire) == 0
            })
            .await;
    }

    /// True once closing started.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled() || self.inner.queue.is_closed()
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// Why it was closed (once closed).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.close_reason.get().cloned()
    }

    /// Changes the idle timeout (`None`: none).
    pub fn set_idle_timeout(&self, idle: Option<Duration>) {
        self.inner
            .idle_ms
            .store(idle.map_or(0, millis_u32), Ordering::Relaxed);
        self.timers_changed();
    }

    /// Wakes the sweep if this connection now expires before the sweep would look anyway.
    fn timers_changed(&self) {
        if self
            .expiry()
            .is_some_and(|(at, _)| at <= Instant::now() + SWEEP_EVERY)
        {
            self.inner.stats.timers.notify_one();
        }
    }

    /// Notes that a PDU arrived now (restarts the idle timeout).
    pub(crate) fn received(&self) {
        let ms = self.inner.created.elapsed().as_millis() as u64;
        self.inner.last_rx_ms.store(ms, Ordering::Relaxed);
    }

    /// When this connection expires, and why (the login deadline first).
    pub(crate) fn expiry(&self) -> Option<(Instant, CloseReason)> {
        let idle = self.idle_timeout().map(|d| {
            let last = Duration::from_millis(self.inner.last_rx_ms.load(Ordering::Relaxed));
            self.inner.created + last + d
        });
        match (self.deadline(), idle) {
            (Some(d), Some(i)) if i < d => Some((i, CloseReason::IdleTimeout)),
            (Some(d), _) => Some((d, CloseReason::Deadline)),
            (None, Some(i)) => Some((i, CloseReason::IdleTimeout)),
            (None, None) => None,
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.inner.idle_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        }
    }

    /// Closes the connection (reason [`CloseReason::Deadline`]) when `after` has passed since
    /// accept, unless cleared with `None`.
    pub fn set_deadline(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| millis_u32(d).max(1));
        self.inner.deadline_ms.store(ms, Ordering::Relaxed);
        self.timers_changed();
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.inner.deadline_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.inner.created + Duration::from_millis(u64::from(ms))),
        }
    }

    /// Records who is on this connection (for admin listings and logs).
    pub fn set_identity(&self, user_id: u32, client_type: u32) {
        self.inner.user_id.store(user_id, Ordering::Relaxed);
        self.inner.client_type.store(client_type, Ordering::Relaxed);
    }

    /// User id set with [`Conn::set_identity`] (0 = none).
    pub fn user_id(&self) -> u32 {
        self.inner.user_id.load(Ordering::Relaxed)
    }

    /// Client type set with [`Conn::set_identity`] (0 = none).
    pub fn client_type(&self) -> u32 {
        self.inner.client_type.load(Ordering::Relaxed)
    }

    /// Frames waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue.depth()
    }

    /// A snapshot of this connection's counters.
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            id: self.inner.id,
            peer: self.inner.peer,
            user_id: self.user_id(),
            client_type: self.client_type(),
            age: self.age(),
            pdus_in: self.inner.pdus_in.load(Ordering::Relaxed),
            pdus_out: self.inner.pdus_out.load(Ordering::Relaxed),
            bytes_in: self.inner.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.inner.queue.written_bytes(),
            queue_depth: self.queue_depth(),
        }
    }
}

/// Milliseconds of `d` for the idle timeout and deadline, whose u32 covers 49 days (longer
/// is taken as 49 days).
fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Counters of one connection.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Connection id.
    pub id: u64,
    /// Peer address.
    pub peer: SocketAddr,
    /// User id (0 = none).
    pub user_id: u32,
    /// Client type (0 = none).
    pub client_type: u32,
    /// Time since accept.
    pub age: Duration,
    /// PDUs received.
    pub pdus_in: u64,
    /// PDUs queued.
    pub pdus_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Frames queued now.
    pub queue_depth: usize,
}

const REGISTRY_SHARDS: usize = 16;

/// The open connections of one listener, for admin listings and shutdown.
///
/// Sharded so that accepting and closing at high rates does not contend on one lock.
#[derive(Clone)]
pub struct ConnRegistry {
    shards: Arc<[Mutex<HashMap<u64, Conn>>; REGISTRY_SHARDS]>,
    pub(crate) stats: Arc<ListenerStats>,
}

impl std::fmt::Debug for ConnRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnRegistry")
            .field("len", &self.len())
            .finish()
    }
}

impl Default for ConnRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ConnRegistry {
            shards: Arc::new(std::array::from_fn(|_| Mutex::new(HashMap::new()))),
            stats: Arc::new(ListenerStats::default()),
        }
    }

    /// The listener-wide counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Conn>> {
        &self.shards[(id as usize) % REGISTRY_SHARDS]
    }

    pub(crate) fn insert(&self, conn: &Conn) {
        if let Ok(mut s) = self.shard(conn.id()).lock() {
            s.insert(conn.id(), conn.clone());
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut s) = self.shard(id).lock() {
            s.remove(&id);
        }
    }

    /// A connection by id.
    pub fn get(&self, id: u64) -> Option<Conn> {
        self.shard(id).lock().ok().and_then(|s| s.get(&id).cloned())
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every connection whose deadline or idle timeout has passed; returns when the
    /// next one will (at the latest [`SWEEP_EVERY`] from now). One pass over tens of
    /// thousands of connections takes about a millisecond, once a second.
    pub(crate) fn sweep(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + SWEEP_EVERY;
        let mut expired = Vec::new();
        for s in self.shards.iter() {
            let Ok(s) = s.lock() else { continue };
            for c in s.values() {
                match c.expiry() {
                    Some((at, reason)) if at <= now && !c.closing() => {
                        expired.push((c.clone(), reason));
                    }
                    // Closing already: its flush has its own deadline.
                    Some((at, _)) if at <= now => {}
                    Some((at, _)) => next = next.min(at),
                    None => {}
                }
            }
        }
        for (c, reason) in expired {
            c.close(reason);
        }
        next
    }

    /// Every open connection (a snapshot).
    pub fn all(&self) -> Vec<Conn> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            if let Ok(s) = s.lock() {
                v.extend(s.values().cloned());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_with_a_writer_started_moments_ago_is_busy() {
        let conn = Conn::new(
            "127.0.0.1:9".parse().unwrap(),
            LinkKind::Client,
            1 << 20,
            None,
            Arc::new(ListenerStats::default()),
        );
        // Only the direction that a slow machine cannot break: after a pause, not busy.
        let pause = Duration::from_millis(u64::from(BUSY_WINDOW_MS) + 2);
        std::thread::sleep(pause);
        assert!(!conn.busy(), "nothing written for a while: write inline");
        std::thread::sleep(pause);
        assert!(!conn.busy());
        // The window itself, without timing.
        assert!(
            within_busy_window(100, 100),
            "a second frame in the same ms: a burst"
        );
        assert!(within_busy_window(100, 100 + BUSY_WINDOW_MS - 1));
        assert!(!within_busy_window(100, 100 + BUSY_WINDOW_MS));
        assert!(
            !within_busy_window(100, 175),
            "a chatting client's next message"
        );
        assert!(within_busy_window(u32::MAX, 0), "across the wrap");
    }

    /// `send_frame_then`: the peer reads nothing while `then` runs, and then the frame,
    /// followed by what `then` queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_sent_then_is_written_after_then() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let stats = Arc::new(ListenerStats::default());
        stats.inline_writes.store(true, Ordering::Relaxed);
        let conn = Conn::new(peer, LinkKind::Client, 1 << 20, None, stats);
        let (_read, write) = server.into_split();
        assert!(conn.inner.queue.park(Box::new(write)).is_none());
        // Not a burst: a frame sent now would be written inline, at once.
        std::thread::sleep(Duration::from_millis(u64::from(BUSY_WINDOW_MS) + 2));
        let mut inside = Vec::new();
        conn.send_frame_then(Bytes::from_static(b"login-res"), || {
            // Long enough for a loopback write to arrive.
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 64];
            if let Ok(n) = client.try_read(&mut buf) {
                inside.extend_from_slice(&buf[..n]);
            }
            conn.send_frame(Bytes::from_static(b"+delivery")).unwrap();
        })
        .unwrap();
        assert_eq!(inside, b"", "the peer read the frame before `then` ran");
        let mut got = vec![0u8; b"login-res+delivery".len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"login-res+delivery");
    }
}
