//! http_msg_server's counters (Prometheus `/metrics` and the admin snapshot).

use im_common::metrics::{Counter, Registry};

/// Endpoints counted separately (label `endpoint`); anything else is "other".
pub const ENDPOINTS: [&str; 5] = [
    "CreateGroup",
    "ChangeMembers",
    "SendMessage",
    "discovery",
    "other",
];

/// The counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Requests refused for a missing or wrong API token.
    pub unauthorized: Counter,
    /// PDUs sent to route_server.
    pub routed: Counter,
    /// PDUs that found no route_server link.
    pub route_unsent: Counter,
    /// Groups created.
    pub groups_created: Counter,
    /// Member changes applied.
    pub member_changes: Counter,
    /// Messages stored and routed.
    pub messages_sent: Counter,
    requests: Vec<(&'static str, Counter)>,
    failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the counters.
    pub fn new() -> Self {
        let registry = Registry::new("im_http_msg_server");
        Metrics {
            unauthorized: registry.counter(
                "unauthorized_total",
                "Requests refused for a missing or wrong API token.",
            ),
            routed: registry.counter("routed_total", "PDUs sent to route_server."),
            route_unsent: registry.counter(
                "route_unsent_total",
                "Notifies and messages that found no route_server link.",
            ),
            groups_created: registry.counter("groups_created_total", "Groups created."),
            member_changes: registry.counter("member_changes_total", "Group member changes."),
            messages_sent: registry.counter("messages_sent_total", "Messages stored and routed."),
            requests: ENDPOINTS
                .iter()
                .map(|e| {
                    (
                        *e,
                        registry.counter_with(
                            "requests_total",
                            "HTTP requests by endpoint.",
                            &[("endpoint", e)],
                        ),
                    )
                })
                .collect(),
            failures: registry.counter(
                "failed_answers_total",
                "/query/ answers with a non-zero error_code.",
            ),
            registry,
        }
    }

    /// Counts a request to `endpoint`.
    pub fn request(&self, endpoint: &str) {
        let c = self
            .requests
            .iter()
            .find(|(e, _)| *e == endpoint)
            .or_else(|| self.requests.last());
        if let Some((_, c)) = c {
            c.inc();
        }
    }

    /// Counts a failed answer.
    pub fn failed(&self) {
        self.failures.inc();
    }
}
