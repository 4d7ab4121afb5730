//! Connection I/O shared by the client and every server: a byte-bounded outbound queue, a
//! writer that coalesces queued PDUs into few write calls, and a frame reader that holds no
//! buffer while the connection is idle.
//!
//! Why not an mpsc channel: tokio's channel allocates a block of 32 slots per channel up front,
//! about 1 KiB per connection before anything is sent; with tens of thousands of idle clients
//! that is the whole memory budget (ARCHITECTURE.md, 2 KB per idle connection). A `VecDeque`
//! behind a mutex allocates only while frames are queued and is shrunk when drained.
//!
//! Two ways to run the writer: [`write_loop`], a task for the whole life of the connection
//! (the client library, server links that send heartbeats when idle), and
//! [`write_until_idle`], a task that exists only while there is something to write: it parks
//! the write half in the queue when the queue runs dry and the next [`OutQueue::push_and_wake`]
//! hands it back to start a new one. An idle client connection then has no writer task at
//! all (about 600 bytes less each, tens of MB at 50,000 connections).

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

use crate::codec::{CodecError, PduCodec};
use crate::other::ImHeartBeat;
use crate::pdu::{HEADER_LEN, Pdu};

/// Room beyond the announced frame when a waiting reader's frame arrives (see
/// `FrameReader::first_read`).
const QUIET_SLACK: usize = 256;

/// The first read after a wait: a whole small frame, or several (a busy peer), in one call.
const FIRST_READ_BYTES: usize = 4 * 1024;

/// Largest batch written in one call (a few socket buffers' worth).
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Read size when more data is likely waiting (the last read filled the buffer).
const HOT_READ_BYTES: usize = 16 * 1024;

/// A write buffer above this size is freed after use instead of kept for the next batch.
const KEEP_WRITE_BUFFER: usize = 4 * 1024;

/// How long a closing connection may take to write out what is queued: a peer that stops
/// reading must not keep a closed connection (and its task) alive forever.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QueueError {
    /// The queue is closed (the connection is going away).
    #[error("connection closed")]
    Closed,
    /// Queuing it would exceed the byte limit: the peer does not read fast enough.
    #[error("outbound queue full ({queued} bytes queued, limit {limit})")]
    Full {
        /// Bytes already queued.
        queued: usize,
        /// The limit.
        limit: usize,
    },
}

/// A one-way "it happened" flag that tasks can wait for: a `CancellationToken` without its
/// separate allocation (112 bytes, for a tree of children never used here), which matters
/// once per idle connection.
#[derive(Debug, Default)]
pub struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Sets the flag and wakes every waiter.
    pub fn cancel(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// True once set.
    pub fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once set.
    pub async fn cancelled(&self) {
        wait_until(&self.notify, || self.is_cancelled()).await;
    }

    /// Wakes every waiter without setting the flag: lets a task that waits for the flag
    /// *or* something else (see [`wait_until`]) share this signal's waiter list instead of
    /// keeping a `Notify` of its own.
    pub fn wake_waiters(&self) {
        self.notify.notify_waiters();
    }

    /// Resolves once `done` is true, re-checked whenever the signal is set or
    /// [`Signal::wake_waiters`] is called.
    pub async fn wait_until(&self, done: impl Fn() -> bool) {
        wait_until(&self.notify, done).await;
    }
}

/// Resolves once `done()` is true, re-checked each time `notify` wakes this waiter (wakes
/// for other reasons are harmless: the condition is checked again).
async fn wait_until(notify: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}

/// A write half parked in its queue while no writer task runs ([`write_until_idle`]).
pub type ParkedWriter = Box<dyn AsyncWrite + Send + Unpin>;

#[derive(Default)]
struct QueueState {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// No more frames accepted; the writer stops after draining (if `flush_first`) or at once.
    closed: bool,
    flush_first: bool,
    /// The write half, while no writer task runs.
    parked: Option<ParkedWriter>,
}

/// The outbound queue of one connection.
pub struct OutQueue {
    state: Mutex<QueueState>,
    /// Wakes the writer: a frame was queued, the queue was closed, or it was aborted. One
    /// `Notify` for all three (each waiter re-checks what it waits for) because every idle
    /// connection carries this struct.
    notify: Notify,
    /// Set by a close without flush: aborts a write that is stuck on a full socket.
    aborted: AtomicBool,
    limit: usize,
    /// Frames and bytes ever queued (for stats).
    queued_frames: AtomicU64,
    written_bytes: AtomicU64,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutQueue")
            .field("depth", &self.depth())
            .field("limit", &self.limit)
            .finish()
    }
}

