//! push_server's configuration (`fixtures/config/push_server.toml` is the documented sample).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use im_common::backoff::BackoffConfig;
use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsClientConfig, TlsConfig, check_listen_addr};
use im_proto::client::ClientTls;
use serde::Deserialize;

/// Largest queue accepted: a queued push costs a few hundred bytes, so ten million stays
/// within a few GiB; beyond that a queue only hides an outage of the providers.
pub const MAX_QUEUE_CAPACITY: usize = 10_000_000;
/// Most delivery workers: each holds at most one HTTP request in flight.
pub const MAX_WORKERS: usize = 4096;
/// Most delivery attempts per push.
pub const MAX_ATTEMPTS: u32 = 20;
/// Smallest alert cut accepted: below it "..." plus a nick no longer fits.
pub const MIN_ALERT_BYTES: usize = 16;
/// Largest alert accepted: APNs refuses payloads above 4 KiB, FCM above 4 KiB of data.
pub const MAX_ALERT_BYTES: usize = 3072;

/// A secret read from the config or the environment; `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when not set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

/// A push provider, as named in `[providers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Apple Push Notification service, HTTP/2 with token authentication.
    Apns,
    /// Firebase Cloud Messaging, HTTP v1 API.
    Fcm,
    /// A POST of JSON to a configured URL.
    Webhook,
    /// No push for this client type (every token answers result 1).
    None,
}

impl ProviderKind {
    /// Name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Apns => "apns",
            ProviderKind::Fcm => "fcm",
            ProviderKind::Webhook => "webhook",
            ProviderKind::None => "none",
        }
    }
}

/// Everything push_server reads from its config file and `IM_PUSH_SERVER_*` variables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by `imctl` and in admin answers; empty = `push_server@<listen address>`.
    pub name: String,
    /// Where msg_servers connect (the original's `ListenIP` + `ListenPort`, 8500). Loopback by
    /// default: the link carries message text in clear.
    pub listen: String,
    /// Pushes waiting for a worker. When full, new pushes are answered result 1 and counted:
    /// a bounded queue keeps a provider outage from eating all memory.
    pub queue_capacity: usize,
    /// Deliveries in flight at once (each worker sends one HTTP request at a time; APNs and
    /// FCM multiplex them over a few HTTP/2 connections).
    pub workers: usize,
    /// Time limit of one HTTP request to a provider (connect included), milliseconds. A
    /// timeout counts as a failure that is retried.
    pub request_timeout_ms: u64,
    /// Replace the alert text by `hidden_alert_text`, so that message text never reaches
    /// Apple or Google (the original always sends it, WEAKNESSES 15).
    pub hide_message_text: bool,
    /// The alert shown when `hide_message_text` is on.
    pub hidden_alert_text: String,
    /// Longest alert text in bytes; longer ones are cut on a character boundary and end in
    /// "...". msg_server already cuts to 37 bytes; this bounds what other senders send.
    pub alert_max_bytes: usize,
    /// How long shutdown waits for queued pushes to be delivered, milliseconds.
    pub shutdown_grace_ms: u64,
    /// `[retry]`: delivery retries.
    pub retry: RetryConfig,
    /// `[db_proxy]`: where dead tokens are removed.
    pub db_proxy: DbProxyConfig,
    /// `[apns]`: Apple.
    pub apns: ApnsConfig,
    /// `[fcm]`: Google.
    pub fcm: FcmConfig,
    /// `[webhook]`: anything else.
    pub webhook: WebhookConfig,
    /// `[providers]`: which provider serves which client type.
    pub providers: ProvidersConfig,
    /// `[log]`: format and filter.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats).
    pub admin: AdminConfig,
    /// `[http]`: `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// `[backoff]`: reconnects of the db_proxy links (Decisions 3).
    pub backoff: BackoffConfig,
    /// A second port for msg_server links over TLS, beside `listen`, for msg_servers that dial
    /// `tls://host:port`. Empty = none (needs `[tls]`).
    pub tls_listen: String,
    /// `[tls]`: certificate and key of `tls_listen`; `client_ca_file` makes the peers present a
    /// certificate (mutual TLS).
    pub tls: TlsConfig,
    /// `[tls_client]`: what to trust when an upstream address is written `tls://host:port`, and the
    /// client certificate for peers that require one.
    pub tls_client: TlsClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "127.0.0.1:8500".to_owned(),
            queue_capacity: 100_000,
            workers: 64,
            request_timeout_ms: 10_000,
            hide_message_text: false,
            hidden_alert_text: "您收到了一条新消息".to_owned(),
            alert_max_bytes: 256,
            shutdown_grace_ms: 5_000,
            retry: RetryConfig::default(),
            db_proxy: DbProxyConfig::default(),
            apns: ApnsConfig::default(),
            fcm: FcmConfig::default(),
            webhook: WebhookConfig::default(),
            providers: ProvidersConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            backoff: BackoffConfig::default(),
            tls_listen: String::new(),
            tls: TlsConfig::default(),
            tls_client: TlsClientConfig::default(),
        }
    }
}

