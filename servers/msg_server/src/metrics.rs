//! msg_server's counters (Prometheus `/metrics` and the admin stats snapshot).

use im_common::metrics::{Counter, Histogram, Registry};

/// Every counter msg_server keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Successful logins.
    pub logins: Counter,
    /// Refused logins (wrong password, unknown user, throttled, no db_proxy).
    pub login_failures: Counter,
    /// Logins refused by the per-address throttle without asking db_proxy.
    pub login_throttled: Counter,
    /// PDUs dropped because the connection was not logged in yet.
    pub pre_login_dropped: Counter,
    /// Bodies that did not decode (dropped, connection kept).
    pub decode_errors: Counter,
    /// Commands msg_server does not handle.
    pub unknown_commands: Counter,
    /// IMMsgData received from clients.
    pub msgs_in: Counter,
    /// IMMsgData delivered to client connections (local and routed).
    pub msgs_out: Counter,
    /// Stored acks sent to senders.
    pub acks: Counter,
    /// Messages that were not stored (msg_id 0, error, timeout): no ack sent.
    pub store_failures: Counter,
    /// Store attempts after the first (same request tag).
    pub store_retries: Counter,
    /// Messages refused before storing (empty, to self, bad type, too long).
    pub msgs_refused: Counter,
    /// Messages dropped by the per-connection rate limit.
    pub rate_limited: Counter,
    /// Requests refused because a list or field was over its bound.
    pub oversized_requests: Counter,
    /// Routed messages dropped as duplicates (resend window).
    pub dup_drops: Counter,
    /// PDUs sent to route_server (resends included).
    pub routed_out: Counter,
    /// PDUs received from route_servers.
    pub routed_in: Counter,
    /// PDUs resent from the resend window.
    pub route_resends: Counter,
    /// PDUs that aged out of the resend window while no route_server was reachable.
    pub route_dropped: Counter,
    /// Delivery acks received from clients.
    pub delivery_acks: Counter,
    /// Connections kicked (duplicate login, mobile kick, admin).
    pub kicks: Counter,
    /// Push requests sent to push_server.
    pub pushes: Counter,
    /// Group member lists fetched from db_proxy.
    pub group_fetches: Counter,
    /// Client send -> stored ack.
    pub ack_latency: Histogram,
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: Registry) -> Self {
        let c = |name: &str, help: &str| registry.counter(name, help);
        Metrics {
            logins: c("logins_total", "Successful logins."),
            login_failures: c("login_failures_total", "Refused logins."),
            login_throttled: c(
                "login_throttled_total",
                "Logins refused by the per-address failure throttle.",
            ),
            pre_login_dropped: c(
                "pre_login_dropped_total",
                "PDUs dropped because the connection was not logged in.",
            ),
            decode_errors: c("decode_errors_total", "Bodies that did not decode."),
            unknown_commands: c("unknown_commands_total", "Commands not handled."),
            msgs_in: c("msgs_in_total", "Messages received from clients."),
            msgs_out: c(
                "msgs_out_total",
                "Messages delivered to client connections.",
            ),
            acks: c("acks_total", "Stored acks sent to senders."),
            store_failures: c(
                "store_failures_total",
                "Messages not stored (no ack sent to the sender).",
            ),
            store_retries: c("store_retries_total", "Store attempts after the first."),
            msgs_refused: c(
                "msgs_refused_total",
                "Messages refused before storing (empty, to self, bad type, too long).",
            ),
            rate_limited: c(
                "rate_limited_total",
                "Messages dropped by the per-connection rate limit.",
            ),
            oversized_requests: c(
                "oversized_requests_total",
                "Client requests refused because a list or field was over its bound.",
            ),
            dup_drops: c("dup_drops_total", "Routed messages dropped as duplicates."),
            routed_out: c("routed_out_total", "PDUs sent to route_server."),
            routed_in: c("routed_in_total", "PDUs received from route_servers."),
            route_resends: c("route_resends_total", "PDUs resent from the resend window."),
            route_dropped: c(
                "route_dropped_total",
                "PDUs that aged out while no route_server was reachable.",
            ),
            delivery_acks: c(
                "delivery_acks_total",
                "Delivery acks received from clients.",
            ),
            kicks: c("kicks_total", "Connections kicked."),
            pushes: c("pushes_total", "Push requests sent to push_server."),
            group_fetches: c(
                "group_fetches_total",
                "Group member lists fetched from db_proxy.",
            ),
            ack_latency: registry.histogram(
                "ack_latency_seconds",
                "Client message received -> stored ack sent.",
            ),
            registry,
        }
    }
}
