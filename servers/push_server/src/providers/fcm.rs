//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! `POST {endpoint}/v1/projects/{project_id}/messages:send` with an OAuth2 access token. The
//! token comes from the service account by the JWT-bearer grant (RFC 7523): an RS256
//! assertion `{iss: client_email, scope, aud: token_uri, iat, exp}` POSTed to `token_uri`;
//! it is reused until a minute before it expires, and fetched by one worker at a time.
//! Answers: 200 delivered; 404 UNREGISTERED, or 400 INVALID_ARGUMENT about the token, mean a
//! dead token; 401 fetches a new access token; 429 and 5xx are retried.

use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Outcome, ProviderError, retry_after, retryable, transport_error, unix_now};
use crate::config::{FcmConfig, Secret};
use crate::payload::fcm_body;
use crate::queue::Job;

/// The OAuth2 scope of FCM sends.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The JWT-bearer grant type, form-encoded.
const GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// An access token is replaced this long before it expires, so none expires in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Longest registration token accepted (today's are about 160 characters).
const MAX_TOKEN_BYTES: usize = 4096;
/// Largest error body read from Google.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether `token` looks like an FCM registration token: printable ASCII, no spaces.
pub fn token_is_valid(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The fields push_server reads from a Google service-account JSON file.
#[derive(Deserialize)]
struct ServiceAccountFile {
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
    project_id: String,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    expires_in: u64,
}

struct AccessToken {
    value: String,
    expires: Instant,
}

/// The FCM provider.
pub struct Fcm {
    client: reqwest::Client,
    send_url: String,
    client_email: String,
    token_uri: String,
    key: EncodingKey,
    key_id: Option<String>,
    // An async mutex: the worker that finds the token stale fetches a new one while the
    // others wait for it instead of all asking Google at once.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

/// Why no access token could be had.
enum TokenFailure {
    /// Worth retrying (transport error, 5xx, 429).
    Transient(String),
    /// Not (bad key, refused grant).
    Final(String),
}

impl Fcm {
    /// Reads the service account and builds the HTTP client.
    pub async fn new(cfg: &FcmConfig, timeout: Duration) -> Result<Fcm, ProviderError> {
        let account = load_account(&cfg.service_account_path).await?;
        let key =
            EncodingKey::from_rsa_pem(account.private_key.expose().as_bytes()).map_err(|e| {
                ProviderError::Invalid {
                    key: "fcm.service_account_path",
                    path: cfg.service_account_path.clone(),
                    why: format!("private_key is not an RSA PEM key: {e}"),
                }
            })?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(300))
            .build()
            .map_err(|source| ProviderError::Client {
                provider: "fcm",
                source,
            })?;
        Ok(Fcm {
            client,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                cfg.endpoint.trim_end_matches('/'),
                account.project_id
            ),
            client_email: account.client_email,
            token_uri: account.token_uri,
            key,
            key_id: account.private_key_id,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// One attempt.
    pub async fn send(&self, job: &Job) -> Outcome {
        let Some(body) = fcm_body(&job.token, &job.push()) else {
            return Outcome::Failed {
                why: "payload larger than 4 KiB".to_owned(),
            };
        };
        let access = match self.access_token().await {
            Ok(t) => t,
            Err(TokenFailure::Transient(why)) => {
                return Outcome::Retry {
                    why: format!("access token: {why}"),
                    after: None,
                };
            }
            Err(TokenFailure::Final(why)) => {
                return Outcome::Failed {
                    why: format!("access token: {why}"),
                };
            }
        };
        let answer = self
            .client
            .post(&self.send_url)
            .bearer_auth(&access)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let rsp = match answer {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        let status = rsp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let after = retry_after(rsp.headers());
        let err = read_error(rsp).await;
        let code = err.code.as_deref().unwrap_or("");
        match status {
            StatusCode::UNAUTHORIZED => {
                self.forget_token(&access).await;
                Outcome::Retry {
                    why: format!("401 {code}"),
                    after: None,
                }
            }
            StatusCode::NOT_FOUND if code == "UNREGISTERED" => Outcome::Dead {
                why: "404 UNREGISTERED".to_owned(),
            },
            StatusCode::BAD_REQUEST if code == "INVALID_ARGUMENT" && err.about_token => {
                Outcome::Dead {
                    why: "400 INVALID_ARGUMENT (token)".to_owned(),
                }
            }
            s if retryable(s) => Outcome::Retry {
                why: format!("{} {code}", s.as_u16()),
                after,
            },
            s => Outcome::Failed {
                why: format!("{} {code}", s.as_u16()),
            },
        }
    }

    async fn access_token(&self) -> Result<String, TokenFailure> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.expires > Instant::now() + EXPIRY_MARGIN
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn forget_token(&self, used: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == used) {
            *slot = None;
        }
    }

    async fn fetch_token(&self) -> Result<AccessToken, TokenFailure> {
        let now = unix_now();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(
            &header,
            &Assertion {
                iss: &self.client_email,
                scope: SCOPE,
                aud: &self.token_uri,
                iat: now,
                exp: now + ASSERTION_LIFETIME,
            },
            &self.key,
        )
        .map_err(|e| TokenFailure::Final(format!("cannot sign the assertion: {e}")))?;
        let started = Instant::now();
        let rsp = self
            .client
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            // The assertion is base64url and dots: nothing to escape.
            .body(format!("grant_type={GRANT}&assertion={assertion}"))
            .send()
            .await
            .map_err(|e| match transport_error(e) {
                Outcome::Retry { why, .. } => TokenFailure::Transient(why),
                other => TokenFailure::Final(format!("{other:?}")),
            })?;
        let status = rsp.status();
        if !status.is_success() {
            let why = format!("token endpoint answered {}", status.as_u16());
            return Err(if retryable(status) {
                TokenFailure::Transient(why)
            } else {
                TokenFailure::Final(why)
            });
        }
        let answer: TokenAnswer = rsp
            .json()
            .await
            .map_err(|_| TokenFailure::Transient("token answer did not parse".to_owned()))?;
        tracing::debug!(expires_in = answer.expires_in, "FCM access token fetched");
        Ok(AccessToken {
            value: answer.access_token.0,
            expires: started + Duration::from_secs(answer.expires_in),
        })
    }
}

/// The parts of a Google error body that matter.
#[derive(Default)]
struct FcmError {
    /// FcmError.errorCode (UNREGISTERED, INVALID_ARGUMENT, ...), else the status.
    code: Option<String>,
    /// A BadRequest field violation names `message.token`, or the message speaks of the
    /// registration token.
    about_token: bool,
}

async fn read_error(rsp: reqwest::Response) -> FcmError {
    let Ok(bytes) = rsp.bytes().await else {
        return FcmError::default();
    };
    if bytes.len() > MAX_ERROR_BODY {
        return FcmError::default();
    }
    parse_error(&bytes)
}

fn parse_error(bytes: &[u8]) -> FcmError {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return FcmError::default();
    };
    let e = &v["error"];
    let details = e["details"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| e["status"].as_str())
        .map(str::to_owned);
    let violation = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|f| f["field"] == "message.token"))
    });
    let said = e["message"]
        .as_str()
        .is_some_and(|m| m.to_ascii_lowercase().contains("registration token"));
    FcmError {
        code,
        about_token: violation || said,
    }
}

