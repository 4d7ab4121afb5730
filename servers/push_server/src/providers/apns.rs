//! Apple Push Notification service, HTTP/2 provider API with token authentication.
//!
//! `POST {endpoint}/3/device/<token>` with `authorization: bearer <JWT>` (ES256, header
//! `kid` = Key ID, claims `iss` = Team ID and `iat`; signed with the `.p8` key, reused for 50
//! minutes since Apple refuses tokens older than an hour and throttles refreshes more often
//! than every 20 minutes), `apns-topic` (bundle id), `apns-push-type`, `apns-priority` and
//! `apns-expiration`, the original's JSON payload as the body. Answers: 200 delivered; 410
//! Unregistered and 400 BadDeviceToken mean a dead token; 403 ExpiredProviderToken makes a
//! new JWT; 429 and 5xx are retried.
//!
//! Both push types go out as `apns-push-type: alert`: Apple files anything showing an alert,
//! a sound *or a badge* under "alert", and refuses badge keys in "background" pushes (which
//! need `content-available`). The silent push (badge only) uses priority 5, so the device may
//! batch it; a normal one priority 10.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Outcome, ProviderError, retry_after, retryable, transport_error, unix_now};
use crate::config::ApnsConfig;
use crate::payload::apns_payload;
use crate::queue::Job;

/// How long one provider JWT is used (Apple: valid for an hour, refresh at most every 20 min).
pub const JWT_LIFETIME: Duration = Duration::from_secs(50 * 60);
/// Shortest and longest device token accepted, in hex characters. Today's tokens are 32
/// bytes (64 hex, the original's only length); Apple warns they may grow.
const TOKEN_HEX_MIN: usize = 64;
const TOKEN_HEX_MAX: usize = 200;
/// Largest error body read from Apple (a short JSON `{"reason": ...}`).
const MAX_ERROR_BODY: usize = 4096;

