//! Optional TLS (rustls with ring): a second, TLS-only client port on msg_server, HTTPS on
//! login_server, msfs and http_msg_server, and TLS between servers.
//!
//! Stock TeamTalk clients speak plain TCP and HTTP; every plain port stays as it is and TLS is
//! an additional listener. Two config sections:
//!
//! * `[tls]` ([`TlsConfig`]): the certificate and key a server presents on its TLS listeners,
//!   and optionally a CA whose client certificates it then requires (mutual TLS, meant for
//!   server-to-server ports).
//! * `[tls_client]` ([`TlsClientConfig`]): what a server trusts when it dials a peer written
//!   as `tls://host:port` in its address lists, and optionally the client certificate it
//!   presents.
//!
//! Files are read once at start-up (like the config file itself), so a bad file stops the
//! server with an error that names the key and the file.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use im_proto::client::{ClientTls, TLS_SCHEME, certificates, root_store, split_tls_addr};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ConfigError;

/// Default time a peer has to finish the TLS handshake: a real client needs a few round
/// trips; a peer that connects and sends nothing must not hold a connection slot for long.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: f64 = 10.0;

/// `[tls]`: the certificate of this server's TLS listeners (all of them share it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's own certificate first. Required as
    /// soon as a TLS listener is configured.
    pub cert_file: String,
    /// PEM file with the private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM file of CA certificates; when set, every peer must present a client certificate
    /// signed by one of them (mutual TLS between servers). Empty = no client certificates.
    pub client_ca_file: String,
    /// Seconds a peer has to complete the handshake before it is closed.
    pub handshake_timeout_secs: f64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            handshake_timeout_secs: DEFAULT_HANDSHAKE_TIMEOUT_SECS,
        }
    }
}

/// A ready TLS listener setting: the acceptor and the handshake deadline.
#[derive(Clone)]
pub struct TlsListen {
    /// The rustls acceptor.
    pub acceptor: TlsAcceptor,
    /// Handshakes slower than this are abandoned.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListen")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads the certificate and key; `section` is the config section's name (`tls`) for
    /// error messages, `why` says which key asked for TLS (`tls_listen`).
    pub fn listen(&self, section: &str, why: &str) -> Result<TlsListen, ConfigError> {
        let key_name = |k: &str| format!("{section}.{k}");
        for (k, v) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if v.is_empty() {
                return Err(ConfigError::value(
                    key_name(k),
                    format!("must name a PEM file because `{why}` is set"),
                ));
            }
        }
        let secs = self.handshake_timeout_secs;
        if !(secs.is_finite() && (0.001..=600.0).contains(&secs)) {
            return Err(ConfigError::value(
                key_name("handshake_timeout_secs"),
                format!("must be a number of seconds between 0.001 and 600 (got {secs})"),
            ));
        }
        let chain = read_certs(&key_name("cert_file"), &self.cert_file)?;
        let key = read_key(&key_name("key_file"), &self.key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::value(key_name("cert_file"), e.to_string()))?;
        let builder = if self.client_ca_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let ca_key = key_name("client_ca_file");
            let pem = read_file(&ca_key, &self.client_ca_file)?;
            let roots =
                root_store(&pem).map_err(|e| file_error(&ca_key, &self.client_ca_file, e))?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                ring_provider(),
            )
            .build()
            .map_err(|e| file_error(&ca_key, &self.client_ca_file, e))?;
            builder.with_client_cert_verifier(verifier)
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            ConfigError::value(
                key_name("key_file"),
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    self.key_file, self.cert_file
                ),
            )
        })?;
        Ok(TlsListen {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: Duration::from_secs_f64(secs),
        })
    }

    /// [`TlsConfig::listen`] when `listen_addr` (the value of the key `why`) is set.
    pub fn listen_if(
        &self,
        section: &str,
        why: &str,
        listen_addr: &str,
    ) -> Result<Option<TlsListen>, ConfigError> {
        if listen_addr.is_empty() {
            Ok(None)
        } else {
            self.listen(section, why).map(Some)
        }
    }
}

/// A bound TLS listener with its settings, or `None` when `listener` is `None`; `why` names
/// the key of the listener's address (`tls_listen`) in errors. Section `tls`.
pub fn tls_listener(
    config: &TlsConfig,
    listener: Option<tokio::net::TcpListener>,
    why: &str,
) -> Result<Option<(tokio::net::TcpListener, TlsListen)>, ConfigError> {
    match listener {
        None => Ok(None),
        Some(l) => Ok(Some((l, config.listen("tls", why)?))),
    }
}

