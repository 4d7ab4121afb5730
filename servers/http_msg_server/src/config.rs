//! http_msg_server's configuration: one TOML file plus `IM_HTTP_MSG_SERVER_*` environment
//! overrides.
//!
//! The keys of the original `httpmsgserver.conf` (FLOWS.md 20.8) map onto these fields:
//! `ListenIP`/`ListenPort` -> `listen`, `DBServerIP<n>`/`DBServerPort<n>` -> `db_proxy`,
//! `ConcurrentDBConnCnt` -> `db_connections_per_server`, `RouteServerIP<n>`/
//! `RouteServerPort<n>` -> `route_servers`. `api_token` and `aes_key` are ours.

use im_common::backoff::BackoffConfig;
use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsClientConfig, TlsConfig, check_listen_addr};
use im_proto::client::ClientTls;
use im_proto::crypto::{DEFAULT_MESSAGE_KEY, MessageCipher};
use serde::Deserialize;

/// Shortest `api_token` accepted.
pub const MIN_API_TOKEN_LEN: usize = 16;

/// The whole http_msg_server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by imctl and in the admin handshake; empty = `http_msg_server@<listen>`.
    pub name: String,
    /// HTTP address of the API (the original `ListenIP:ListenPort`, 8400). The `/query/`
    /// endpoints act with full rights over groups and messages: keep this port on a network
    /// only the admin tools reach.
    pub listen: String,
    /// Secret every `/query/` request must carry (`Authorization: Bearer <token>` or
    /// `X-Api-Token: <token>`); required, at least 16 characters. The original had none
    /// (WEAKNESSES 10). Prefer `IM_HTTP_MSG_SERVER_API_TOKEN` to the file.
    pub api_token: String,
    /// db_proxy_server addresses (the original `DBServerIP<n>:DBServerPort<n>`).
    pub db_proxy: Vec<String>,
    /// Links per db_proxy address (the original `ConcurrentDBConnCnt`, default 2 here as there).
    pub db_connections_per_server: usize,
    /// route_server addresses; every one gets a link, the oldest live one carries the
    /// notifies and messages (FLOWS.md 1.2).
    pub route_servers: Vec<String>,
    /// The 32-character message key (`aesKey`) that `/query/SendMessage` encrypts with, as a
    /// stock client does (FLOWS.md 18); it must match the clients' and msg_servers'.
    pub aes_key: String,
    /// How long a request waits for db_proxy's answer, in milliseconds.
    pub request_timeout_ms: u64,
    /// Largest request body; larger ones are refused with error 1.
    pub max_body_bytes: usize,
    /// Most simultaneous HTTP connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// Seconds without a byte in either direction before a connection is closed (the
    /// original's 60 s, FLOWS.md 1.1).
    pub idle_timeout_secs: u64,
    /// Seconds `GET /api/discovery` answers are reused before db_proxy is asked again (every
    /// client asks when it opens its discovery tab); 0 asks every time.
    pub discovery_cache_secs: u64,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats).
    pub admin: AdminConfig,
    /// `[http]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// `[backoff]`: reconnect delays of the db_proxy and route_server links (Decisions 3).
    pub backoff: BackoffConfig,
    /// The same API over HTTPS, beside `listen`. Empty = none (e.g. `0.0.0.0:8445`; needs `[tls]`).
    pub https_listen: String,
    /// `[tls]`: certificate and key of `https_listen`.
    pub tls: TlsConfig,
    /// `[tls_client]`: what to trust when an upstream address is written `tls://host:port`, and the
    /// client certificate for peers that require one.
    pub tls_client: TlsClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "0.0.0.0:8400".to_owned(),
            api_token: String::new(),
            db_proxy: vec!["127.0.0.1:10600".to_owned()],
            db_connections_per_server: 2,
            route_servers: vec!["127.0.0.1:8200".to_owned()],
            aes_key: DEFAULT_MESSAGE_KEY.to_owned(),
            request_timeout_ms: 5_000,
            max_body_bytes: 1 << 20,
            max_connections: 1_000,
            idle_timeout_secs: 60,
            discovery_cache_secs: 10,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            backoff: BackoffConfig::default(),
            https_listen: String::new(),
            tls: TlsConfig::default(),
            tls_client: TlsClientConfig::default(),
        }
    }
}