/// Whether `token` looks like an APNs device token: hex, whole bytes, 64 to 200 characters.
pub fn token_is_valid(token: &str) -> bool {
    (TOKEN_HEX_MIN..=TOKEN_HEX_MAX).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// Makes and caches the provider JWT.
struct Signer {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    cached: Mutex<Option<(Arc<str>, Instant)>>,
}

impl Signer {
    /// The JWT to use now (a new one when the cached one is 50 minutes old).
    fn bearer(&self) -> Result<Arc<str>, jsonwebtoken::errors::Error> {
        // A std mutex: signing takes tens of microseconds and nothing awaits under it.
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((jwt, made)) = cached.as_ref()
            && made.elapsed() < JWT_LIFETIME
        {
            return Ok(jwt.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: unix_now(),
        };
        let jwt: Arc<str> = jsonwebtoken::encode(&header, &claims, &self.key)?.into();
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    /// Drops `used` if it is still the cached JWT (Apple called it expired).
    fn invalidate(&self, used: &str) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|(jwt, _)| &**jwt == used) {
            *cached = None;
        }
    }
}

/// The APNs provider.
pub struct Apns {
    client: reqwest::Client,
    base: String,
    topic: String,
    expiration_secs: u32,
    remove_bad_device_tokens: bool,
    signer: Signer,
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
}

impl Apns {
    /// Reads the `.p8` key and builds the HTTP/2 client.
    pub async fn new(cfg: &ApnsConfig, timeout: Duration) -> Result<Apns, ProviderError> {
        let key = load_key(&cfg.key_path).await?;
        let base = cfg.endpoint().to_owned();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Apple asks providers to keep their connections open; pings keep NATs from
            // dropping them between bursts.
            .pool_idle_timeout(Duration::from_secs(600))
            .http2_keep_alive_interval(Some(Duration::from_secs(60)))
            .http2_keep_alive_while_idle(true);
        if base.starts_with("http://") {
            // Plain HTTP/2 (h2c) for local test servers; real APNs negotiates h2 over TLS.
            builder = builder.http2_prior_knowledge();
        }
        let client = builder.build().map_err(|source| ProviderError::Client {
            provider: "apns",
            source,
        })?;
        Ok(Apns {
            client,
            base,
            topic: cfg.topic.clone(),
            expiration_secs: cfg.expiration_secs,
            remove_bad_device_tokens: cfg.remove_bad_device_tokens,
            signer: Signer {
                key,
                key_id: cfg.key_id.clone(),
                team_id: cfg.team_id.clone(),
                cached: Mutex::new(None),
            },
        })
    }

    /// One attempt.
    pub async fn send(&self, job: &Job) -> Outcome {
        let Some(payload) = apns_payload(&job.push()) else {
            return Outcome::Failed {
                why: "payload larger than 4 KiB".to_owned(),
            };
        };
        let jwt = match self.signer.bearer() {
            Ok(j) => j,
            Err(e) => {
                return Outcome::Failed {
                    why: format!("cannot sign the provider token: {e}"),
                };
            }
        };
        let expiration = match self.expiration_secs {
            0 => 0,
            s => unix_now() + u64::from(s),
        };
        let answer = self
            .client
            .post(format!("{}/3/device/{}", self.base, job.token))
            .header(reqwest::header::AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if job.silent { "5" } else { "10" })
            .header("apns-expiration", expiration.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await;
        let rsp = match answer {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        let status = rsp.status();
        if status == StatusCode::OK {
            return Outcome::Delivered;
        }
        let after = retry_after(rsp.headers());
        let reason = read_reason(rsp).await;
        match (status, reason.as_str()) {
            (StatusCode::GONE, _) => Outcome::Dead {
                why: format!("410 {reason}"),
            },
            (StatusCode::BAD_REQUEST, "BadDeviceToken") if self.remove_bad_device_tokens => {
                Outcome::Dead {
                    why: "400 BadDeviceToken".to_owned(),
                }
            }
            (StatusCode::FORBIDDEN, "ExpiredProviderToken") => {
                self.signer.invalidate(&jwt);
                Outcome::Retry {
                    why: "403 ExpiredProviderToken".to_owned(),
                    after: None,
                }
            }
            (s, _) if retryable(s) => Outcome::Retry {
                why: format!("{} {reason}", s.as_u16()),
                after,
            },
            (s, _) => Outcome::Failed {
                why: format!("{} {reason}", s.as_u16()),
            },
        }
    }
}

async fn read_reason(rsp: reqwest::Response) -> String {
    match rsp.bytes().await {
        Ok(b) if b.len() <= MAX_ERROR_BODY => serde_json::from_slice::<ErrorBody>(&b)
            .ok()
            .and_then(|e| e.reason)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

async fn load_key(path: &Path) -> Result<EncodingKey, ProviderError> {
    let pem = tokio::fs::read(path)
        .await
        .map_err(|source| ProviderError::Read {
            key: "apns.key_path",
            path: path.to_path_buf(),
            source,
        })?;
    let key = EncodingKey::from_ec_pem(&pem).map_err(|e| ProviderError::Invalid {
        key: "apns.key_path",
        path: path.to_path_buf(),
        why: format!("not a PKCS#8 PEM P-256 key (.p8): {e}"),
    })?;
    // Sign once now, so that a key of the wrong curve fails at start and not per push.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("check".to_owned());
    jsonwebtoken::encode(
        &header,
        &Claims {
            iss: "check",
            iat: 0,
        },
        &key,
    )
    .map_err(|e| ProviderError::Invalid {
        key: "apns.key_path",
        path: path.to_path_buf(),
        why: format!("cannot sign ES256 with it: {e}"),
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        assert!(token_is_valid(&"ab".repeat(32)));
        assert!(token_is_valid(&"AB09".repeat(20)));
        assert!(!token_is_valid(&"ab".repeat(31)));
        assert!(!token_is_valid(&format!("{}a", "ab".repeat(32))));
        assert!(!token_is_valid(&"zz".repeat(32)));
        assert!(!token_is_valid(""));
    }
}