impl OutQueue {
    /// A queue that refuses frames once `limit_bytes` are waiting.
    pub fn new(limit_bytes: usize) -> Self {
        OutQueue {
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
            aborted: AtomicBool::new(false),
            limit: limit_bytes,
            queued_frames: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
        }
    }

    /// Queues one encoded frame.
    pub fn push(&self, frame: Bytes) -> Result<(), QueueError> {
        // A queue served by `write_loop` never has a parked writer; one served by
        // `write_until_idle` must use `push_and_wake`, and would lose the writer here.
        self.push_and_wake(frame).map(drop)
    }

    /// Queues one encoded frame; returns the parked write half if no writer task is running,
    /// and the caller must then start one ([`write_until_idle`]) with it.
    pub fn push_and_wake(&self, frame: Bytes) -> Result<Option<ParkedWriter>, QueueError> {
        let parked = {
            let mut st = self.state.lock().map_err(|_| QueueError::Closed)?;
            if st.closed {
                return Err(QueueError::Closed);
            }
            // One oversized frame on an empty queue is still accepted: the limit is about a
            // peer that stops reading, not about a single large answer.
            if st.bytes > 0 && st.bytes + frame.len() > self.limit {
                return Err(QueueError::Full {
                    queued: st.bytes,
                    limit: self.limit,
                });
            }
            st.bytes += frame.len();
            st.frames.push_back(frame);
            st.parked.take()
        };
        self.queued_frames.fetch_add(1, Ordering::Relaxed);
        if parked.is_none() {
            self.notify.notify_one();
        }
        Ok(parked)
    }

    /// Parks `writer` if nothing is queued and the queue is open (the writer task may then
    /// end, or need not start); otherwise gives it back to keep writing or to finish the
    /// close.
    pub fn park(&self, writer: ParkedWriter) -> Option<ParkedWriter> {
        let Ok(mut st) = self.state.lock() else {
            return Some(writer);
        };
        if st.closed || !st.frames.is_empty() {
            return Some(writer);
        }
        // An idle connection keeps no queue memory.
        st.frames = VecDeque::new();
        st.parked = Some(writer);
        None
    }

    /// Frames waiting to be written.
    pub fn depth(&self) -> usize {
        self.state.lock().map(|s| s.frames.len()).unwrap_or(0)
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }

    /// Frames ever queued.
    pub fn frames_total(&self) -> u64 {
        self.queued_frames.load(Ordering::Relaxed)
    }

    /// Bytes ever written by the writer.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes.load(Ordering::Relaxed)
    }

    /// Stops accepting frames. With `flush` the writer still writes what is queued, then
    /// ends; without, it ends at once and queued frames are dropped.
    pub fn close(&self, flush: bool) {
        drop(self.close_and_wake(flush));
    }

    /// [`OutQueue::close`] for a queue served by [`write_until_idle`]: with `flush`, returns
    /// the parked write half (if no writer task is running) for the caller to start one that
    /// writes what is left and shuts the stream down; without, a parked half is dropped here.
    pub fn close_and_wake(&self, flush: bool) -> Option<ParkedWriter> {
        let mut parked = None;
        if let Ok(mut st) = self.state.lock() {
            if !st.closed {
                st.closed = true;
                st.flush_first = flush;
            } else if !flush {
                st.flush_first = false;
            }
            if !flush {
                st.frames.clear();
                st.bytes = 0;
            }
            parked = st.parked.take();
        }
        if !flush {
            self.aborted.store(true, Ordering::Release);
            // A writer stuck in a write waits in `notify_waiters`' list, not for a permit.
            self.notify.notify_waiters();
            // Dropping the half closes the stream's write side.
            drop(parked.take());
        }
        self.notify.notify_one();
        parked
    }

    /// True once closed without flush.
    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// True once [`OutQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true)
    }

    /// For [`write_now`]: what is queued, as one buffer (a lone frame as it is, several
    /// copied together up to about [`WRITE_BATCH_BYTES`]). `Some(empty)` when nothing is
    /// queued, `None` once the queue is closed (closing is left to a writer task).
    fn take_batch(&self) -> Option<Bytes> {
        let mut st = self.state.lock().ok()?;
        if st.closed {
            return None;
        }
        if st.frames.len() <= 1 {
            let f = st.frames.pop_front().unwrap_or_default();
            st.bytes -= f.len();
            return Some(f);
        }
        let mut buf = BytesMut::with_capacity(st.bytes.min(WRITE_BATCH_BYTES));
        st.pop_into(&mut buf);
        Some(buf.freeze())
    }

    /// Moves queued frames into `buf` (up to about [`WRITE_BATCH_BYTES`]).
    /// Returns `Some(frames)` or `None` when the queue is closed and (if flushing) empty.
    fn drain_into(&self, buf: &mut BytesMut) -> Option<usize> {
        let mut st = self.state.lock().ok()?;
        if st.closed && (!st.flush_first || st.frames.is_empty()) {
            return None;
        }
        Some(st.pop_into(buf))
    }
}

