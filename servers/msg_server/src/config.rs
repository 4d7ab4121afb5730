//! msg_server's configuration (`fixtures/config/msg_server.toml` is the documented sample).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use im_common::backoff::BackoffConfig;
use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsClientConfig, TlsConfig, check_listen_addr};
use im_proto::client::ClientTls;
use im_proto::crypto::DEFAULT_MESSAGE_KEY;
use serde::Deserialize;

/// Everything msg_server reads from its config file and `IM_MSG_SERVER_*` variables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by `imctl`, in admin answers and as `host_name` in IMMsgServInfo; empty =
    /// the OS host name (the original sends gethostname()).
    pub name: String,
    /// Where clients connect (the original's `ListenIP` + `ListenPort`, 8000). The port is
    /// also reported to login_server, which hands it to clients.
    pub listen: String,
    /// A second client port speaking the same protocol over TLS, for new clients (stock
    /// TeamTalk clients speak plain TCP and keep using `listen`); it shares
    /// `max_connections` with `listen`, and login_server hands it out to clients that ask.
    /// Empty = no TLS port (e.g. `0.0.0.0:8443`; needs `[tls]`).
    pub tls_listen: String,
    /// Address clients are told to use first (`IpAddr1`, login_server's `priorIP`). IPv4
    /// text, as stock clients expect (Decisions 12).
    pub ip1: String,
    /// Second address for clients (`IpAddr2`, `backupIP`); empty = `ip1`.
    pub ip2: String,
    /// Most simultaneous client connections (`MaxConnCnt`): enforced by the listener and
    /// reported to login_server, which stops assigning a full msg_server.
    pub max_connections: u32,
    /// Key of the message-body cipher (`aesKey`, exactly 32 characters). Stock clients
    /// hard-code the default; it is only used here to build push texts (FLOWS.md 18).
    pub aes_key: String,
    /// db_proxy_server addresses (`DBServerIP<n>`/`DBServerPort<n>`). At least one; SQLite
    /// mode means exactly one db_proxy_server (Decisions 6).
    pub db_proxy: Vec<String>,
    /// Links per db_proxy address (`ConcurrentDBConnCnt`). Our links carry many requests at
    /// once (matched by seq_num), so a few suffice; several spread the conversations (one
    /// conversation always uses the same link, Decisions 6) over db_proxy's per-connection
    /// readers, and let a conversation fail over when one link drops.
    pub db_connections_per_server: usize,
    /// route_server addresses; we link to every one of them (`RouteServerIP<n>`). May be
    /// empty for a single msg_server; messages then stay local.
    pub route_servers: Vec<String>,
    /// login_server addresses (`LoginServerIP<n>`, their msg_server port 8100); we register
    /// with and report our load to every one of them.
    pub login_servers: Vec<String>,
    /// push_server addresses (`PushServerIP<n>`); empty = no push.
    pub push_servers: Vec<String>,
    /// file_server addresses, their msg_server port (`FileServerIP<n>`, 8601); we link to
    /// every one and create each transfer task on one of them. Empty = no file transfer:
    /// file requests are answered with a failure (FLOWS.md 14.1 step 2).
    pub file_servers: Vec<String>,
    /// Most IMMsgData per client connection per second (token bucket); more are dropped and
    /// counted. The original allows 20 per timer tick; stock clients send far fewer.
    /// 0 = no limit.
    pub msg_rate_limit_per_sec: u32,
    /// Most user ids in one IMUsersInfoReq or IMUsersStatReq. Their answers have no result
    /// code, so a longer list is dropped, logged and counted (`oversized_requests_total`);
    /// db_proxy looks up at most 10 000 users per request.
    pub max_user_ids_per_request: u32,
    /// Most groups in one IMGroupInfoListReq (a longer list is dropped, as above); db_proxy
    /// answers at most 1000.
    pub max_group_ids_per_request: u32,
    /// Most ids in one IMGetMsgByIdReq (a longer list is dropped, as above); db_proxy
    /// answers with the newest 100 of them (the original's LIMIT 100).
    pub max_msg_ids_per_request: u32,
    /// Most members named in one IMGroupCreateReq or IMGroupChangeMemberReq; a longer list is
    /// answered with result_code 1 without asking db_proxy (which refuses above 5000 too).
    pub max_group_members_per_request: u32,
    /// Outbound bytes queued for one client connection before it counts as a slow consumer
    /// and is closed (`slow_consumer_disconnects_total`). At least 512 KiB: one PDU toward a
    /// client may be 400 KiB (Decisions 2).
    pub client_queue_limit_bytes: u64,
    /// Seconds a new connection has to log in before it is closed (FLOWS.md 1.1: 15).
    pub login_timeout_secs: f64,
    /// Seconds without any data after which a PC client (and any connection before login)
    /// is closed (FLOWS.md 1.1: 120).
    pub idle_pc_secs: f64,
    /// Same for mobile clients (FLOWS.md 1.1: 300).
    pub idle_mobile_secs: f64,
    /// Failed logins from one client address within `login_failure_window_secs` after which
    /// further logins from that address are refused without asking db_proxy (Decisions 9:
    /// per-name throttling is db_proxy's, per-address ours). 0 = no throttle.
    pub login_failures_per_addr: u32,
    /// The window of `login_failures_per_addr`, seconds.
    pub login_failure_window_secs: f64,
    /// PDUs sent to route_server in the last this many seconds are sent again after a
    /// route_server link (re)registers or the routing target changes, so that a route_server
    /// restart loses nothing (Decisions 7; receivers drop duplicates).
    pub route_resend_window_secs: f64,
    /// How long a request to db_proxy or route_server waits for its answer, milliseconds.
    pub request_timeout_ms: u64,
    /// Attempts to store one message (the first included). Retries carry the same request
    /// tag, which db_proxy de-duplicates (Decisions 4); after the last one the sender gets no
    /// ack.
    pub store_attempts: u32,
    /// How long a push waits for route_server to say where its targets are online,
    /// milliseconds (an original route_server never answers; then only local presence counts).
    pub push_locate_timeout_ms: u64,
    /// Connections closed per second while draining (`imctl drain`, when the request gives no
    /// rate).
    pub drain_close_per_sec: u32,
    /// On SIGTERM, seconds to wait for messages being stored to be acked before the client
    /// connections are closed.
    pub shutdown_grace_secs: f64,
    /// `[log]`: format and filter.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats, connections, kick, drain).
    pub admin: AdminConfig,
    /// `[http]`: `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// `[backoff]`: reconnect delays of the upstream links (Decisions 3).
    pub backoff: BackoffConfig,
    /// `[tls]`: certificate and key of the TLS client port (`tls_listen`).
    pub tls: TlsConfig,
    /// `[tls_client]`: what to trust when an upstream address (db_proxy, route_servers,
    /// login_servers, push_servers, file_servers) is written `tls://host:port`, and the
    /// client certificate for peers that require one.
    pub tls_client: TlsClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "0.0.0.0:8000".to_owned(),
            tls_listen: String::new(),
            ip1: "127.0.0.1".to_owned(),
            ip2: String::new(),
            max_connections: 100_000,
            aes_key: DEFAULT_MESSAGE_KEY.to_owned(),
            db_proxy: vec!["127.0.0.1:10600".to_owned()],
            db_connections_per_server: 4,
            route_servers: vec!["127.0.0.1:8200".to_owned()],
            login_servers: vec!["127.0.0.1:8100".to_owned()],
            push_servers: Vec::new(),
            file_servers: Vec::new(),
            msg_rate_limit_per_sec: 100,
            max_user_ids_per_request: 10_000,
            max_group_ids_per_request: 1_000,
            max_msg_ids_per_request: 1_000,
            max_group_members_per_request: 5_000,
            // About 10 seconds of a busy group chat; a client that reads nothing for longer
            // is not coming back.
            client_queue_limit_bytes: 4 << 20,
            login_timeout_secs: 15.0,
            idle_pc_secs: 120.0,
            idle_mobile_secs: 300.0,
            login_failures_per_addr: 20,
            login_failure_window_secs: 60.0,
            route_resend_window_secs: 10.0,
            request_timeout_ms: 5_000,
            store_attempts: 3,
            push_locate_timeout_ms: 1_000,
            drain_close_per_sec: 50,
            shutdown_grace_secs: 5.0,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            backoff: BackoffConfig::default(),
            tls: TlsConfig::default(),
            tls_client: TlsClientConfig::default(),
        }
    }
}

