//! file_server's configuration (`fixtures/config/file_server.toml` is the documented sample).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use im_common::backoff::BackoffConfig;
use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsClientConfig, TlsConfig, check_listen_addr};
use im_proto::client::ClientTls;
use serde::Deserialize;

/// Longest task timeout accepted (a week): an unfinished transfer idle for longer is dead.
pub const MAX_TASK_TIMEOUT_SECS: f64 = 7.0 * 86_400.0;

/// Longest retention accepted (ten years): beyond that a typo is likelier than an intent.
pub const MAX_RETENTION_DAYS: f64 = 3650.0;

/// Everything file_server reads from its config file and `IM_FILE_SERVER_*` variables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by `imctl` and in admin answers; empty = `file_server@<client address>`.
    pub name: String,
    /// Where TeamTalk clients connect to transfer files (the original's `ClientListenIP` +
    /// `ClientListenPort`, 8600).
    pub client_listen: String,
    /// Where msg_servers connect to create tasks (`MsgServerListenIP` +
    /// `MsgServerListenPort`, 8601). Loopback by default: anyone reaching it can create
    /// tasks.
    pub msg_server_listen: String,
    /// Addresses clients are told to connect to (`FileServerIp`), each paired with the
    /// client port; IPv4 text, as stock clients expect (Decisions 12). They must be
    /// reachable by clients: 0.0.0.0 is refused.
    pub advertise: Vec<String>,
    /// Directory of offline files, laid out as the original's `offline_file/` (STORAGE.md 7):
    /// `<data_dir>/<first 2 characters of the task id>/<task id>`. Point it at an original
    /// file_server's `offline_file` directory to keep serving its files.
    pub data_dir: PathBuf,
    /// Seconds an unfinished task may go without activity (no login, no data) before it
    /// expires and its connections are closed (the original's `TaskTimeout` never fired,
    /// WEAKNESSES 49). Fractions allowed.
    pub task_timeout_secs: f64,
    /// Days an offline file is kept; then it is deleted from disk and its record from
    /// db_proxy (IMTransmitFile). Fractions allowed; 0 keeps files forever (the original).
    pub offline_retention_days: f64,
    /// Seconds between scans of `data_dir` for offline files past their retention (and
    /// leftovers of interrupted uploads). The scan reads one header per file.
    pub sweep_interval_secs: f64,
    /// Most unfinished tasks held at once (waiting for logins, transferring, uploading or
    /// downloading); beyond it task creation fails (result 1). Bounds memory against a
    /// msg_server creating tasks in a loop.
    pub max_tasks: usize,
    /// Seconds a new client connection has to log in to a task before it is closed (the
    /// original set no limit; a socket that never logs in only holds a slot).
    pub login_timeout_secs: f64,
    /// Most simultaneous client connections.
    pub max_connections: u32,
    /// db_proxy_server addresses, used only to delete the records of expired offline files
    /// (IMFileDelOfflineReq, no answer). One link, failing over along the list. Empty: the
    /// records are left to the clients.
    pub db_proxy: Vec<String>,
    /// `[log]`: format and filter.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats, connections).
    pub admin: AdminConfig,
    /// `[http]`: `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// `[backoff]`: reconnect delays of the db_proxy link (Decisions 3).
    pub backoff: BackoffConfig,
    /// A second msg_server port over TLS, beside `msg_server_listen`, for msg_servers that dial
    /// `tls://host:port`. Empty = none (needs `[tls]`).
    pub msg_server_tls_listen: String,
    /// `[tls]`: certificate and key of `msg_server_tls_listen`; `client_ca_file` makes the peers
    /// present a certificate (mutual TLS).
    pub tls: TlsConfig,
    /// `[tls_client]`: what to trust when an upstream address is written `tls://host:port`, and the
    /// client certificate for peers that require one.
    pub tls_client: TlsClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            client_listen: "0.0.0.0:8600".to_owned(),
            msg_server_listen: "127.0.0.1:8601".to_owned(),
            advertise: vec!["127.0.0.1".to_owned()],
            data_dir: PathBuf::from("./offline_file"),
            task_timeout_secs: 3600.0,
            login_timeout_secs: 30.0,
            offline_retention_days: 7.0,
            sweep_interval_secs: 600.0,
            max_tasks: 100_000,
            max_connections: 100_000,
            db_proxy: vec!["127.0.0.1:10600".to_owned()],
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            backoff: BackoffConfig::default(),
            msg_server_tls_listen: String::new(),
            tls: TlsConfig::default(),
            tls_client: TlsClientConfig::default(),
        }
    }
}

fn listen_addr(key: &str, v: &str, example: &str) -> Result<(), ConfigError> {
    if v.parse::<SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(ConfigError::value(
            key,
            format!("must be an ip:port address such as {example} (got {v:?})"),
        ))
    }
}

