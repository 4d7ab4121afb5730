//! db_proxy_server's configuration: one TOML file plus `IM_DB_PROXY_SERVER_*` environment
//! overrides.
//!
//! The keys of the original `dbproxyserver.conf` (FLOWS.md 20.4) map onto these fields:
//! `ListenIP`/`ListenPort` -> `listen`, `MsfsSite` -> `msfs_url`, `aesKey` -> `aes_key`, the
//! MySQL pools and Redis pools -> `[storage]` (one primary, replicas and Redis database numbers
//! per purpose). `ThreadNum` has no equivalent: requests run on the async runtime.

use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsConfig, check_listen_addr};
use im_proto::crypto::DEFAULT_MESSAGE_KEY;
use im_storage::StorageConfig;
use serde::Deserialize;

/// Longest accepted `login_failure_window_secs` (a day): the window only has to outlast a
/// guessing burst, and every name in it costs memory.
pub const MAX_LOGIN_FAILURE_WINDOW_SECS: u64 = 86_400;

/// The whole db_proxy_server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by imctl and in the admin handshake; empty = `db_proxy_server@<listen>`.
    pub name: String,
    /// Where msg_servers and http_msg_servers connect (the original `ListenIP:ListenPort`,
    /// 10600).
    pub listen: String,
    /// `[storage]`: SQLite (default, one file, exactly one db_proxy_server) or MySQL + Redis.
    pub storage: StorageConfig,
    /// The message key (the original `aesKey`): exactly 32 characters, used to encrypt the
    /// "[语音]" placeholder shown for voice messages in recent sessions and unread counts.
    /// Stock clients hard-code the default, so change it only with clients built to match.
    pub aes_key: String,
    /// Base URL of msfs, where voice messages are uploaded and read back from (the original
    /// `MsfsSite`, but with scheme and port, e.g. `http://127.0.0.1:8700/`).
    pub msfs_url: String,
    /// Seconds to wait for msfs on one upload or download before the message fails (a voice
    /// message is stored only after its upload; a failed download skips it in history).
    pub msfs_timeout_secs: u64,
    /// Seconds between two runs of the group-session sync that brings group chats up in the
    /// members' recent sessions (STORAGE.md 4.6; the original runs it every 5 s). 0 = off.
    pub group_session_sync_secs: u64,
    /// Failed logins of one name within `login_failure_window_secs` after which further
    /// attempts are refused without checking (result 6), as the original does with 10.
    pub login_failures_max: u32,
    /// The window of the login throttle, seconds (the original: 30 minutes).
    pub login_failure_window_secs: u64,
    /// UTC offset in minutes of the clock that decides the night-time push mute (iOS users
    /// who switched it on get no push from 22:00 to 07:59). Absent = the host's time zone, as
    /// the original; set it when the users live in another zone than the server.
    pub night_mute_utc_offset_minutes: Option<i32>,
    /// Requests of one connection being worked on at once; more wait in the socket buffer.
    /// Bounds the memory a flooding peer can take; a msg_server pipelines about 10 links.
    pub max_in_flight_per_conn: usize,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats with per-command and storage latency).
    pub admin: AdminConfig,
    /// `[http]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// A second port for msg_server, http_msg_server, file_server and push_server links over TLS,
    /// beside `listen`, for peers that dial `tls://host:port`. Empty = none (e.g. `0.0.0.0:10610`;
    /// needs `[tls]`).
    pub tls_listen: String,
    /// `[tls]`: certificate and key of `tls_listen`; `client_ca_file` makes the peers present a
    /// certificate (mutual TLS).
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "0.0.0.0:10600".to_owned(),
            storage: StorageConfig::default(),
            aes_key: DEFAULT_MESSAGE_KEY.to_owned(),
            msfs_url: "http://127.0.0.1:8700/".to_owned(),
            msfs_timeout_secs: 5,
            group_session_sync_secs: 5,
            login_failures_max: 10,
            login_failure_window_secs: 1800,
            night_mute_utc_offset_minutes: None,
            max_in_flight_per_conn: 4096,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            tls_listen: String::new(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// Checks values that parse but cannot work; the error names the key and what is valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.trim().is_empty() {
            return Err(ConfigError::value(
                "listen",
                "must be a listen address such as 0.0.0.0:10600",
            ));
        }
        // Counted in bytes: the key is the raw bytes of the string (FLOWS.md 18).
        if self.aes_key.len() != 32 {
            return Err(ConfigError::value(
                "aes_key",
                format!(
                    "must be exactly 32 characters (got {}); stock clients use \
                     {DEFAULT_MESSAGE_KEY:?}",
                    self.aes_key.len()
                ),
            ));
        }
        if !(self.msfs_url.starts_with("http://") || self.msfs_url.starts_with("https://")) {
            return Err(ConfigError::value(
                "msfs_url",
                format!(
                    "{:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:8700/)",
                    self.msfs_url
                ),
            ));
        }
        if !(1..=300).contains(&self.msfs_timeout_secs) {
            return Err(ConfigError::value(
                "msfs_timeout_secs",
                format!("{} is out of range 1..=300", self.msfs_timeout_secs),
            ));
        }
        if self.group_session_sync_secs > 3600 {
            return Err(ConfigError::value(
                "group_session_sync_secs",
                format!(
                    "{} is out of range 0..=3600 (0 = off; the original uses 5)",
                    self.group_session_sync_secs
                ),
            ));
        }
        if self.login_failures_max == 0 {
            return Err(ConfigError::value(
                "login_failures_max",
                "must be at least 1 (the original allows 10)",
            ));
        }
        if !(1..=MAX_LOGIN_FAILURE_WINDOW_SECS).contains(&self.login_failure_window_secs) {
            return Err(ConfigError::value(
                "login_failure_window_secs",
                format!(
                    "{} is out of range 1..={MAX_LOGIN_FAILURE_WINDOW_SECS} (the original uses \
                     1800)",
                    self.login_failure_window_secs
                ),
            ));
        }
        if let Some(m) = self.night_mute_utc_offset_minutes
            && !(-720..=840).contains(&m)
        {
            return Err(ConfigError::value(
                "night_mute_utc_offset_minutes",
                format!("{m} is out of range -720..=840 (UTC-12:00 to UTC+14:00)"),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_in_flight_per_conn) {
            return Err(ConfigError::value(
                "max_in_flight_per_conn",
                format!(
                    "{} is out of range 1..=1000000",
                    self.max_in_flight_per_conn
                ),
            ));
        }
        self.storage
            .validate()
            .map_err(|message| ConfigError::value("storage", message))?;
        check_listen_addr("tls_listen", &self.tls_listen)?;
        if !self.tls_listen.is_empty() {
            self.tls.listen("tls", "tls_listen")?;
        }
        self.admin.validate()
    }

    /// The configured name, or `db_proxy_server@<listen>`.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("db_proxy_server@{}", self.listen)
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
            "db_proxy_server@0.0.0.0:10600"
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
        check(|c| c.listen = String::new(), "listen");
        check(|c| c.aes_key = "short".into(), "aes_key");
        check(|c| c.msfs_url = "127.0.0.1".into(), "msfs_url");
        check(|c| c.msfs_timeout_secs = 0, "msfs_timeout_secs");
        check(
            |c| c.group_session_sync_secs = 7200,
            "group_session_sync_secs",
        );
        check(|c| c.login_failures_max = 0, "login_failures_max");
        check(
            |c| c.login_failure_window_secs = 0,
            "login_failure_window_secs",
        );
        check(|c| c.max_in_flight_per_conn = 0, "max_in_flight_per_conn");
        check(
            |c| c.night_mute_utc_offset_minutes = Some(900),
            "night_mute_utc_offset_minutes",
        );
        check(
            |c| c.storage.backend = im_storage::config::Backend::Mysql,
            "storage",
        );
        check(|c| c.storage.sqlite.checkpoint_interval_ms = 0, "storage");
        check(
            |c| {
                c.admin.listen = "127.0.0.1:0".into();
                c.admin.token = "short".into();
            },
            "admin.token",
        );
    }

    #[test]
    fn the_sample_file_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/config/db_proxy_server.toml"
        );
        let c: Config = im_common::config::load_from(Some(std::path::Path::new(path)), "X_", &[])
            .expect("sample config loads");
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(c.aes_key, DEFAULT_MESSAGE_KEY);
    }
}
