//! The generic provider: `POST <url>` with the JSON of [`crate::payload::webhook_body`] and an
//! optional `Authorization: Bearer`. 2xx is delivered, 410 Gone marks the token dead (as
//! APNs does), 429 and 5xx are retried, anything else is final.

use std::time::Duration;

use reqwest::StatusCode;

use super::{Outcome, ProviderError, retry_after, retryable, transport_error};
use crate::config::{Secret, WebhookConfig};
use crate::payload::webhook_body;
use crate::queue::Job;

/// Longest token passed to the webhook.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The webhook provider.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    bearer: Secret,
}

impl Webhook {
    /// Builds the HTTP client.
    pub fn new(cfg: &WebhookConfig, timeout: Duration) -> Result<Webhook, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|source| ProviderError::Client {
                provider: "webhook",
                source,
            })?;
        Ok(Webhook {
            client,
            url: cfg.url.clone(),
            bearer: cfg.bearer_token.clone(),
        })
    }

    /// One attempt.
    pub async fn send(&self, job: &Job) -> Outcome {
        let body = webhook_body(job.user_id, job.client_type, &job.token, &job.push());
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if !self.bearer.is_empty() {
            req = req.bearer_auth(self.bearer.expose());
        }
        let rsp = match req.send().await {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        match rsp.status() {
            s if s.is_success() => Outcome::Delivered,
            StatusCode::GONE => Outcome::Dead {
                why: "410".to_owned(),
            },
            s if retryable(s) => Outcome::Retry {
                why: s.as_u16().to_string(),
                after: retry_after(rsp.headers()),
            },
            s => Outcome::Failed {
                why: s.as_u16().to_string(),
            },
        }
    }
}