/// `[retry]`: how failed deliveries (HTTP 5xx, 429, timeouts, connection errors) are retried.
/// Other 4xx answers are final: sending the same request again cannot succeed.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = never retry).
    pub attempts: u32,
    /// Wait before the first retry, milliseconds; it doubles per retry.
    pub initial_ms: u64,
    /// Longest wait between attempts, milliseconds (also caps a provider's Retry-After).
    pub max_ms: u64,
    /// Random spread of each wait (0.2 = ±20 %), so that retries after an outage do not
    /// arrive at the provider all at once.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 5,
            initial_ms: 500,
            max_ms: 30_000,
            jitter: 0.2,
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempt + 1` after `attempt` failed (1-based), at least what
    /// the provider asked for.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let max = self.max_ms.max(1);
        let base = self
            .initial_ms
            .max(1)
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
            .min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rand::random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        let d = Duration::from_millis(((base as f64) * factor).round() as u64);
        match asked {
            Some(a) => d.max(a.min(Duration::from_millis(max))),
            None => d,
        }
    }
}

/// `[db_proxy]`: dead tokens are removed through db_proxy (compare-and-delete, our
/// IMAdminRemoveTokenReq on its main port) so that a token APNs or FCM reported dead is not
/// pushed again. Empty: dead tokens are only counted and logged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbProxyConfig {
    /// db_proxy_server addresses (its `listen`, the port msg_servers use); tried in order.
    pub addresses: Vec<String>,
    /// How long to wait for db_proxy's answer, milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for DbProxyConfig {
    fn default() -> Self {
        DbProxyConfig {
            addresses: Vec::new(),
            request_timeout_ms: 5_000,
        }
    }
}

/// `[apns]`: Apple's HTTP/2 provider API with token (JWT) authentication. The original used
/// the binary API with a client certificate, which Apple retired in 2021 (FLOWS.md 15.6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsConfig {
    /// Off by default: nothing is sent to Apple without a key.
    pub enabled: bool,
    /// The `.p8` signing key from the Apple developer account (PKCS#8 PEM, P-256). Keep the
    /// file readable by push_server only.
    pub key_path: PathBuf,
    /// The key's 10-character Key ID (the JWT `kid`).
    pub key_id: String,
    /// The 10-character Team ID (the JWT `iss`).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Use Apple's development environment (tokens of debug builds); the original's
    /// `SandBox`. A token of the other environment is answered BadDeviceToken.
    pub sandbox: bool,
    /// Provider URL; empty = `https://api.push.apple.com`, or
    /// `https://api.sandbox.push.apple.com` with `sandbox`. An `http://` URL speaks HTTP/2
    /// without TLS (tests only).
    pub endpoint: String,
    /// Seconds Apple keeps trying to deliver to an offline device (the original: 3600).
    pub expiration_secs: u32,
    /// Remove a token Apple answers 400 BadDeviceToken for (besides 410 Unregistered). A
    /// wrong `sandbox` setting makes every token BadDeviceToken: turn this off while unsure.
    pub remove_bad_device_tokens: bool,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            enabled: false,
            key_path: PathBuf::new(),
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            sandbox: false,
            endpoint: String::new(),
            expiration_secs: 3600,
            remove_bad_device_tokens: true,
        }
    }
}

