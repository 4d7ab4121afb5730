//! Listening sockets: binding the addresses a config names, and the accept-queue length.

use tokio::net::TcpListener;

/// A configured address that could not be bound; names the config key.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: cannot listen on {addr:?}")]
pub struct BindError {
    /// The config key holding the address.
    pub key: String,
    /// The address as written.
    pub addr: String,
    /// Why binding failed.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`, the value of config key `key` (every server's `Listeners::bind`).
pub async fn bind(key: &str, addr: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        key: key.to_owned(),
        addr: addr.to_owned(),
        source,
    })
}

/// [`bind`] for an optional listener: an empty address leaves it unbound.
pub async fn bind_optional(key: &str, addr: &str) -> Result<Option<TcpListener>, BindError> {
    if addr.is_empty() {
        Ok(None)
    } else {
        bind(key, addr).await.map(Some)
    }
}

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
    async fn bind_names_the_key_and_skips_empty_addresses() {
        assert!(bind_optional("admin.listen", "").await.unwrap().is_none());
        let taken = bind("listen", "127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = bind_optional("tls_listen", &addr).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("config key `tls_listen`: cannot listen on {addr:?}")
        );
        assert_eq!(e.source.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn a_widened_listener_still_accepts() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        widen_backlog(&l);
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        assert!(a.is_ok() && b.is_ok());
    }
}