/// Checks an optional listen address (`key`): empty or `ip:port`.
pub fn check_listen_addr(key: &str, addr: &str) -> Result<(), ConfigError> {
    if addr.is_empty() || addr.parse::<SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(ConfigError::value(
            key,
            format!(
                "must be empty (no listener) or an ip:port address such as 0.0.0.0:8443 (got {addr:?})"
            ),
        ))
    }
}

/// `[tls_client]`: how this server checks peers it reaches at `tls://host:port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// PEM file of the CA certificates peers' certificates must chain to (a private CA, or
    /// the system bundle such as `/etc/ssl/certs/ca-certificates.crt`). Required as soon as
    /// an address uses `tls://`.
    pub ca_file: String,
    /// Name the peers' certificates must carry; empty = the host part of each address (a
    /// DNS name or an IP address, which the certificate must then list).
    pub server_name: String,
    /// PEM certificate chain presented to peers that require client certificates (their
    /// `tls.client_ca_file`); empty = none.
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
}

impl TlsClientConfig {
    /// Builds the client TLS setting; `section` names the section in errors (`tls_client`).
    pub fn client(&self, section: &str) -> Result<ClientTls, ConfigError> {
        let key_name = |k: &str| format!("{section}.{k}");
        if self.ca_file.is_empty() {
            return Err(ConfigError::value(
                key_name("ca_file"),
                format!("must name a PEM file of CA certificates: an address uses {TLS_SCHEME}"),
            ));
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(ConfigError::value(
                key_name(if self.cert_file.is_empty() {
                    "cert_file"
                } else {
                    "key_file"
                }),
                "cert_file and key_file must be set together (a client certificate needs its key)",
            ));
        }
        let ca_key = key_name("ca_file");
        let ca = read_file(&ca_key, &self.ca_file)?;
        let tls = if self.cert_file.is_empty() {
            ClientTls::from_ca_pem(&ca).map_err(|e| file_error(&ca_key, &self.ca_file, e))?
        } else {
            // Parse each file on its own first so that an error names the right one.
            let cert_key = key_name("cert_file");
            let cert = read_file(&cert_key, &self.cert_file)?;
            certificates(&cert, "certificate")
                .map_err(|e| file_error(&cert_key, &self.cert_file, e))?;
            let key_key = key_name("key_file");
            let key = read_file(&key_key, &self.key_file)?;
            PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| file_error(&key_key, &self.key_file, no_key(e)))?;
            root_store(&ca).map_err(|e| file_error(&ca_key, &self.ca_file, e))?;
            ClientTls::from_pem_with_client_cert(&ca, &cert, &key)
                .map_err(|e| file_error(&key_key, &self.key_file, e))?
        };
        if self.server_name.is_empty() {
            Ok(tls)
        } else {
            tls.with_server_name(&self.server_name)
                .map_err(|e| ConfigError::value(key_name("server_name"), e.to_string()))
        }
    }

    /// The client TLS setting if any of `addrs` uses `tls://`, checking every address;
    /// `key` names the address list in errors.
    pub fn client_for<'a>(
        &self,
        section: &str,
        addrs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<ClientTls>, ConfigError> {
        let mut wanted = false;
        for (key, addr) in addrs {
            let (tls, rest) = split_tls_addr(addr);
            if rest.is_empty() || rest.contains("://") {
                return Err(ConfigError::value(
                    key,
                    format!("{addr:?} is not host:port or {TLS_SCHEME}host:port"),
                ));
            }
            wanted |= tls;
        }
        if wanted {
            self.client(section).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Runs the server side of a handshake on an accepted socket, at most `tls.handshake_timeout`.
pub async fn accept(tls: &TlsListen, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "TLS handshake not finished within {:?}",
                tls.handshake_timeout
            ),
        )),
    }
}

/// Logs a failed handshake the same way on every listener.
pub fn log_handshake_failure(listener: &str, peer: SocketAddr, error: &io::Error) {
    // info, not warn: port scanners and plain clients on the TLS port are expected noise,
    // and they are counted.
    tracing::info!(listener, %peer, error = %error, "TLS handshake failed, connection closed");
}

#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring explicitly (DEPS.md (c)); see im_proto::client::ensure_crypto_provider.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(Path::new(path))
        .map_err(|e| ConfigError::value(key, format!("cannot read {path}: {e}")))
}

fn read_certs(
    key: &str,
    path: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    let pem = read_file(key, path)?;
    certificates(&pem, "certificate").map_err(|e| file_error(key, path, e))
}

fn read_key(key: &str, path: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read_file(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(key, path, no_key(e)))
}

fn no_key(e: rustls::pki_types::pem::Error) -> String {
    format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")
}

fn file_error(key: &str, path: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::value(key, format!("{path}: {e}"))
}