impl ApnsConfig {
    /// The provider URL in use.
    pub fn endpoint(&self) -> &str {
        match (self.endpoint.is_empty(), self.sandbox) {
            (false, _) => self.endpoint.trim_end_matches('/'),
            (true, false) => "https://api.push.apple.com",
            (true, true) => "https://api.sandbox.push.apple.com",
        }
    }
}

/// `[fcm]`: Firebase Cloud Messaging HTTP v1 with a service-account key (OAuth2 JWT-bearer
/// grant). The original had no Android push.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmConfig {
    /// Off by default.
    pub enabled: bool,
    /// The service-account JSON downloaded from the Firebase console (`client_email`,
    /// `private_key`, `token_uri`, `project_id`). Keep it readable by push_server only.
    pub service_account_path: PathBuf,
    /// API base URL.
    pub endpoint: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            enabled: false,
            service_account_path: PathBuf::new(),
            endpoint: "https://fcm.googleapis.com".to_owned(),
        }
    }
}

/// `[webhook]`: a POST of JSON to `url` for client types with no platform provider (see
/// the sample config for the body). A 410 answer removes the token, like APNs' 410.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Off by default.
    pub enabled: bool,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set. Prefer the environment variable
    /// `IM_PUSH_SERVER_WEBHOOK__BEARER_TOKEN`.
    pub bearer_token: Secret,
}

/// `[providers]`: the provider for each client type of a token (UserTokenInfo.user_type;
/// db_proxy only hands out iOS and Android tokens). A provider that is not enabled answers
/// result 1 for its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    /// CLIENT_TYPE_IOS (0x11).
    pub ios: ProviderKind,
    /// CLIENT_TYPE_ANDROID (0x12).
    pub android: ProviderKind,
    /// Any other client type.
    pub other: ProviderKind,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            ios: ProviderKind::Apns,
            android: ProviderKind::Fcm,
            other: ProviderKind::Webhook,
        }
    }
}

impl Config {
    /// Checks the values serde cannot check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::value(
                "listen",
                format!(
                    "must be an ip:port address such as 127.0.0.1:8500 (got {:?})",
                    self.listen
                ),
            ));
        }
        in_range("queue_capacity", self.queue_capacity, 1, MAX_QUEUE_CAPACITY)?;
        in_range("workers", self.workers, 1, MAX_WORKERS)?;
        in_range(
            "alert_max_bytes",
            self.alert_max_bytes,
            MIN_ALERT_BYTES,
            MAX_ALERT_BYTES,
        )?;
        in_range(
            "retry.attempts",
            self.retry.attempts as usize,
            1,
            MAX_ATTEMPTS as usize,
        )?;
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::value(
                "request_timeout_ms",
                "must be above 0 milliseconds",
            ));
        }
        if self.hide_message_text && self.hidden_alert_text.len() > self.alert_max_bytes {
            return Err(ConfigError::value(
                "hidden_alert_text",
                format!(
                    "is {} bytes, longer than alert_max_bytes ({})",
                    self.hidden_alert_text.len(),
                    self.alert_max_bytes
                ),
            ));
        }
        if !(self.retry.jitter.is_finite() && (0.0..=1.0).contains(&self.retry.jitter)) {
            return Err(ConfigError::value(
                "retry.jitter",
                format!("must be between 0 and 1 (got {})", self.retry.jitter),
            ));
        }
        if self.apns.enabled {
            for (key, v) in [
                ("apns.key_id", &self.apns.key_id),
                ("apns.team_id", &self.apns.team_id),
                ("apns.topic", &self.apns.topic),
            ] {
                if v.is_empty() {
                    return Err(ConfigError::value(key, "must be set when apns.enabled"));
                }
            }
            if self.apns.key_path.as_os_str().is_empty() {
                return Err(ConfigError::value(
                    "apns.key_path",
                    "must name the .p8 key file when apns.enabled",
                ));
            }
            http_url("apns.endpoint", self.apns.endpoint())?;
        }
        if self.fcm.enabled {
            if self.fcm.service_account_path.as_os_str().is_empty() {
                return Err(ConfigError::value(
                    "fcm.service_account_path",
                    "must name the service-account JSON file when fcm.enabled",
                ));
            }
            http_url("fcm.endpoint", &self.fcm.endpoint)?;
        }
        if self.webhook.enabled {
            http_url("webhook.url", &self.webhook.url)?;
        }
        check_listen_addr("tls_listen", &self.tls_listen)?;
        if !self.tls_listen.is_empty() {
            self.tls.listen("tls", "tls_listen")?;
        }
        self.client_tls()?;
        self.admin.validate()
    }

    /// The TLS setting of the upstream links, when any address is `tls://host:port`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, ConfigError> {
        let lists: [(&str, &Vec<String>); 1] = [("db_proxy.addresses", &self.db_proxy.addresses)];
        self.tls_client.client_for(
            "tls_client",
            lists
                .into_iter()
                .flat_map(|(k, v)| v.iter().map(move |a| (k, a.as_str()))),
        )
    }

    /// The configured name, or `push_server@<addr>`.
    pub fn display_name(&self, listen: SocketAddr) -> String {
        if self.name.is_empty() {
            format!("push_server@{listen}")
        } else {
            self.name.clone()
        }
    }

    /// Whether `kind` is enabled.
    pub fn is_enabled(&self, kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::Apns => self.apns.enabled,
            ProviderKind::Fcm => self.fcm.enabled,
            ProviderKind::Webhook => self.webhook.enabled,
            ProviderKind::None => false,
        }
    }
}