impl Config {
    /// Checks values that parse but cannot work; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.trim().is_empty() {
            return Err(ConfigError::value(
                "listen",
                "must be a listen address such as 0.0.0.0:8400",
            ));
        }
        if self.api_token.len() < MIN_API_TOKEN_LEN {
            return Err(ConfigError::value(
                "api_token",
                format!(
                    "is required and must be at least {MIN_API_TOKEN_LEN} characters (got {}); \
                     set it in the file or in IM_HTTP_MSG_SERVER_API_TOKEN",
                    self.api_token.len()
                ),
            ));
        }
        if self.db_proxy.is_empty() || self.db_proxy.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::value(
                "db_proxy",
                "must list at least one db_proxy_server address, e.g. [\"127.0.0.1:10600\"]",
            ));
        }
        if self.db_connections_per_server == 0 {
            return Err(ConfigError::value(
                "db_connections_per_server",
                "must be at least 1 (the original's default is 2)",
            ));
        }
        if self.route_servers.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::value(
                "route_servers",
                "contains an empty address",
            ));
        }
        if let Err(e) = MessageCipher::new(self.aes_key.as_bytes()) {
            return Err(ConfigError::value(
                "aes_key",
                format!("{e}; stock clients use {DEFAULT_MESSAGE_KEY:?}"),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::value(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::value(
                "max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::value("max_connections", "must be at least 1"));
        }
        if self.idle_timeout_secs == 0 {
            return Err(ConfigError::value(
                "idle_timeout_secs",
                "must be at least 1 (the original uses 60)",
            ));
        }
        check_listen_addr("https_listen", &self.https_listen)?;
        if !self.https_listen.is_empty() {
            self.tls.listen("tls", "https_listen")?;
        }
        self.client_tls()?;
        self.admin.validate()
    }

    /// The TLS setting of the upstream links, when any address is `tls://host:port`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, ConfigError> {
        let lists: [(&str, &Vec<String>); 2] = [
            ("db_proxy", &self.db_proxy),
            ("route_servers", &self.route_servers),
        ];
        self.tls_client.client_for(
            "tls_client",
            lists
                .into_iter()
                .flat_map(|(k, v)| v.iter().map(move |a| (k, a.as_str()))),
        )
    }

    /// The configured name, or `http_msg_server@<listen>`.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("http_msg_server@{}", self.listen)
        } else {
            self.name.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            api_token: "api-token-0123456789".into(),
            ..Config::default()
        }
    }

    #[test]
    fn a_token_is_required() {
        let e = Config::default().validate().expect_err("no token");
        assert!(e.to_string().contains("`api_token`"), "{e}");
        assert!(valid().validate().is_ok());
        assert_eq!(valid().display_name(), "http_msg_server@0.0.0.0:8400");
    }

    #[test]
    fn the_sample_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/config/http_msg_server.toml");
        let c: Config =
            im_common::config::load_from(Some(&path), "IM_HTTP_MSG_SERVER_", &[]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8400");
    }

    #[test]
    fn errors_name_the_key() {
        let check = |f: fn(&mut Config), key: &str| {
            let mut c = valid();
            f(&mut c);
            let e = c.validate().expect_err("must be refused");
            assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        };
        check(|c| c.listen = String::new(), "listen");
        check(|c| c.db_proxy = Vec::new(), "db_proxy");
        check(
            |c| c.db_connections_per_server = 0,
            "db_connections_per_server",
        );
        check(|c| c.route_servers = vec![" ".into()], "route_servers");
        check(|c| c.aes_key = "short".into(), "aes_key");
        check(|c| c.request_timeout_ms = 0, "request_timeout_ms");
        check(|c| c.max_body_bytes = 10, "max_body_bytes");
        check(|c| c.max_connections = 0, "max_connections");
        check(|c| c.idle_timeout_secs = 0, "idle_timeout_secs");
    }
}