impl QueueState {
    /// Moves queued frames into `buf`: at least one, then as many as fit in about
    /// [`WRITE_BATCH_BYTES`]. Returns how many.
    fn pop_into(&mut self, buf: &mut BytesMut) -> usize {
        let mut n = 0;
        while let Some(f) = self.frames.front() {
            if n > 0 && buf.len() + f.len() > WRITE_BATCH_BYTES {
                break;
            }
            let f = self.frames.pop_front().unwrap_or_default();
            self.bytes -= f.len();
            buf.extend_from_slice(&f);
            n += 1;
        }
        if self.frames.is_empty() && self.frames.capacity() > 8 {
            // Give back the memory of a burst.
            self.frames = VecDeque::new();
        }
        n
    }
}

/// How the writer behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Send a heartbeat when nothing was written for this long (server links: 5 s).
    pub heartbeat_when_idle: Option<Duration>,
}

/// Writes queued frames until the queue is closed, several frames per write call.
///
/// Returns the number of write calls made. An I/O error ends the loop (the caller closes the
/// connection); the queue is closed on every exit so producers see [`QueueError::Closed`].
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    queue: &OutQueue,
    opts: WriteOptions,
) -> io::Result<u64> {
    let mut buf = BytesMut::new();
    let mut writes = 0u64;
    let result = write_batches(&mut writer, queue, opts, false, &mut buf, &mut writes)
        .await
        .map(drop);
    let result = finish(&mut writer, queue, result).await;
    result.map(|()| writes)
}

/// How [`write_until_idle`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterExit {
    /// The queue ran dry: the write half is parked in it until the next
    /// [`OutQueue::push_and_wake`] (or [`OutQueue::close_and_wake`]) hands it out again.
    Parked,
    /// The queue was closed: what had to be written was, and the stream was shut down.
    Closed,
}

/// The writer of a queue that has a task only while something is queued: writes as
/// [`write_loop`] does, and when the queue is empty parks `writer` in it and returns.
/// Heartbeats when idle are not possible here (nothing runs while parked).
///
/// `carry` is written first: what [`write_now`] could not write (possibly nothing; the
/// stream is flushed in any case).
pub async fn write_until_idle(
    mut writer: ParkedWriter,
    queue: &OutQueue,
    carry: Bytes,
) -> io::Result<WriterExit> {
    let mut buf = BytesMut::from(carry);
    let mut writes = 0u64;
    let opts = WriteOptions::default();
    // A flush that `write_now` left pending (free when nothing is buffered, as on TCP).
    let flushed = tokio::select! {
        r = writer.flush() => r,
        () = wait_until(&queue.notify, || queue.is_aborted()) => Ok(()),
    };
    if let Err(e) = flushed {
        return finish(&mut writer, queue, Err(e))
            .await
            .map(|()| WriterExit::Closed);
    }
    loop {
        let result = write_batches(&mut writer, queue, opts, true, &mut buf, &mut writes).await;
        if let Ok(false) = result {
            match queue.park(writer) {
                None => return Ok(WriterExit::Parked),
                Some(back) => {
                    writer = back;
                    continue;
                }
            }
        }
        return finish(&mut writer, queue, result.map(drop))
            .await
            .map(|()| WriterExit::Closed);
    }
}

