//! Listening sockets.

use tokio::net::TcpListener;

/// Accept-queue length asked for; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// Lengthens the accept queue of a bound listener to [`BACKLOG`].
///
/// tokio binds with a backlog of 128. In a login storm (thousands of clients connecting
/// within a second) that queue overflowed and the kernel dropped SYNs, which clients resend
/// only after a second (measured with `imctl bench login`, 5,000 users: 79 overflows and a
/// login p99 of 1.1 s). On Linux, listen() on a listening socket only changes its backlog.
pub fn widen_backlog(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).listen(BACKLOG) {
        tracing::warn!(error = %e, "cannot lengthen the listen backlog; keeping the default");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_widened_listener_still_accepts() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        widen_backlog(&l);
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        assert!(a.is_ok() && b.is_ok());
    }
}
