//! The push providers: [`apns`] (Apple, HTTP/2 with a JWT), [`fcm`] (Google, HTTP v1 with an
//! OAuth2 token from a service account) and [`webhook`] (a POST of JSON). Each sends one push
//! and says what became of it ([`Outcome`]); the queue decides about retries and dead tokens.

pub mod apns;
pub mod fcm;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use thiserror::Error;

use crate::config::{Config, ProviderKind};
use crate::queue::Job;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Delivered,
    /// A failure worth another attempt (5xx, 429, timeout, connection error); `after` is the
    /// provider's Retry-After.
    Retry {
        /// What failed (no token, no text).
        why: String,
        /// Wait the provider asked for.
        after: Option<Duration>,
    },
    /// The provider says the token is no longer valid: remove it.
    Dead {
        /// The provider's reason.
        why: String,
    },
    /// A final failure (another 4xx, a payload that cannot fit).
    Failed {
        /// What failed.
        why: String,
    },
}

/// A provider that could not be set up (at start).
#[derive(Debug, Error)]
pub enum ProviderError {
    /// A key or service-account file could not be read.
    #[error("cannot read {key} file {path}")]
    Read {
        /// Config key naming the file.
        key: &'static str,
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A key or service-account file has the wrong content (the content is never shown).
    #[error("{key} file {path} is not usable: {why}")]
    Invalid {
        /// Config key naming the file.
        key: &'static str,
        /// File.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client of {provider}: {source}")]
    Client {
        /// Provider.
        provider: &'static str,
        /// reqwest's error.
        source: reqwest::Error,
    },
}

/// The enabled providers.
pub struct Providers {
    apns: Option<apns::Apns>,
    fcm: Option<fcm::Fcm>,
    webhook: Option<webhook::Webhook>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("apns", &self.apns.is_some())
            .field("fcm", &self.fcm.is_some())
            .field("webhook", &self.webhook.is_some())
            .finish()
    }
}

impl Providers {
    /// Sets up the providers `config` enables (reads their keys).
    pub async fn new(config: &Config) -> Result<Providers, ProviderError> {
        im_proto::client::ensure_crypto_provider();
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let apns = if config.apns.enabled {
            Some(apns::Apns::new(&config.apns, timeout).await?)
        } else {
            None
        };
        let fcm = if config.fcm.enabled {
            Some(fcm::Fcm::new(&config.fcm, timeout).await?)
        } else {
            None
        };
        let webhook = if config.webhook.enabled {
            Some(webhook::Webhook::new(&config.webhook, timeout)?)
        } else {
            None
        };
        Ok(Providers { apns, fcm, webhook })
    }

    /// Whether `kind` can deliver.
    pub fn has(&self, kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::Apns => self.apns.is_some(),
            ProviderKind::Fcm => self.fcm.is_some(),
            ProviderKind::Webhook => self.webhook.is_some(),
            ProviderKind::None => false,
        }
    }

    /// One delivery attempt of `job`.
    pub async fn send(&self, job: &Job) -> Outcome {
        let none = || Outcome::Failed {
            why: "provider not enabled".to_owned(),
        };
        match job.provider {
            ProviderKind::Apns => match &self.apns {
                Some(p) => p.send(job).await,
                None => none(),
            },
            ProviderKind::Fcm => match &self.fcm {
                Some(p) => p.send(job).await,
                None => none(),
            },
            ProviderKind::Webhook => match &self.webhook {
                Some(p) => p.send(job).await,
                None => none(),
            },
            ProviderKind::None => none(),
        }
    }
}

/// Whether `token` has the shape of a token of `kind` (checked before queueing: result 1
/// otherwise, as the original refused anything but 64 hex characters).
pub fn token_is_valid(kind: ProviderKind, token: &str) -> bool {
    match kind {
        ProviderKind::Apns => apns::token_is_valid(token),
        ProviderKind::Fcm => fcm::token_is_valid(token),
        ProviderKind::Webhook => {
            !token.is_empty()
                && token.len() <= webhook::MAX_TOKEN_BYTES
                && !token.chars().any(char::is_control)
        }
        ProviderKind::None => false,
    }
}

/// The outcome of a request that got no answer.
fn transport_error(e: reqwest::Error) -> Outcome {
    if e.is_builder() {
        return Outcome::Failed {
            why: format!("bad request: {}", short_error(e)),
        };
    }
    if e.is_timeout() {
        return Outcome::Retry {
            why: "timeout".to_owned(),
            after: None,
        };
    }
    Outcome::Retry {
        why: format!("transport: {}", short_error(e)),
        after: None,
    }
}

/// reqwest's error and its causes, without the URL (an APNs URL ends in the device token).
fn short_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether an answer with `status` is worth another attempt.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Retry-After in seconds (the HTTP-date form is not used by APNs or FCM).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