/// Rounds of [`write_now`] before the rest is left to a writer task (others may keep
/// queueing while the caller writes).
const WRITE_NOW_ROUNDS: usize = 4;

/// What [`write_now`] did.
pub enum WriteNow {
    /// Everything queued was written; the write half is parked in the queue again.
    Parked,
    /// A writer task must go on ([`write_until_idle`] with `writer` and `carry`): the
    /// socket did not take everything (`carry` holds the unwritten bytes), the queue is
    /// closing, or it kept refilling.
    Continue(ParkedWriter, Bytes),
    /// The write failed; the write half is dropped.
    Failed(io::Error),
}

/// Writes what is queued on the caller's thread, without a task: for a write half just
/// taken out of the queue by [`OutQueue::push_and_wake`]. A socket with room takes a PDU
/// at once; a writer task spawned for each PDU sent to a quiet client took, besides its
/// write call, about a tenth of msg_server's CPU samples at 20,000 msgs/s (allocation,
/// scheduling, wake-up on the other thread). Never blocks: where the socket would block,
/// the rest goes to a writer task.
/// Polled with a no-op waker; the writer task's first poll registers its own.
pub fn write_now(mut writer: ParkedWriter, queue: &OutQueue) -> WriteNow {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..WRITE_NOW_ROUNDS {
        let Some(data) = queue.take_batch() else {
            return WriteNow::Continue(writer, Bytes::new());
        };
        let mut off = 0;
        while off < data.len() {
            match Pin::new(&mut writer).poll_write(&mut cx, &data[off..]) {
                Poll::Ready(Ok(0)) => return WriteNow::Failed(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => off += n,
                Poll::Ready(Err(e)) => return WriteNow::Failed(e),
                Poll::Pending => {
                    queue.written_bytes.fetch_add(off as u64, Ordering::Relaxed);
                    return WriteNow::Continue(writer, data.slice(off..));
                }
            }
        }
        queue
            .written_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        match Pin::new(&mut writer).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return WriteNow::Failed(e),
            Poll::Pending => return WriteNow::Continue(writer, Bytes::new()),
        }
        match queue.park(writer) {
            None => return WriteNow::Parked,
            Some(back) => writer = back,
        }
    }
    WriteNow::Continue(writer, Bytes::new())
}

/// Writes batches until the queue is closed (`Ok(true)`), an error, or, with `park`, the
/// queue is empty (`Ok(false)`).
async fn write_batches<W: AsyncWrite + Unpin>(
    writer: &mut W,
    queue: &OutQueue,
    opts: WriteOptions,
    park: bool,
    buf: &mut BytesMut,
    writes: &mut u64,
) -> io::Result<bool> {
    let mut flush_deadline: Option<tokio::time::Instant> = None;
    loop {
        let n = match queue.drain_into(buf) {
            None => return Ok(true),
            Some(n) => n,
        };
        if n == 0 && buf.is_empty() {
            if park {
                return Ok(false);
            }
            let idle = async {
                match opts.heartbeat_when_idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = queue.notify.notified() => continue,
                () = idle => Pdu::from_msg(&ImHeartBeat {}, 0).encode_to(buf),
            }
        }
        if flush_deadline.is_none() && queue.is_closed() {
            flush_deadline = Some(tokio::time::Instant::now() + FLUSH_GRACE);
        }
        // The flush is free on a TCP socket; a TLS stream may keep the tail of a batch
        // encrypted in its buffer until flushed (tokio-rustls returns from a write once some
        // of it went out).
        let write_all = async {
            writer.write_all(buf).await?;
            writer.flush().await
        };
        let write = async {
            match flush_deadline {
                Some(at) => tokio::time::timeout_at(at, write_all)
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "flush on close timed out",
                        ))
                    }),
                None => write_all.await,
            }
        };
        let written = tokio::select! {
            r = write => r,
            () = wait_until(&queue.notify, || queue.is_aborted()) => return Ok(true),
        };
        written?;
        *writes += 1;
        queue
            .written_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.capacity() > KEEP_WRITE_BUFFER {
            *buf = BytesMut::new();
        } else {
            buf.clear();
        }
    }
}