impl Config {
    /// Checks the values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        listen_addr("client_listen", &self.client_listen, "0.0.0.0:8600")?;
        listen_addr(
            "msg_server_listen",
            &self.msg_server_listen,
            "127.0.0.1:8601",
        )?;
        if self.advertise.is_empty() {
            return Err(ConfigError::value(
                "advertise",
                "must list at least one IPv4 address clients can reach",
            ));
        }
        for a in &self.advertise {
            match a.parse::<Ipv4Addr>() {
                Ok(ip) if !ip.is_unspecified() => {}
                _ => {
                    return Err(ConfigError::value(
                        "advertise",
                        format!(
                            "every entry must be an IPv4 address clients can reach, such as \
                             192.0.2.10 (got {a:?}; 0.0.0.0 and IPv6 are not usable by stock \
                             clients)"
                        ),
                    ));
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::value(
                "data_dir",
                "must name a directory for offline files",
            ));
        }
        let t = self.task_timeout_secs;
        if !(t.is_finite() && t > 0.0 && t <= MAX_TASK_TIMEOUT_SECS) {
            return Err(ConfigError::value(
                "task_timeout_secs",
                format!(
                    "must be a number of seconds above 0 and at most {MAX_TASK_TIMEOUT_SECS} (got {t})"
                ),
            ));
        }
        let l = self.login_timeout_secs;
        if !(l.is_finite() && l > 0.0 && l <= MAX_TASK_TIMEOUT_SECS) {
            return Err(ConfigError::value(
                "login_timeout_secs",
                format!(
                    "must be a number of seconds above 0 and at most {MAX_TASK_TIMEOUT_SECS} (got {l})"
                ),
            ));
        }
        let r = self.offline_retention_days;
        if !(r.is_finite() && (0.0..=MAX_RETENTION_DAYS).contains(&r)) {
            return Err(ConfigError::value(
                "offline_retention_days",
                format!(
                    "must be a number of days between 0 (keep forever) and {MAX_RETENTION_DAYS} (got {r})"
                ),
            ));
        }
        let s = self.sweep_interval_secs;
        if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
            return Err(ConfigError::value(
                "sweep_interval_secs",
                format!("must be a number of seconds above 0 and at most 86400 (got {s})"),
            ));
        }
        if self.max_tasks == 0 {
            return Err(ConfigError::value("max_tasks", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::value("max_connections", "must be at least 1"));
        }
        check_listen_addr("msg_server_tls_listen", &self.msg_server_tls_listen)?;
        if !self.msg_server_tls_listen.is_empty() {
            self.tls.listen("tls", "msg_server_tls_listen")?;
        }
        self.client_tls()?;
        self.admin.validate()
    }

    /// The TLS setting of the upstream links, when any address is `tls://host:port`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, ConfigError> {
        let lists: [(&str, &Vec<String>); 1] = [("db_proxy", &self.db_proxy)];
        self.tls_client.client_for(
            "tls_client",
            lists
                .into_iter()
                .flat_map(|(k, v)| v.iter().map(move |a| (k, a.as_str()))),
        )
    }

    /// The time a client connection has to log in.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.login_timeout_secs.clamp(0.001, MAX_TASK_TIMEOUT_SECS))
    }

    /// The idle limit of unfinished tasks.
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.task_timeout_secs.clamp(0.001, MAX_TASK_TIMEOUT_SECS))
    }

    /// The retention of offline files; `None` keeps them forever.
    pub fn retention(&self) -> Option<Duration> {
        let days = self.offline_retention_days.clamp(0.0, MAX_RETENTION_DAYS);
        (days > 0.0).then(|| Duration::from_secs_f64(days * 86_400.0))
    }

    /// Time between two scans of the data directory.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs_f64(self.sweep_interval_secs.clamp(0.001, 86_400.0))
    }

    /// The configured name, or `file_server@<client address>`.
    pub fn display_name(&self, client: SocketAddr) -> String {
        if self.name.is_empty() {
            format!("file_server@{client}")
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

    #[test]
    fn sample_config_parses_and_validates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config/file_server.toml");
        let cfg: Config = im_common::config::load_from(Some(&path), "IM_FILE_SERVER_", &[])
            .expect("sample config");
        cfg.validate().expect("valid");
        assert_eq!(cfg.client_listen, "0.0.0.0:8600");
        assert_eq!(cfg.msg_server_listen, "127.0.0.1:8601");
        assert_eq!(cfg.task_timeout(), Duration::from_secs(3600));
        assert_eq!(cfg.retention(), Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        let cfg: Config = im_common::config::load_from(None, "IM_FILE_SERVER_", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
        let vars = [
            (
                "IM_FILE_SERVER_OFFLINE_RETENTION_DAYS".to_owned(),
                "0".to_owned(),
            ),
            (
                "IM_FILE_SERVER_ADVERTISE".to_owned(),
                r#"["192.0.2.1", "192.0.2.2"]"#.to_owned(),
            ),
        ];
        let cfg: Config = im_common::config::load_from(None, "IM_FILE_SERVER_", &vars).unwrap();
        assert_eq!(cfg.retention(), None);
        assert_eq!(cfg.advertise.len(), 2);

        let bad = |c: Config, key: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(
            Config {
                advertise: vec!["0.0.0.0".into()],
                ..Config::default()
            },
            "advertise",
        );
        bad(
            Config {
                advertise: vec!["::1".into()],
                ..Config::default()
            },
            "advertise",
        );
        bad(
            Config {
                advertise: vec![],
                ..Config::default()
            },
            "advertise",
        );
        bad(
            Config {
                task_timeout_secs: 0.0,
                ..Config::default()
            },
            "task_timeout_secs",
        );
        bad(
            Config {
                offline_retention_days: -1.0,
                ..Config::default()
            },
            "offline_retention_days",
        );
        bad(
            Config {
                client_listen: "x".into(),
                ..Config::default()
            },
            "client_listen",
        );
        bad(
            Config {
                max_tasks: 0,
                ..Config::default()
            },
            "max_tasks",
        );
        let vars = [("IM_FILE_SERVER_LISTEN".to_owned(), "1".to_owned())];
        let e = im_common::config::load_from::<Config>(None, "IM_FILE_SERVER_", &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }
}