/// Longest duration accepted for the timing keys (a day): beyond that a typo is likelier
/// than an intent.
const MAX_SECS: f64 = 86_400.0;

/// Largest list bound accepted: a 1 MiB client frame cannot carry more ids than this.
const MAX_LIST: u32 = 1_000_000;

/// Smallest client queue: room for one PDU at the client outbound cap (400 KiB) and more.
const MIN_CLIENT_QUEUE: u64 = 512 << 10;

/// Largest client queue (per connection; a typo beyond this would let one client hold
/// gigabytes).
const MAX_CLIENT_QUEUE: u64 = 1 << 30;

fn secs(key: &str, v: f64, min: f64) -> Result<(), ConfigError> {
    if v.is_finite() && (min..=MAX_SECS).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::value(
            key,
            format!("must be a number of seconds between {min} and {MAX_SECS} (got {v})"),
        ))
    }
}

impl Config {
    /// Checks the values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::value(
                "listen",
                format!(
                    "must be an ip:port address such as 0.0.0.0:8000 (got {:?})",
                    self.listen
                ),
            ));
        }
        for (key, v) in [("ip1", &self.ip1), ("ip2", &self.ip2)] {
            if !(v.is_empty() && key == "ip2") && v.parse::<Ipv4Addr>().is_err() {
                return Err(ConfigError::value(
                    key,
                    format!(
                        "must be an IPv4 address such as 192.0.2.10 (stock clients expect one, \
                         got {v:?})"
                    ),
                ));
            }
        }
        if self.aes_key.len() != 32 {
            return Err(ConfigError::value(
                "aes_key",
                format!(
                    "must be exactly 32 characters (got {}); stock clients use {DEFAULT_MESSAGE_KEY}",
                    self.aes_key.len()
                ),
            ));
        }
        if self.db_proxy.is_empty() {
            return Err(ConfigError::value(
                "db_proxy",
                "must list at least one db_proxy_server address (host:port)",
            ));
        }
        if !(1..=256).contains(&self.db_connections_per_server) {
            return Err(ConfigError::value(
                "db_connections_per_server",
                format!(
                    "must be between 1 and 256 (got {})",
                    self.db_connections_per_server
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::value("max_connections", "must be at least 1"));
        }
        if self.store_attempts == 0 || self.store_attempts > 10 {
            return Err(ConfigError::value(
                "store_attempts",
                format!("must be between 1 and 10 (got {})", self.store_attempts),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::value(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("max_user_ids_per_request", self.max_user_ids_per_request),
            ("max_group_ids_per_request", self.max_group_ids_per_request),
            ("max_msg_ids_per_request", self.max_msg_ids_per_request),
            (
                "max_group_members_per_request",
                self.max_group_members_per_request,
            ),
        ] {
            if !(1..=MAX_LIST).contains(&v) {
                return Err(ConfigError::value(
                    key,
                    format!("must be between 1 and {MAX_LIST} (got {v})"),
                ));
            }
        }
        if !(MIN_CLIENT_QUEUE..=MAX_CLIENT_QUEUE).contains(&self.client_queue_limit_bytes) {
            return Err(ConfigError::value(
                "client_queue_limit_bytes",
                format!(
                    "must be between {MIN_CLIENT_QUEUE} (512 KiB) and {MAX_CLIENT_QUEUE} (1 GiB) \
                     (got {})",
                    self.client_queue_limit_bytes
                ),
            ));
        }
        secs("login_timeout_secs", self.login_timeout_secs, 0.001)?;
        secs("idle_pc_secs", self.idle_pc_secs, 0.001)?;
        secs("idle_mobile_secs", self.idle_mobile_secs, 0.001)?;
        secs(
            "login_failure_window_secs",
            self.login_failure_window_secs,
            0.001,
        )?;
        secs(
            "route_resend_window_secs",
            self.route_resend_window_secs,
            0.0,
        )?;
        secs("shutdown_grace_secs", self.shutdown_grace_secs, 0.0)?;
        check_listen_addr("tls_listen", &self.tls_listen)?;
        if !self.tls_listen.is_empty() {
            self.tls.listen("tls", "tls_listen")?;
        }
        self.client_tls()?;
        self.admin.validate()
    }

    /// The TLS setting of the upstream links, when any address is `tls://host:port`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, ConfigError> {
        let lists = [
            ("db_proxy", &self.db_proxy),
            ("route_servers", &self.route_servers),
            ("login_servers", &self.login_servers),
            ("push_servers", &self.push_servers),
            ("file_servers", &self.file_servers),
        ];
        self.tls_client.client_for(
            "tls_client",
            lists
                .into_iter()
                .flat_map(|(k, v)| v.iter().map(move |a| (k, a.as_str()))),
        )
    }

    /// `ip2`, or `ip1` when unset (as the original).
    pub fn ip2_or_ip1(&self) -> &str {
        if self.ip2.is_empty() {
            &self.ip1
        } else {
            &self.ip2
        }
    }

    /// The configured name, or the OS host name.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            host_name()
        } else {
            self.name.clone()
        }
    }

    /// A number of seconds from the config as a duration.
    pub fn dur(secs: f64) -> Duration {
        Duration::from_secs_f64(secs.clamp(0.0, MAX_SECS))
    }
}