/// The end of a writer: closes the queue (producers see [`QueueError::Closed`]) and, unless
/// the close was an abort, flushes and shuts the stream down within [`FLUSH_GRACE`].
async fn finish<W: AsyncWrite + Unpin>(
    writer: &mut W,
    queue: &OutQueue,
    result: io::Result<()>,
) -> io::Result<()> {
    let aborted = queue.is_aborted();
    queue.close(false);
    if aborted {
        // The peer is not reading; do not wait for it.
        return result;
    }
    let tail = async {
        let flushed = writer.flush().await;
        let _ = writer.shutdown().await;
        flushed
    };
    let flushed = tokio::time::timeout(FLUSH_GRACE, tail)
        .await
        .unwrap_or(Ok(()));
    result.and(flushed)
}

/// Reads PDUs from a stream, holding (almost) no buffer while the peer is quiet.
pub struct FrameReader<R> {
    reader: R,
    codec: PduCodec,
    buf: BytesMut,
    /// The last read filled its buffer, so more is probably waiting.
    hot: bool,
    eof: bool,
    bytes_read: u64,
}

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader applying `codec`'s caps.
    pub fn new(reader: R, codec: PduCodec) -> Self {
        FrameReader {
            reader,
            codec,
            buf: BytesMut::new(),
            hot: false,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next PDU; `None` at a clean end of stream. A framing error is returned once and
    /// the caller is expected to close the connection.
    pub async fn next(&mut self) -> Option<Result<Pdu, CodecError>> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(pdu)) => return Some(Ok(pdu)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.eof {
                return match self.codec.decode_eof(&mut self.buf) {
                    Ok(Some(pdu)) => Some(Ok(pdu)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                };
            }
            if self.buf.is_empty() {
                if !self.hot {
                    // Waiting: nothing held (the buffer of the last frame is released).
                    self.buf = BytesMut::new();
                    match self.first_read().await {
                        Ok((_, 0)) => self.eof = true,
                        Ok((buf, n)) => {
                            self.bytes_read += n as u64;
                            self.hot = n == FIRST_READ_BYTES;
                            self.buf = buf;
                        }
                        Err(e) => return Some(Err(CodecError::Io(e))),
                    }
                    continue;
                }
                self.buf = BytesMut::with_capacity(HOT_READ_BYTES);
            }
            let before = self.buf.capacity() - self.buf.len();
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.bytes_read += n as u64;
                    self.hot = n >= before && before > 0;
                }
                Err(e) => return Some(Err(CodecError::Io(e))),
            }
        }
    }

    /// A read with nothing buffered, into an array that exists only while the read is
    /// polled, so that a connection waiting for its peer holds no buffer at all (most
    /// clients are idle most of the time). What arrives moves into a buffer the size of the
    /// frame its header announces plus a little ([`QUIET_SLACK`]; at most a hot read's, the
    /// codec grows it for a longer frame). Not a large buffer each time: many clients
    /// logging in at once would leave the heap fragmented.
    ///
    /// One read call takes a whole small frame. It used to take two (a header-sized array
    /// held across the wait, then the rest), and readers without that array read 64 bytes
    /// first: the second call was a third of msg_server's reads.
    async fn first_read(&mut self) -> io::Result<(BytesMut, usize)> {
        use std::mem::MaybeUninit;
        use std::pin::Pin;
        use std::task::Poll;
        let reader = &mut self.reader;
        std::future::poll_fn(|cx| {
            let mut tmp = [MaybeUninit::<u8>::uninit(); FIRST_READ_BYTES];
            let mut rb = tokio::io::ReadBuf::uninit(&mut tmp);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    let n = got.len();
                    let announced = match got {
                        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
                        _ => HEADER_LEN,
                    };
                    let room = announced.saturating_add(QUIET_SLACK);
                    let mut buf = BytesMut::with_capacity(room.clamp(n, HOT_READ_BYTES.max(n)));
                    buf.extend_from_slice(got);
                    Poll::Ready(Ok((buf, n)))
                }
            }
        })
        .await
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll};

    use super::*;
    use crate::cid;
    use crate::codec::LinkKind;
    use crate::message::ImClientTimeRsp;
    use crate::pdu::Header;

    /// Counts write calls, accepting everything.
    #[derive(Clone, Default)]
    struct CountingWriter {
        calls: Arc<AtomicUsize>,
        bytes: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut b) = self.bytes.lock() {
                b.extend_from_slice(buf);
            }
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn thousand_queued_pdus_take_few_writes() {
        let queue = Arc::new(OutQueue::new(16 << 20));
        let frames: Vec<Bytes> = (0..1000u32)
            .map(|i| Pdu::from_msg(&ImClientTimeRsp { server_time: i }, 0).to_frame())
            .collect();
        for f in &frames {
            queue.push(f.clone()).map_err(|e| e.to_string()).ok();
        }
        queue.close(true);
        let w = CountingWriter::default();
        let writes = write_loop(w.clone(), &queue, WriteOptions::default())
            .await
            .ok();
        let calls = w.calls.load(Ordering::Relaxed);
        assert_eq!(writes, Some(calls as u64));
        assert!(
            (1..=5).contains(&calls),
            "{calls} write calls for 1000 PDUs"
        );
        // Every byte arrived, in order.
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        assert_eq!(w.bytes.lock().map(|b| b.clone()).ok(), Some(expected));
    }

    /// Takes at most `room` more bytes, then answers Pending (and remembers the waker);
    /// optionally fails every write, or leaves the first flush pending.
    #[derive(Clone, Default)]
    struct Gate {
        state: Arc<Mutex<GateState>>,
    }

    #[derive(Default)]
    struct GateState {
        room: usize,
        bytes: Vec<u8>,
        calls: usize,
        fail: bool,
        flush_pending: bool,
        flushes: usize,
        shut: bool,
        waker: Option<std::task::Waker>,
    }

    impl Gate {
        fn with_room(room: usize) -> Self {
            let g = Gate::default();
            g.state.lock().unwrap().room = room;
            g
        }
        fn open(&self) {
            let mut st = self.state.lock().unwrap();
            st.room = usize::MAX;
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
        fn bytes(&self) -> Vec<u8> {
            self.state.lock().unwrap().bytes.clone()
        }
    }

    impl AsyncWrite for Gate {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut st = self.state.lock().unwrap();
            st.calls += 1;
            if st.fail {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(st.room);
            if n == 0 {
                st.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            st.room -= n;
            st.bytes.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut st = self.state.lock().unwrap();
            if st.flush_pending {
                st.flush_pending = false;
                st.waker = Some(cx.waker().clone());
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            st.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.state.lock().unwrap().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn time_frames(n: u32) -> Vec<Bytes> {
        (0..n)
            .map(|i| Pdu::from_msg(&ImClientTimeRsp { server_time: i }, 0).to_frame())
            .collect()
    }

    fn joined(frames: &[Bytes]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.iter().copied()).collect()
    }

    /// A queue with `gate` parked in it, `frames` queued, and the write half handed out by
    /// the first push.
    fn handed_out(gate: &Gate, frames: &[Bytes]) -> (OutQueue, ParkedWriter) {
        let queue = OutQueue::new(1 << 20);
        assert!(queue.park(Box::new(gate.clone())).is_none());
        let writer = queue.push_and_wake(frames[0].clone()).unwrap();
        let writer = writer.expect("the parked write half is handed out");
        for f in &frames[1..] {
            // Queued while the write half is out: no second hand-out.
            assert!(queue.push_and_wake(f.clone()).unwrap().is_none());
        }
        (queue, writer)
    }

    #[test]
    fn write_now_writes_what_is_queued_and_parks_again() {
        let frames = time_frames(3);
        let gate = Gate::with_room(usize::MAX);
        let (queue, writer) = handed_out(&gate, &frames);
        assert!(matches!(write_now(writer, &queue), WriteNow::Parked));
        assert_eq!(gate.bytes(), joined(&frames));
        assert_eq!(
            gate.state.lock().unwrap().calls,
            1,
            "one write for the batch"
        );
        assert_eq!(queue.written_bytes(), joined(&frames).len() as u64);
        // Parked again: the next push hands it out again.
        let writer = queue.push_and_wake(frames[0].clone()).unwrap();
        assert!(writer.is_some());
    }

    #[tokio::test]
    async fn write_now_leaves_what_the_socket_refused_to_a_writer_task() {
        let frames = time_frames(3);
        let gate = Gate::with_room(25);
        let (queue, writer) = handed_out(&gate, &frames[..2]);
        let WriteNow::Continue(writer, carry) = write_now(writer, &queue) else {
            panic!("the socket took only 25 bytes")
        };
        assert_eq!(carry.len(), joined(&frames[..2]).len() - 25);
        // Queued after the refusal: written after the carried rest, in order.
        assert!(queue.push_and_wake(frames[2].clone()).unwrap().is_none());
        let queue = Arc::new(queue);
        let task = {
            let queue = queue.clone();
            tokio::spawn(async move { write_until_idle(writer, &queue, carry).await })
        };
        tokio::task::yield_now().await;
        gate.open();
        let exit = task.await.unwrap().unwrap();
        assert_eq!(exit, WriterExit::Parked);
        assert_eq!(gate.bytes(), joined(&frames));
        assert_eq!(queue.written_bytes(), joined(&frames).len() as u64);
    }

    #[tokio::test]
    async fn write_now_leaves_a_closing_queue_and_a_pending_flush_to_the_task() {
        // Closing (flush first): the task writes what is queued and shuts the stream down.
        let frames = time_frames(2);
        let gate = Gate::with_room(usize::MAX);
        let (queue, writer) = handed_out(&gate, &frames);
        queue.close(true);
        let WriteNow::Continue(writer, carry) = write_now(writer, &queue) else {
            panic!("a closing queue is the task's")
        };
        assert!(carry.is_empty() && gate.bytes().is_empty());
        let exit = write_until_idle(writer, &queue, carry).await.unwrap();
        assert_eq!(exit, WriterExit::Closed);
        assert_eq!(gate.bytes(), joined(&frames));
        assert!(gate.state.lock().unwrap().shut);

        // A flush that could not finish (TLS with a full socket): the task flushes.
        let gate = Gate::with_room(usize::MAX);
        gate.state.lock().unwrap().flush_pending = true;
        let (queue, writer) = handed_out(&gate, &frames);
        let WriteNow::Continue(writer, carry) = write_now(writer, &queue) else {
            panic!("the flush was pending")
        };
        assert!(carry.is_empty());
        assert_eq!(gate.state.lock().unwrap().flushes, 0);
        let exit = write_until_idle(writer, &queue, carry).await.unwrap();
        assert_eq!(exit, WriterExit::Parked);
        assert_eq!(gate.state.lock().unwrap().flushes, 1);
        assert_eq!(gate.bytes(), joined(&frames));

        // A failed write is reported, not retried.
        let gate = Gate::with_room(usize::MAX);
        gate.state.lock().unwrap().fail = true;
        let (queue, writer) = handed_out(&gate, &frames);
        assert!(matches!(write_now(writer, &queue), WriteNow::Failed(_)));
    }

    #[test]
    fn queue_limit_and_close() {
        let q = OutQueue::new(40);
        let f = Bytes::from(vec![0u8; 16]);
        assert_eq!(q.push(f.clone()), Ok(()));
        assert_eq!(q.push(f.clone()), Ok(()));
        assert_eq!(
            q.push(f.clone()),
            Err(QueueError::Full {
                queued: 32,
                limit: 40
            })
        );
        assert_eq!(q.depth(), 2);
        q.close(false);
        assert_eq!(q.depth(), 0);
        assert_eq!(q.push(f), Err(QueueError::Closed));
        // A single frame larger than the limit goes through on an empty queue.
        let q = OutQueue::new(4);
        assert_eq!(q.push(Bytes::from(vec![0u8; 16])), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_writer_sends_heartbeats() {
        let queue = Arc::new(OutQueue::new(1 << 20));
        let w = CountingWriter::default();
        let task = {
            let (q, w) = (queue.clone(), w.clone());
            tokio::spawn(async move {
                let opts = WriteOptions {
                    heartbeat_when_idle: Some(Duration::from_secs(5)),
                };
                write_loop(w, &q, opts).await
            })
        };
        tokio::time::sleep(Duration::from_millis(11_000)).await;
        queue.close(true);
        let _ = task.await;
        let bytes = w.bytes.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(bytes.len(), 32, "two 16-byte heartbeats in 11 s");
        assert_eq!(&bytes[8..12], &[0, 7, 7, 1]);
    }

    #[tokio::test]
    async fn reader_splits_and_releases_its_buffer() {
        let mut wire = Vec::new();
        for i in 0..100u32 {
            wire.extend_from_slice(
                &Pdu::from_msg(&ImClientTimeRsp { server_time: i }, 1).to_frame(),
            );
        }
        let mut r = FrameReader::new(&wire[..], PduCodec::new(LinkKind::Client));
        let mut n = 0;
        while let Some(p) = r.next().await {
            let m: Option<ImClientTimeRsp> = p.ok().and_then(|p| p.decode().ok());
            assert_eq!(m.map(|m| m.server_time), Some(n));
            n += 1;
        }
        assert_eq!(n, 100);
        assert_eq!(r.bytes_read(), wire.len() as u64);
        // Truncated stream: a typed error, not a panic.
        let mut r = FrameReader::new(&wire[..22], PduCodec::new(LinkKind::Client));
        assert!(matches!(r.next().await, Some(Ok(_))));
        assert!(matches!(
            r.next().await,
            Some(Err(CodecError::Truncated { have: 4, need: 18 }))
        ));
    }

    /// Hands out its chunks one per read (as much of each as fits), remembering how much
    /// room every read offered; then the end of the stream.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        offered: Vec<usize>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.offered.push(buf.remaining());
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_waiting_reader_holds_no_buffer_and_reads_a_frame_in_one_call() {
        let beat = Pdu::from_msg(&ImHeartBeat {}, 0).to_frame();
        let big = Pdu::from_msg(&ImClientTimeRsp { server_time: 7 }, 2).to_frame();
        let padded = Pdu::new(Header::new(0, 0x0701, 9), Bytes::from(vec![0u8; 300]));
        let padded = padded.to_frame();
        let mut burst = Vec::new();
        for _ in 0..3 {
            burst.extend_from_slice(&padded);
        }
        let chunks = vec![
            beat.to_vec(),
            big[..10].to_vec(),
            big[10..].to_vec(),
            burst.clone(),
        ];
        let reader = Chunks {
            chunks: chunks.into(),
            offered: Vec::new(),
        };
        let mut r = FrameReader::new(reader, PduCodec::new(LinkKind::Client));
        let mut got = Vec::new();
        while let Some(p) = r.next().await {
            let p = p.expect("valid frames");
            got.push((p.command_id(), p.body.len()));
        }
        let want_big = big.len() - HEADER_LEN;
        assert_eq!(
            got,
            vec![
                (cid::CID_OTHER_HEARTBEAT, 0),
                (cid::CID_MSG_TIME_RESPONSE, want_big),
                (0x0701, 300),
                (0x0701, 300),
                (0x0701, 300),
            ]
        );
        assert_eq!(
            r.bytes_read(),
            (beat.len() + big.len() + burst.len()) as u64
        );
        let offered = &r.get_ref().offered;
        // Every wait that starts with nothing buffered reads into the array that exists
        // only during the poll (no buffer is allocated before the peer sends something),
        // a whole frame or burst in one call; the rest of a frame that arrived split is read
        // into room for that frame and a little more. Five calls for five frames, the end
        // of the stream included.
        assert_eq!(
            offered,
            &[
                FIRST_READ_BYTES,
                FIRST_READ_BYTES,
                big.len() - 10 + QUIET_SLACK,
                FIRST_READ_BYTES,
                FIRST_READ_BYTES
            ]
        );
    }

    #[tokio::test]
    async fn a_busy_reader_turns_hot() {
        // Forty frames waiting at once, as from a client sending in a burst: once the first
        // read finds more than its frame, the reader reads several frames per call instead
        // of a header and a rest per frame (80 reads).
        let frame = Pdu::new(Header::new(0, 0x0301, 1), Bytes::from(vec![1u8; 200])).to_frame();
        let mut burst = Vec::new();
        for _ in 0..40 {
            burst.extend_from_slice(&frame);
        }
        let reader = Chunks {
            chunks: vec![burst.clone()].into(),
            offered: Vec::new(),
        };
        let mut r = FrameReader::new(reader, PduCodec::new(LinkKind::Client));
        let mut frames = 0;
        while let Some(p) = r.next().await {
            assert_eq!(p.expect("valid frames").body.len(), 200);
            frames += 1;
        }
        assert_eq!(frames, 40);
        let reads = r.get_ref().offered.len();
        assert!(
            reads <= 30,
            "{reads} reads for 40 frames: {:?}",
            r.get_ref().offered
        );
    }
}
