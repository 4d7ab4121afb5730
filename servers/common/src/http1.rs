//! An HTTP/1.1 accept loop over hyper for the suite's HTTP servers (msfs, http_msg_server):
//! a connection limit, the original's idle rule, header and shutdown deadlines, one task per
//! connection; plain ([`serve_http1`]) or HTTPS ([`serve_https1`]).
//!
//! The original HTTP servers close a connection after a fixed time without data (msfs 30 s,
//! http_msg_server 60 s, FLOWS.md 1.1). [`IdleTimeout`] applies that rule to the socket
//! itself: the deadline moves whenever bytes go in either direction, so it ends a peer that
//! stops sending its upload, one that stops reading a download, and an idle keep-alive
//! connection alike. A separate header deadline stops a peer trickling header bytes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::TlsListen;

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How an HTTP listener treats its connections.
#[derive(Debug, Clone)]
pub struct Http1Options {
    /// Name used in logs ("msfs", "http_msg_server").
    pub name: &'static str,
    /// More simultaneous connections are accepted and closed at once.
    pub max_connections: usize,
    /// Close a connection after this long without a byte in either direction.
    pub idle_timeout: Duration,
    /// The whole request head must arrive within this time.
    pub header_timeout: Duration,
    /// How long shutdown lets open requests finish before the connections are dropped.
    pub shutdown_grace: Duration,
    /// Largest request head accepted (hyper answers 431 beyond it).
    pub max_header_bytes: usize,
}

impl Http1Options {
    /// Defaults: 10 000 connections, `idle` as the idle rule, 30 s for the request head, 10 s
    /// of grace at shutdown, 16 KiB request heads.
    pub fn new(name: &'static str, idle: Duration) -> Self {
        Http1Options {
            name,
            max_connections: 10_000,
            idle_timeout: idle,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The two ends of an accepted connection, handed to the service factory.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client.
    pub peer: SocketAddr,
    /// Our address as the client reached it.
    pub local: SocketAddr,
}

/// Serves HTTP/1.x on `listener` until `shutdown`, building one service per connection with
/// `make_service`. Returns once every connection has finished (or the grace has passed).
pub async fn serve_http1<F, S, B>(
    listener: TcpListener,
    opts: Http1Options,
    make_service: F,
    shutdown: CancellationToken,
) where
    F: Fn(ConnInfo) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    accept_loop(listener, None, opts, make_service, shutdown).await;
}

/// [`serve_http1`] over TLS (HTTPS): the same limits, services and shutdown; each handshake
/// runs in its connection's task, at most `tls.handshake_timeout`.
pub async fn serve_https1<F, S, B>(
    listener: TcpListener,
    tls: TlsListen,
    opts: Http1Options,
    make_service: F,
    shutdown: CancellationToken,
) where
    F: Fn(ConnInfo) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    accept_loop(listener, Some(tls), opts, make_service, shutdown).await;
}

async fn accept_loop<F, S, B>(
    listener: TcpListener,
    tls: Option<TlsListen>,
    opts: Http1Options,
    make_service: F,
    shutdown: CancellationToken,
) where
    F: Fn(ConnInfo) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    crate::net::widen_backlog(&listener);
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let tasks = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    let builder = Arc::new(builder);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tracing::info!(listener = opts.name, addr = ?listener.local_addr().ok(), tls = tls.is_some(),
        "listening");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(listener = opts.name, error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(listener = opts.name, %peer, max = opts.max_connections,
                "HTTP connection limit reached, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            local: stream.local_addr().unwrap_or(peer),
        };
        let service = make_service(info);
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let (name, idle) = (opts.name, opts.idle_timeout);
        match &tls {
            None => {
                tasks.spawn(async move {
                    let _permit = permit;
                    let io = IdleTimeout::new(stream, idle);
                    serve_connection(&builder, io, service, &shutdown, name, peer).await;
                });
            }
            Some(tls) => {
                let tls = tls.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let secured = tokio::select! {
                        r = crate::tls::accept(&tls, stream) => r,
                        () = shutdown.cancelled() => return,
                    };
                    match secured {
                        Ok(stream) => {
                            let io = IdleTimeout::new(stream, idle);
                            serve_connection(&builder, io, service, &shutdown, name, peer).await;
                        }
                        Err(e) => crate::tls::log_handshake_failure(name, peer, &e),
                    }
                });
            }
        }
    }
    // New connections are refused from now on, not left waiting in the backlog.
    drop(listener);
    tasks.close();
    if tokio::time::timeout(opts.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::info!(
            listener = opts.name,
            open = tasks.len(),
            "HTTP connections still open after the shutdown grace; dropping them"
        );
    }
}

/// Serves one connection until it ends; at shutdown the request in progress finishes and
/// no other is read.
async fn serve_connection<IO, S, B>(
    builder: &hyper::server::conn::http1::Builder,
    io: IO,
    service: S,
    shutdown: &CancellationToken,
    name: &'static str,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = name, %peer, error = %e, "HTTP connection ended with an error");
    }
}

/// A socket that fails with `TimedOut` once no byte has moved in either direction for the
/// configured time.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> std::fmt::Debug for IdleTimeout<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimeout")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl<S> IdleTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        // Resetting the timer entry costs more than a comparison; most calls move it by
        // microseconds only, so move it at most every tenth of the period.
        if next.saturating_duration_since(self.deadline.deadline()) > self.idle / 10 {
            self.deadline.as_mut().reset(next);
        }
    }

    fn expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data in either direction for the idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                me.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => me.expired(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                me.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => me.expired(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                me.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => me.expired(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => me.expired(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => me.expired(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test(start_paused = true)]
    async fn idle_sockets_time_out_and_busy_ones_do_not() {
        let (mut a, b) = duplex(64);
        let mut b = IdleTimeout::new(b, Duration::from_secs(30));
        // Traffic every 20 s keeps it open well past 30 s.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            a.write_all(b"x").await.unwrap_or_else(|e| panic!("{e}"));
            let mut one = [0u8; 1];
            b.read_exact(&mut one)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let started = Instant::now();
        let mut one = [0u8; 1];
        let e = b.read_exact(&mut one).await.err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(27) && waited <= Duration::from_secs(31),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_out() {
        let (_a, b) = duplex(16);
        let mut b = IdleTimeout::new(b, Duration::from_secs(30));
        let e = b.write_all(&[0u8; 64]).await.err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
    }
}
