//! The accept loop (plain or TLS) and the per-connection reader.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use im_proto::codec::{LinkKind, PduCodec};
use im_proto::io::{FrameReader, WriteOptions, write_loop};
use im_proto::{Pdu, cid};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{CloseReason, Conn, ConnRegistry, SWEEP_EVERY};
use crate::tls::TlsListen;

/// What a server does with the PDUs of one connection.
///
/// The reader calls [`Handler::on_pdu`] for one PDU at a time, in arrival order; the next PDU
/// is read only after it returns. Heartbeats never reach the handler (see
/// [`ServeOptions::echo_heartbeat`]).
pub trait Handler: Send + 'static {
    /// One inbound PDU.
    fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) -> impl Future<Output = ()> + Send;

    /// The connection is closing (called once, after the last `on_pdu`).
    fn on_close(&mut self, conn: &Conn) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }
}

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Name used in logs ("client", "msg_server", "admin"...).
    pub name: &'static str,
    /// Frame caps.
    pub link: LinkKind,
    /// More simultaneous connections are accepted and closed at once.
    pub max_connections: usize,
    /// A connection limit shared with other listeners of the same pool (msg_server's plain
    /// and TLS client ports); `None`: this listener's own limit of `max_connections`.
    pub shared_limit: Option<Arc<Semaphore>>,
    /// Close a connection after this long without receiving anything (None: never).
    pub idle_timeout: Option<Duration>,
    /// Send back every received heartbeat (msg_server, file_server and push_server do;
    /// clients rely on it to detect dead links).
    pub echo_heartbeat: bool,
    /// Send a heartbeat when nothing was written for this long (server links: 5 s).
    pub heartbeat_when_idle: Option<Duration>,
    /// Outbound bytes queued before the peer counts as a slow consumer.
    pub queue_limit: usize,
    /// How long shutdown waits for connections to drain.
    pub shutdown_grace: Duration,
    /// A send writes on the sending task when the socket has room, instead of starting a
    /// writer task for it (client links; see `Conn::start_writer`). Only for listeners
    /// without `heartbeat_when_idle`, whose writer task exists only while something is
    /// queued.
    pub inline_writes: bool,
}

impl ServeOptions {
    /// Defaults for a listener of TeamTalk clients (FLOWS.md 1.1): 120 s idle (PC; mobile
    /// connections are raised to 300 s after login), heartbeat echo, never an own heartbeat.
    pub fn client(name: &'static str) -> Self {
        ServeOptions {
            name,
            link: LinkKind::Client,
            max_connections: 100_000,
            shared_limit: None,
            idle_timeout: Some(Duration::from_secs(120)),
            echo_heartbeat: true,
            heartbeat_when_idle: None,
            // About 10 seconds of a busy group chat; a client that reads nothing for longer
            // is not coming back.
            queue_limit: 4 << 20,
            shutdown_grace: Duration::from_secs(5),
            inline_writes: true,
        }
    }

    /// Defaults for a listener of other servers: heartbeat after 5 s of silence, close after
    /// 30 s without data (FLOWS.md 1.1).
    pub fn server(name: &'static str) -> Self {
        ServeOptions {
            name,
            link: LinkKind::Server,
            max_connections: 10_000,
            shared_limit: None,
            idle_timeout: Some(Duration::from_secs(30)),
            echo_heartbeat: false,
            heartbeat_when_idle: Some(Duration::from_secs(5)),
            queue_limit: 256 << 20,
            shutdown_grace: Duration::from_secs(5),
            inline_writes: false,
        }
    }
}

/// Smallest and largest pause after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown`, running a handler made by `make_handler` on each.
///
/// On shutdown it stops accepting, lets every connection finish the PDU it is handling, writes
/// out what is queued, and returns when all are closed or `shutdown_grace` has passed.
pub async fn serve<H, F>(
    listener: TcpListener,
    opts: ServeOptions,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    make_handler: F,
) where
    H: Handler,
    F: FnMut(&Conn) -> H,
{
    accept_loop(listener, None, opts, registry, shutdown, make_handler).await;
}