/// The machine's host name (what the original puts in IMMsgServInfo.host_name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "msg_server".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::*;

    #[test]
    fn sample_config_parses_and_validates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config/msg_server.toml");
        let cfg: Config = im_common::config::load_from(Some(&path), "IM_MSG_SERVER_", &[])
            .expect("sample config");
        cfg.validate().expect("valid");
        assert_eq!(cfg.listen, "0.0.0.0:8000");
        assert_eq!(cfg.aes_key, DEFAULT_MESSAGE_KEY);
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        let cfg: Config = im_common::config::load_from(None, "IM_MSG_SERVER_", &[]).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
        assert_eq!(cfg.ip2_or_ip1(), "127.0.0.1");
        let bad = |c: Config, key: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(
            Config {
                aes_key: "short".into(),
                ..Config::default()
            },
            "aes_key",
        );
        bad(
            Config {
                ip1: "::1".into(),
                ..Config::default()
            },
            "ip1",
        );
        bad(
            Config {
                db_proxy: vec![],
                ..Config::default()
            },
            "db_proxy",
        );
        bad(
            Config {
                idle_pc_secs: -1.0,
                ..Config::default()
            },
            "idle_pc_secs",
        );
        bad(
            Config {
                max_user_ids_per_request: 0,
                ..Config::default()
            },
            "max_user_ids_per_request",
        );
        bad(
            Config {
                client_queue_limit_bytes: 1024,
                ..Config::default()
            },
            "client_queue_limit_bytes",
        );
        bad(
            Config {
                listen: "x".into(),
                ..Config::default()
            },
            "listen",
        );
        let vars = [("IM_MSG_SERVER_LISTEN_PORT".to_owned(), "1".to_owned())];
        let e = im_common::config::load_from::<Config>(None, "IM_MSG_SERVER_", &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
    }
}
