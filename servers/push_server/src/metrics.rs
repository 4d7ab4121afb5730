//! push_server's counters (Prometheus `/metrics` and the admin snapshot).

use im_common::metrics::{Counter, Histogram, Registry};

use crate::config::ProviderKind;

/// Why a push was answered result 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue was full.
    QueueFull,
    /// The token does not look like one of its provider's tokens.
    InvalidToken,
    /// No enabled provider serves the client type.
    NoProvider,
    /// The `data` text is too large to fit a payload.
    TooLarge,
}

impl Refusal {
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::InvalidToken => "invalid_token",
            Refusal::NoProvider => "no_provider",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// Counters of one provider.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    /// Accepted by the provider.
    pub sent: Counter,
    /// Given up on (final error, dead token or attempts exhausted).
    pub failed: Counter,
    /// Attempts that failed and were scheduled again.
    pub retried: Counter,
    /// Tokens the provider reported dead.
    pub dead: Counter,
    /// Time of one HTTP request to the provider.
    pub latency: Histogram,
}

impl ProviderMetrics {
    fn new(r: &Registry, p: ProviderKind) -> Self {
        let l = [("provider", p.name())];
        ProviderMetrics {
            sent: r.counter_with("pushes_sent_total", "Pushes the provider accepted.", &l),
            failed: r.counter_with(
                "pushes_failed_total",
                "Pushes given up on (final error, dead token or attempts exhausted).",
                &l,
            ),
            retried: r.counter_with(
                "pushes_retried_total",
                "Delivery attempts that failed and were retried.",
                &l,
            ),
            dead: r.counter_with(
                "dead_tokens_total",
                "Tokens the provider reported as no longer valid.",
                &l,
            ),
            latency: r.histogram_with(
                "provider_request_seconds",
                "Time of one HTTP request to the provider.",
                &l,
            ),
        }
    }
}

/// All of push_server's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry they live in.
    pub registry: Registry,
    /// IMPushToUserReq received.
    pub requests: Counter,
    /// Tokens accepted into the queue (result 0).
    pub accepted: Counter,
    /// Bodies that did not decode.
    pub bad_bodies: Counter,
    /// Links closed for a command other than heartbeat and push (PROTOCOL.md 4.8).
    pub unknown_commands: Counter,
    /// Dead tokens db_proxy removed.
    pub tokens_removed: Counter,
    /// Dead tokens db_proxy kept (the user has a newer token, or none any more).
    pub tokens_kept: Counter,
    /// Removals that failed (no db_proxy answer, refused, or the removal queue was full).
    pub removal_failures: Counter,
    refused: [Counter; 4],
    apns: ProviderMetrics,
    fcm: ProviderMetrics,
    webhook: ProviderMetrics,
}

impl Metrics {
    /// Registers everything in `registry`.
    pub fn new(registry: Registry) -> Self {
        let r = &registry;
        let refused = |why: Refusal| {
            r.counter_with(
                "pushes_refused_total",
                "Tokens answered result 1, by reason.",
                &[("reason", why.name())],
            )
        };
        Metrics {
            requests: r.counter("push_requests_total", "IMPushToUserReq received."),
            accepted: r.counter(
                "pushes_accepted_total",
                "Tokens accepted into the queue (result 0).",
            ),
            bad_bodies: r.counter(
                "bad_bodies_total",
                "PDU bodies that did not decode (dropped, link kept).",
            ),
            unknown_commands: r.counter(
                "unknown_command_closes_total",
                "Links closed for a command other than heartbeat and push.",
            ),
            tokens_removed: r.counter(
                "dead_tokens_removed_total",
                "Dead tokens removed through db_proxy.",
            ),
            tokens_kept: r.counter(
                "dead_tokens_kept_total",
                "Dead tokens db_proxy did not remove (a newer token, or none any more).",
            ),
            removal_failures: r.counter(
                "dead_token_removal_failures_total",
                "Dead-token removals that failed or were dropped.",
            ),
            refused: [
                refused(Refusal::QueueFull),
                refused(Refusal::InvalidToken),
                refused(Refusal::NoProvider),
                refused(Refusal::TooLarge),
            ],
            apns: ProviderMetrics::new(r, ProviderKind::Apns),
            fcm: ProviderMetrics::new(r, ProviderKind::Fcm),
            webhook: ProviderMetrics::new(r, ProviderKind::Webhook),
            registry,
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// Refusals of one reason so far.
    pub fn refused_count(&self, why: Refusal) -> u64 {
        self.refused[why as usize].get()
    }

    /// The counters of provider `p` (`None` shares the webhook's, never used).
    pub fn provider(&self, p: ProviderKind) -> &ProviderMetrics {
        match p {
            ProviderKind::Apns => &self.apns,
            ProviderKind::Fcm => &self.fcm,
            ProviderKind::Webhook | ProviderKind::None => &self.webhook,
        }
    }
}
