//! TLS for the client side (optional): new clients on msg_server's TLS port and `tls://`
//! links between servers. Stock TeamTalk clients never use it; the plain path is untouched.
//!
//! rustls with the ring provider only (ARCHITECTURE.md, DEPS.md (c)); the certificates to
//! trust come from a PEM file, so a private CA (the usual case between servers) and the
//! system bundle (`/etc/ssl/certs/ca-certificates.crt`) work alike.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::ensure_crypto_provider;

/// How addresses in config files say "TLS": `tls://host:port`.
pub const TLS_SCHEME: &str = "tls://";

/// Splits an address from a config file into (TLS wanted, `host:port`).
pub fn split_tls_addr(addr: &str) -> (bool, &str) {
    match addr.strip_prefix(TLS_SCHEME) {
        Some(rest) => (true, rest),
        None => (false, addr),
    }
}

/// What a TLS connection needs: the rustls settings and, optionally, the name the peer's
/// certificate must carry (by default the host part of the address dialled).
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// TLS with a ready rustls configuration (built with the ring provider).
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        ClientTls {
            connector: TlsConnector::from(config),
            server_name: None,
        }
    }

    /// Trusts exactly the CA certificates of `ca_pem` (one or more PEM `CERTIFICATE`
    /// blocks), without a client certificate.
    pub fn from_ca_pem(ca_pem: &[u8]) -> Result<Self, TlsSetupError> {
        let roots = root_store(ca_pem)?;
        let config = client_config_builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::new(Arc::new(config)))
    }

    /// Same, presenting a client certificate (chain in `cert_pem`, key in `key_pem`) to peers
    /// that ask for one.
    pub fn from_pem_with_client_cert(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsSetupError> {
        let roots = root_store(ca_pem)?;
        let chain = certificates(cert_pem, "client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsSetupError(format!("no usable private key: {e}")))?;
        let config = client_config_builder()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                TlsSetupError(format!("the client key does not fit its certificate: {e}"))
            })?;
        Ok(Self::new(Arc::new(config)))
    }

    /// Checks peer certificates against `name` instead of the host part of the address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsSetupError> {
        let parsed = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsSetupError(format!("{name:?} is neither a DNS name nor an IP")))?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// The rustls connector.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name to verify for `addr` (`host:port` or `[v6]:port`).
    pub fn server_name_for(&self, addr: &str) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host_part(addr);
        ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} (from {addr:?}) is neither a DNS name nor an IP for TLS"),
            )
        })
    }
}

/// A TLS setting that cannot be used (bad PEM, key not matching the certificate...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(pub String);

fn client_config_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsSetupError> {
    ensure_crypto_provider();
    // The ring provider explicitly, whatever another crate installed as process default.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))
}

/// The certificates of a PEM text, in order; an error when there is none.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "{what}: no PEM CERTIFICATE block found"
        )));
    }
    Ok(certs)
}

/// A root store made of every certificate of `ca_pem`.
pub fn root_store(ca_pem: &[u8]) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem, "CA certificates")? {
        roots
            .add(cert)
            .map_err(|e| TlsSetupError(format!("CA certificate not usable: {e}")))?;
    }
    Ok(roots)
}

fn host_part(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, _port)) => host,
        None => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names() {
        assert_eq!(split_tls_addr("tls://a:1"), (true, "a:1"));
        assert_eq!(split_tls_addr("a:1"), (false, "a:1"));
        assert_eq!(host_part("127.0.0.1:8000"), "127.0.0.1");
        assert_eq!(host_part("[::1]:8000"), "::1");
        assert_eq!(host_part("example.org:1"), "example.org");
        assert_eq!(host_part("example.org"), "example.org");
    }

    #[test]
    fn bad_pem_is_an_error() {
        let e = ClientTls::from_ca_pem(b"not a certificate").err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.0.contains("no PEM CERTIFICATE")),
            "{e:?}"
        );
    }
}
