//! login_server's configuration: one TOML file plus `IM_LOGIN_SERVER_*` environment overrides.
//!
//! The keys of the original `loginserver.conf` (FLOWS.md 20.1) map onto these fields:
//! `HttpListenIP`/`HttpPort` -> `http_listen`, `MsgServerListenIP`/`MsgServerPort` ->
//! `msg_server_listen`, `ClientListenIP`/`ClientPort` -> `legacy_client_listen`, `msfs` and
//! `discovery` unchanged.

use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsConfig, check_listen_addr};
use serde::Deserialize;

/// Longest accepted `pending_login_ttl_secs`. A handed-out login that the msg_server has not
/// reported within minutes is not coming; counting it longer only keeps a server looking busy.
pub const MAX_PENDING_LOGIN_TTL_SECS: u64 = 600;

/// The whole login_server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by imctl and in the admin handshake; empty = `login_server@<http_listen>`.
    pub name: String,
    /// Where clients fetch `GET /msg_server` (the original `HttpListenIP:HttpPort`, 8080).
    pub http_listen: String,
    /// Where msg_servers register and report their load with IMMsgServInfo and
    /// IMUserCntUpdate (the original `MsgServerListenIP:MsgServerPort`, 8100).
    pub msg_server_listen: String,
    /// The legacy TCP port answering IMMsgServReq with IMMsgServRsp (the original
    /// `ClientListenIP:ClientPort`, 8008). Empty disables it: stock clients use HTTP.
    pub legacy_client_listen: String,
    /// The same `GET /msg_server` over HTTPS, beside `http_listen` (stock clients use plain
    /// HTTP). Empty = none (e.g. `0.0.0.0:8444`; needs `[tls]`).
    pub https_listen: String,
    /// A second msg_server port over TLS, beside `msg_server_listen`, for msg_servers that
    /// dial `tls://host:port`. Empty = none (needs `[tls]`; `tls.client_ca_file` makes
    /// msg_servers present a certificate).
    pub msg_server_tls_listen: String,
    /// URL handed to clients as `msfsPrior` and `msfsBackup` (where they upload images).
    pub msfs: String,
    /// URL handed to clients as `discovery` (the admin web's discovery page).
    pub discovery: String,
    /// How long a login handed out to a msg_server, but not yet reported by it with
    /// IMUserCntUpdate, counts toward that server's load. It is what spreads a burst of logins
    /// over several servers instead of sending them all to the one that looked emptiest; it
    /// should cover a client's connect-and-authenticate time. 0 counts reported logins only,
    /// as the original did.
    pub pending_login_ttl_secs: u64,
    /// Most simultaneous HTTP connections; more are closed at once. Each request is at most
    /// 1 KiB and answered at once, so this only matters against clients that connect and
    /// send nothing.
    pub http_max_connections: usize,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats, msg_server list, drain).
    pub admin: AdminConfig,
    /// `[http]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// `[tls]`: certificate and key of `https_listen` and `msg_server_tls_listen`.
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            http_listen: "0.0.0.0:8080".to_owned(),
            msg_server_listen: "0.0.0.0:8100".to_owned(),
            legacy_client_listen: "0.0.0.0:8008".to_owned(),
            https_listen: String::new(),
            msg_server_tls_listen: String::new(),
            msfs: "http://127.0.0.1:8700/".to_owned(),
            discovery: "http://127.0.0.1/api/discovery".to_owned(),
            pending_login_ttl_secs: 10,
            http_max_connections: 10_000,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// Checks values that parse but cannot work; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("http_listen", &self.http_listen),
            ("msg_server_listen", &self.msg_server_listen),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::value(
                    key,
                    "must be a listen address such as 0.0.0.0:8080 (it cannot be disabled)",
                ));
            }
        }
        for (key, value) in [("msfs", &self.msfs), ("discovery", &self.discovery)] {
            if value.trim().is_empty() {
                return Err(ConfigError::value(
                    key,
                    "must be a URL handed to clients, e.g. http://127.0.0.1:8700/ for msfs",
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(ConfigError::value(
                    key,
                    format!("{value:?} contains control characters"),
                ));
            }
        }
        if self.pending_login_ttl_secs > MAX_PENDING_LOGIN_TTL_SECS {
            return Err(ConfigError::value(
                "pending_login_ttl_secs",
                format!(
                    "{} is too long; use 0..={MAX_PENDING_LOGIN_TTL_SECS} (10 covers a client's \
                     connect and login)",
                    self.pending_login_ttl_secs
                ),
            ));
        }
        if self.http_max_connections == 0 {
            return Err(ConfigError::value(
                "http_max_connections",
                "must be at least 1",
            ));
        }
        for (key, addr) in [
            ("https_listen", &self.https_listen),
            ("msg_server_tls_listen", &self.msg_server_tls_listen),
        ] {
            check_listen_addr(key, addr)?;
            if !addr.is_empty() {
                self.tls.listen("tls", key)?;
            }
        }
        self.admin.validate()
    }

    /// The configured name, or `login_server@<http_listen>`.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("login_server@{}", self.http_listen)
        } else {
            self.name.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
        assert_eq!(
            Config::default().display_name(),
            "login_server@0.0.0.0:8080"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let check = |f: fn(&mut Config), key: &str| {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().expect_err("must be refused");
            assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        };
        check(|c| c.msfs = String::new(), "msfs");
        check(|c| c.discovery = " ".into(), "discovery");
        check(|c| c.http_listen = String::new(), "http_listen");
        check(|c| c.msg_server_listen = String::new(), "msg_server_listen");
        check(
            |c| c.pending_login_ttl_secs = 3600,
            "pending_login_ttl_secs",
        );
        check(|c| c.http_max_connections = 0, "http_max_connections");
        check(
            |c| {
                c.admin.listen = "127.0.0.1:0".into();
                c.admin.token = "short".into();
            },
            "admin.token",
        );
    }
}