/// [`serve`] on a TLS listener: the same connection limit, registry, handlers and shutdown;
/// each connection starts after its handshake, which runs in its own task (a slow handshake
/// never holds up the accept loop) and is abandoned after `tls.handshake_timeout`.
pub async fn serve_tls<H, F>(
    listener: TcpListener,
    tls: TlsListen,
    opts: ServeOptions,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    make_handler: F,
) where
    H: Handler,
    F: FnMut(&Conn) -> H,
{
    accept_loop(listener, Some(tls), opts, registry, shutdown, make_handler).await;
}

/// [`serve`] on `plain` and, when `tls` is given, [`serve_tls`] on that second listener: one
/// registry, the same handlers and shutdown, and one connection limit of `max_connections`
/// for both ports (unless `opts.shared_limit` already names one). Returns when both stopped.
pub async fn serve_plain_and_tls<H, F>(
    plain: TcpListener,
    tls: Option<(TcpListener, TlsListen)>,
    mut opts: ServeOptions,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    make_handler: F,
) where
    H: Handler,
    F: FnMut(&Conn) -> H + Clone,
{
    let Some((tls_listener, tls)) = tls else {
        serve(plain, opts, registry, shutdown, make_handler).await;
        return;
    };
    if opts.shared_limit.is_none() {
        opts.shared_limit = Some(Arc::new(Semaphore::new(opts.max_connections)));
    }
    tokio::join!(
        serve(
            plain,
            opts.clone(),
            registry.clone(),
            shutdown.clone(),
            make_handler.clone()
        ),
        serve_tls(tls_listener, tls, opts, registry, shutdown, make_handler),
    );
}

/// A connection whose TLS handshake finished, on its way back to the accept loop (which alone
/// makes handlers, so `make_handler` stays a plain `FnMut`).
struct Secured {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// Handshakes finished but not yet picked up by the accept loop.
const SECURED_QUEUE: usize = 64;

/// What the accept loop shares with the connections it starts.
struct Listening<'a> {
    opts: &'a Arc<ServeOptions>,
    registry: &'a ConnRegistry,
    tasks: &'a TaskTracker,
}

impl Listening<'_> {
    /// Registers a connection, makes its handler and spawns it.
    fn start<R, W, H, F>(
        &self,
        make_handler: &mut F,
        (read, write): (R, W),
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        H: Handler,
        F: FnMut(&Conn) -> H,
    {
        let opts = self.opts.clone();
        let conn = Conn::new(
            peer,
            opts.link,
            opts.queue_limit,
            opts.idle_timeout,
            self.registry.stats().clone(),
        );
        // Registered before the handler exists, so that anything iterating the registry
        // (e.g. a shutdown announcement) cannot miss a connection whose handler already
        // looked at the server's state.
        self.registry.insert(&conn);
        let handler = make_handler(&conn);
        attach_writer(&conn, write, &opts);
        let registered = Registered {
            registry: self.registry.clone(),
            id: conn.id(),
            _permit: permit,
        };
        // The reader future itself is the task (no wrapping block that would hold a second
        // copy of its arguments in every idle connection's memory).
        self.tasks
            .spawn(read_loop(conn, read, handler, opts, Some(registered)));
    }
}

