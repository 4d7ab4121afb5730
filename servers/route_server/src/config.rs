//! route_server's configuration (`fixtures/config/route_server.toml` is the documented sample).

use std::net::SocketAddr;
use std::time::Duration;

use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsConfig, check_listen_addr};
use serde::Deserialize;

/// Longest offline grace accepted: beyond an hour, users of a dead msg_server would look
/// online long after their connections are gone.
pub const MAX_OFFLINE_GRACE_SECS: f64 = 3600.0;

/// Everything route_server reads from its config file and `IM_ROUTE_SERVER_*` variables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by `imctl` and in admin answers; empty = `route_server@<listen address>`.
    pub name: String,
    /// Where msg_servers and http_msg_servers connect (the original's `ListenIP` +
    /// `ListenMsgPort`, 8200).
    pub listen: String,
    /// How long the users of a msg_server whose link dropped stay "online" before they are
    /// announced offline, in seconds (fractions allowed). A msg_server that reconnects within
    /// it re-registers its users without anybody being told they went away; the original
    /// forgot them silently (WEAKNESSES 39). The default leaves room for a reconnect backoff
    /// of up to 1 s many times over, and for a route_server restart. 0 announces at once.
    pub offline_grace_secs: f64,
    /// `[log]`: format and filter.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (routes, locate, kick, stats).
    pub admin: AdminConfig,
    /// `[http]`: `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// A second port for msg_server and http_msg_server links over TLS, beside `listen`, for peers
    /// that dial `tls://host:port`. Empty = none (e.g. `0.0.0.0:8210`; needs `[tls]`).
    pub tls_listen: String,
    /// `[tls]`: certificate and key of `tls_listen`; `client_ca_file` makes the peers present a
    /// certificate (mutual TLS).
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "0.0.0.0:8200".to_owned(),
            offline_grace_secs: 15.0,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            tls_listen: String::new(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// Checks the values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.offline_grace_secs.is_finite()
            && (0.0..=MAX_OFFLINE_GRACE_SECS).contains(&self.offline_grace_secs))
        {
            return Err(ConfigError::value(
                "offline_grace_secs",
                format!(
                    "must be between 0 and {MAX_OFFLINE_GRACE_SECS} seconds (got {})",
                    self.offline_grace_secs
                ),
            ));
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::value(
                "listen",
                format!(
                    "must be an ip:port address such as 0.0.0.0:8200 (got {:?})",
                    self.listen
                ),
            ));
        }
        check_listen_addr("tls_listen", &self.tls_listen)?;
        if !self.tls_listen.is_empty() {
            self.tls.listen("tls", "tls_listen")?;
        }
        self.admin.validate()
    }

    /// The offline grace period.
    pub fn offline_grace(&self) -> Duration {
        Duration::from_secs_f64(self.offline_grace_secs.clamp(0.0, MAX_OFFLINE_GRACE_SECS))
    }

    /// The configured name, or `route_server@<addr>`.
    pub fn display_name(&self, listen: SocketAddr) -> String {
        if self.name.is_empty() {
            format!("route_server@{listen}")
        } else {
            self.name.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::*;

    fn sample_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config/route_server.toml")
    }

    #[test]
    fn sample_config_parses_and_validates() {
        let cfg: Config =
            im_common::config::load_from(Some(&sample_path()), "IM_ROUTE_SERVER_", &[])
                .expect("sample config");
        cfg.validate().expect("valid");
        assert_eq!(cfg.listen, "0.0.0.0:8200");
        assert_eq!(cfg.offline_grace(), Duration::from_secs(15));
    }

    #[test]
    fn defaults_and_bad_values() {
        let cfg: Config = im_common::config::load_from(None, "IM_ROUTE_SERVER_", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        let vars = [(
            "IM_ROUTE_SERVER_OFFLINE_GRACE_SECS".to_owned(),
            "0.3".to_owned(),
        )];
        let cfg: Config = im_common::config::load_from(None, "IM_ROUTE_SERVER_", &vars).unwrap();
        assert_eq!(cfg.offline_grace(), Duration::from_millis(300));

        let bad = Config {
            offline_grace_secs: -1.0,
            ..Config::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("offline_grace_secs"), "{e}");
        let bad = Config {
            listen: "nowhere".into(),
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("listen"));

        let vars = [("IM_ROUTE_SERVER_LISTEN_PORT".to_owned(), "1".to_owned())];
        let e = im_common::config::load_from::<Config>(None, "IM_ROUTE_SERVER_", &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
    }
}