fn in_range(key: &str, v: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::value(
            key,
            format!("must be between {min} and {max} (got {v})"),
        ))
    }
}

fn http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(ConfigError::value(
            key,
            format!("must be an http:// or https:// URL (got {url:?})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::*;

    const PREFIX: &str = "IM_PUSH_SERVER_";

    fn sample_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/config/push_server.toml")
    }

    #[test]
    fn sample_config_parses_and_validates() {
        let cfg: Config =
            im_common::config::load_from(Some(&sample_path()), PREFIX, &[]).expect("sample config");
        cfg.validate().expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:8500");
        assert_eq!(cfg.providers, ProvidersConfig::default());
        assert!(!cfg.hide_message_text);
    }

    #[test]
    fn defaults_environment_and_bad_values() {
        let cfg: Config = im_common::config::load_from(None, PREFIX, &[]).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
        let vars = [
            (
                "IM_PUSH_SERVER_WEBHOOK__BEARER_TOKEN".to_owned(),
                "s3cret-value".to_owned(),
            ),
            (
                "IM_PUSH_SERVER_PROVIDERS__OTHER".to_owned(),
                "none".to_owned(),
            ),
            ("IM_PUSH_SERVER_APNS__SANDBOX".to_owned(), "true".to_owned()),
        ];
        let cfg: Config = im_common::config::load_from(None, PREFIX, &vars).unwrap();
        assert_eq!(cfg.webhook.bearer_token.expose(), "s3cret-value");
        assert_eq!(cfg.providers.other, ProviderKind::None);
        assert_eq!(cfg.apns.endpoint(), "https://api.sandbox.push.apple.com");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "secrets never printed: {shown}");

        let vars = [("IM_PUSH_SERVER_PROVIDERS__IOS".to_owned(), "gcm".to_owned())];
        let e = im_common::config::load_from::<Config>(None, PREFIX, &vars)
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.ios") && e.contains("apns"), "{e}");

        let bad = Config {
            queue_capacity: 0,
            ..Config::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("queue_capacity")
        );
        let mut bad = Config::default();
        bad.apns.enabled = true;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("apns.key_id"), "{e}");
        let mut bad = Config::default();
        bad.webhook.enabled = true;
        bad.webhook.url = "ftp://x".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("webhook.url")
        );
    }

    #[test]
    fn retry_delays_double_to_the_cap_and_honour_retry_after() {
        let r = RetryConfig {
            attempts: 5,
            initial_ms: 100,
            max_ms: 1000,
            jitter: 0.0,
        };
        let d: Vec<u64> = (1..=6)
            .map(|a| r.delay(a, None).as_millis() as u64)
            .collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            r.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            r.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }
}