/// A connection's place in the registry and under the connection limit, given up when its
/// reader ends.
struct Registered {
    registry: ConnRegistry,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// The accept loop of [`serve`] and [`serve_tls`].
async fn accept_loop<H, F>(
    listener: TcpListener,
    tls: Option<TlsListen>,
    opts: ServeOptions,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    mut make_handler: F,
) where
    H: Handler,
    F: FnMut(&Conn) -> H,
{
    let limit = opts
        .shared_limit
        .clone()
        .unwrap_or_else(|| Arc::new(Semaphore::new(opts.max_connections)));
    registry
        .stats()
        .inline_writes
        .store(opts.inline_writes, std::sync::atomic::Ordering::Relaxed);
    let tasks = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let (secured_tx, mut secured_rx) = mpsc::channel::<Secured>(SECURED_QUEUE);
    crate::net::widen_backlog(&listener);
    let local = listener.local_addr().ok();
    tracing::info!(listener = opts.name, addr = ?local, tls = tls.is_some(), "listening");
    let shared_opts = Arc::new(opts.clone());
    let listening = Listening {
        opts: &shared_opts,
        registry: &registry,
        tasks: &tasks,
    };
    // Idle and login deadlines of this listener's connections (see `ConnRegistry::sweep`).
    let mut next_sweep = tokio::time::Instant::now() + SWEEP_EVERY;
    let first_idle = opts.idle_timeout.unwrap_or(SWEEP_EVERY).min(SWEEP_EVERY);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(s) = secured_rx.recv(), if tls.is_some() => {
                let split = tokio::io::split(s.stream);
                listening.start(&mut make_handler, split, s.peer, s.permit);
                next_sweep = next_sweep.min(tokio::time::Instant::now() + first_idle);
                continue;
            }
            () = tokio::time::sleep_until(next_sweep) => {
                next_sweep = registry.sweep().into();
                continue;
            }
            () = registry.stats().timers.notified() => {
                next_sweep = registry.sweep().into();
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) => {
                tracing::warn!(listener = opts.name, error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        // A connection in its TLS handshake holds a permit too: the limit also bounds the
        // handshakes in progress.
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            registry.stats().refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(listener = opts.name, %peer, max = opts.max_connections,
                "connection limit reached, refusing");
            drop(stream);
            continue;
        };
        registry.stats().accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        match &tls {
            // Owned halves: no lock between reader and writer on the plain path.
            None => {
                listening.start(&mut make_handler, stream.into_split(), peer, permit);
                next_sweep = next_sweep.min(tokio::time::Instant::now() + first_idle);
            }
            Some(tls) => {
                let (tls, tx, name) = (tls.clone(), secured_tx.clone(), opts.name);
                let (stats, shutdown) = (registry.stats().clone(), shutdown.clone());
                tasks.spawn(async move {
                    let stream = tokio::select! {
                        r = crate::tls::accept(&tls, stream) => r,
                        () = shutdown.cancelled() => return,
                    };
                    match stream {
                        Ok(stream) => {
                            let secured = Secured {
                                stream,
                                peer,
                                permit,
                            };
                            // Fails only when the loop has stopped: the connection is dropped.
                            let _ = tx.send(secured).await;
                        }
                        Err(e) => {
                            stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            crate::tls::log_handshake_failure(name, peer, &e);
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    // Handshakes that finish from now on find the channel closed and drop their connection.
    drop(secured_rx);
    // Every connection finishes the PDU it is handling, writes out what is queued and ends.
    for c in registry.all() {
        c.close_after_flush(CloseReason::Shutdown);
    }
    tasks.close();
    if tokio::time::timeout(opts.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = opts.name,
            open = registry.len(),
            "shutdown grace period over, closing the remaining connections"
        );
        for c in registry.all() {
            c.close(CloseReason::Shutdown);
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
    tracing::info!(listener = opts.name, "stopped");
}

/// Runs one connection: this reader loop and its writer (a task while something is queued,
/// or for the whole connection on links that send heartbeats when idle). Exposed for the
/// fuzzing kit and tests; idle and login deadlines are enforced only by [`serve`]'s sweep,
/// and shutdown reaches the connection through [`Conn::close_after_flush`].
pub async fn run_connection<R, W, H>(conn: Conn, read: R, write: W, handler: H, opts: &ServeOptions)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    attach_writer(&conn, write, opts);
    read_loop(conn, read, handler, Arc::new(opts.clone()), None).await;
}

/// Gives the connection its write half: parked in the queue until there is something to
/// write, or (links that send heartbeats when idle) a writer task for the whole connection.
fn attach_writer<W>(conn: &Conn, write: W, opts: &ServeOptions)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    match opts.heartbeat_when_idle {
        None => {
            // Parked until there is something to write: the first send starts a writer.
            if let Some(parked) = conn.inner.queue.park(Box::new(write)) {
                conn.start_writer(parked);
            }
        }
        Some(_) => {
            let wopts = WriteOptions {
                heartbeat_when_idle: opts.heartbeat_when_idle,
            };
            conn.writer_started();
            let conn = conn.clone();
            tokio::spawn(async move {
                if let Err(e) = write_loop(write, &conn.inner.queue, wopts).await {
                    tracing::debug!(conn_id = conn.id(), error = %e, "write failed");
                    conn.close(CloseReason::Protocol(format!("write: {e}")));
                }
                // The writer ending (flush-close done) ends the reader too.
                conn.mark_closed();
                conn.writer_ended();
            });
        }
    }
}

/// The reader: one PDU at a time to the handler until the connection closes; then the
/// handler's `on_close`, and the end of the writer.
///
/// Not an `async fn`: that would store its arguments twice in the future (as arguments and
/// as the locals they move into), and this future is most of an idle connection's memory.
/// The block below captures each once.
fn read_loop<R, H>(
    conn: Conn,
    read: R,
    mut handler: H,
    opts: Arc<ServeOptions>,
    registered: Option<Registered>,
) -> impl Future<Output = ()> + Send + 'static
where
    R: AsyncRead + Unpin + Send + 'static,
    H: Handler,
{
    // Waits with no read buffer (most clients are idle most of the time).
    let mut frames = FrameReader::new(read, PduCodec::new(opts.link));
    async move {
        let reason = loop {
            // Stops at a close (`Conn::mark_closed` wakes `reader`): a waker slot in the
            // connection instead of a `Notify` waiter in this future, which every idle
            // connection would carry.
            let next = {
                let read = frames.next();
                tokio::pin!(read);
                std::future::poll_fn(|cx| {
                    conn.inner.reader.register(cx.waker());
                    if conn.inner.closed.is_cancelled() {
                        return Poll::Ready(None);
                    }
                    read.as_mut().poll(cx).map(Some)
                })
                .await
            };
            let pdu = match next {
                None => break None,
                Some(None) => break Some(CloseReason::PeerClosed),
                Some(Some(Err(e))) => {
                    conn.inner
                        .stats
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        listener = opts.name, conn_id = conn.id(), peer = %conn.peer(),
                        error = %e, "closing connection: bad frame"
                    );
                    break Some(CloseReason::Protocol(e.to_string()));
                }
                Some(Some(Ok(pdu))) => pdu,
            };
            conn.received();
            conn.inner
                .bytes_in
                .store(frames.bytes_read(), Ordering::Relaxed);
            conn.inner.pdus_in.fetch_add(1, Ordering::Relaxed);
            conn.inner.stats.pdus_in.fetch_add(1, Ordering::Relaxed);
            if conn.closing() {
                // Kicked, logged out or shutting down: what arrives now is not handled.
                break None;
            }
            if pdu.command_id() == cid::CID_OTHER_HEARTBEAT {
                if opts.echo_heartbeat {
                    let _ = conn.send_pdu(&pdu);
                }
                continue;
            }
            // Boxed so that this loop's own future stays small: an idle connection then costs
            // little memory however large the handler's futures are.
            Box::pin(handler.on_pdu(&conn, pdu)).await;
        };
        drop(frames);
        if let Some(reason) = reason {
            let flush = matches!(reason, CloseReason::Shutdown | CloseReason::PeerClosed);
            if flush {
                conn.close_after_flush(reason.clone());
            } else {
                conn.close(reason.clone());
            }
        }
        Box::pin(handler.on_close(&conn)).await;
        tracing::debug!(listener = opts.name, conn_id = conn.id(), peer = %conn.peer(),
            reason = %conn.close_reason().map(|r| r.to_string()).unwrap_or_default(), "connection closed");
        // Boxed: the wait is larger than anything else this future holds.
        Box::pin(conn.writers_done()).await;
        drop(registered);
    }
}