async fn load_account(path: &Path) -> Result<ServiceAccountFile, ProviderError> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|source| ProviderError::Read {
            key: "fcm.service_account_path",
            path: path.to_path_buf(),
            source,
        })?;
    // serde_json's message names a line and column or a missing field, never the content.
    serde_json::from_slice(&text).map_err(|e| ProviderError::Invalid {
        key: "fcm.service_account_path",
        path: path.to_path_buf(),
        why: format!("not a service-account JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let unregistered = br#"{"error":{"code":404,"message":"Requested entity was not found.",
            "status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode":"UNREGISTERED"}]}}"#;
        let e = parse_error(unregistered);
        assert_eq!(e.code.as_deref(), Some("UNREGISTERED"));
        let bad_token = br#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token",
            "status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode":"INVALID_ARGUMENT"},{"@type":"type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
        let e = parse_error(bad_token);
        assert_eq!(e.code.as_deref(), Some("INVALID_ARGUMENT"));
        assert!(e.about_token);
        let bad_payload = br#"{"error":{"code":400,"message":"Invalid JSON payload received.",
            "status":"INVALID_ARGUMENT"}}"#;
        let e = parse_error(bad_payload);
        assert_eq!(e.code.as_deref(), Some("INVALID_ARGUMENT"));
        assert!(!e.about_token);
        assert!(parse_error(b"not json").code.is_none());
    }

    #[test]
    fn token_shapes() {
        assert!(token_is_valid("fGh3:APA91bH-x_y"));
        assert!(!token_is_valid("has space"));
        assert!(!token_is_valid(""));
    }
}
