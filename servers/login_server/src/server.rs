//! What every service of login_server shares: the config, the msg_server table, the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use im_common::ConnRegistry;
use im_common::metrics::{Counter, Gauge, Registry};

use crate::config::Config;
use crate::table::{Assignment, DrainOutcome, MsgServerStatus, MsgServerTable, Refusal};

/// Counters and gauges of one login_server instance.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub registry: Registry,
    /// Logins handed out (HTTP and legacy TCP).
    pub assignments: Counter,
    /// Refused: no msg_server registered.
    pub refused_none: Counter,
    /// Refused: all full or draining.
    pub refused_full: Counter,
    /// HTTP `/msg_server` requests answered.
    pub http_answered: Counter,
    /// HTTP connections closed without an answer, by reason.
    pub http_closed_bad_path: Counter,
    pub http_closed_too_large: Counter,
    pub http_closed_malformed: Counter,
    pub http_closed_timeout: Counter,
    pub http_over_limit: Counter,
    /// Open HTTP connections.
    pub http_open: Gauge,
    /// Legacy IMMsgServReq answered.
    pub legacy_answered: Counter,
    /// PDU bodies that did not decode (logged and dropped).
    pub bad_bodies: Counter,
    /// IMMsgServInfo received (first registrations and replacements).
    pub registrations: Counter,
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new("im_login_server");
        let refused = |reason| {
            r.counter_with(
                "refusals_total",
                "Logins refused, by reason (no_msg_server, full).",
                &[("reason", reason)],
            )
        };
        let closed = |reason| {
            r.counter_with(
                "http_closed_total",
                "HTTP connections closed without an answer, by reason.",
                &[("reason", reason)],
            )
        };
        Metrics {
            assignments: r.counter("assignments_total", "Logins handed out to a msg_server."),
            refused_none: refused("no_msg_server"),
            refused_full: refused("full"),
            http_answered: r.counter("http_requests_total", "GET /msg_server requests answered."),
            http_closed_bad_path: closed("bad_path"),
            http_closed_too_large: closed("too_large"),
            http_closed_malformed: closed("malformed"),
            http_closed_timeout: closed("timeout"),
            http_over_limit: closed("over_limit"),
            http_open: r.gauge("http_open_connections", "Open HTTP connections."),
            legacy_answered: r.counter(
                "legacy_requests_total",
                "IMMsgServReq answered on the legacy TCP port.",
            ),
            bad_bodies: r.counter(
                "bad_bodies_total",
                "PDU bodies that did not decode (logged and dropped).",
            ),
            registrations: r.counter(
                "msg_server_registrations_total",
                "IMMsgServInfo received (registrations and re-registrations).",
            ),
            registry: r,
        }
    }
}

/// State shared by the HTTP, msg_server, legacy and admin services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub table: MsgServerTable,
    pub metrics: Metrics,
    /// Open msg_server links (admin conn list, stats).
    pub msg_server_links: ConnRegistry,
    /// Open legacy client connections.
    pub legacy_links: ConnRegistry,
    /// The HTTP listener's address, for admin stats.
    pub http_addr: std::sync::OnceLock<String>,
}

impl Shared {
    /// Picks a msg_server for one login and counts the outcome.
    pub fn assign(&self) -> Result<Assignment, Refusal> {
        self.assign_for(false)
    }

    /// [`Shared::assign`], preferring msg_servers with a TLS client port when `want_tls`.
    pub fn assign_for(&self, want_tls: bool) -> Result<Assignment, Refusal> {
        let r = self.table.assign_for(Instant::now(), want_tls);
        match &r {
            Ok(_) => self.metrics.assignments.inc(),
            Err(Refusal::NoMsgServer) => self.metrics.refused_none.inc(),
            Err(Refusal::Full) => self.metrics.refused_full.inc(),
        }
        r
    }

    /// Refusals since start.
    pub fn refusals_total(&self) -> u64 {
        self.metrics.refused_none.get() + self.metrics.refused_full.get()
    }
}

/// A handle on a login_server: build it with [`LoginServer::new`], run it with
/// [`LoginServer::serve`]; clones share the server, so tests and im-cluster can inspect and
/// drive it while it runs (operators use the admin port instead).
#[derive(Debug, Clone)]
pub struct LoginServer {
    pub(crate) shared: Arc<Shared>,
}

impl LoginServer {
    /// Validates `config` and builds the (not yet serving) server.
    pub fn new(config: Config) -> Result<Self, im_common::config::ConfigError> {
        config.validate()?;
        let ttl = Duration::from_secs(config.pending_login_ttl_secs);
        let metrics = Metrics::new();
        let shared = Arc::new(Shared {
            config,
            table: MsgServerTable::new(ttl),
            metrics,
            msg_server_links: ConnRegistry::new(),
            legacy_links: ConnRegistry::new(),
            http_addr: std::sync::OnceLock::new(),
        });
        register_computed(&shared);
        Ok(LoginServer { shared })
    }

    /// Every registered msg_server, in registration order.
    pub fn msg_servers(&self) -> Vec<MsgServerStatus> {
        self.shared.table.snapshot(Instant::now())
    }

    /// Drains (`undrain` false) or undrains the msg_server named `target` (host name,
    /// `ip1:port` or `ip2:port`), as the admin drain command does.
    pub fn drain(&self, target: &str, undrain: bool) -> DrainOutcome {
        let outcome = self.shared.table.drain(target, undrain);
        if let DrainOutcome::Applied(names) = &outcome {
            tracing::info!(target_name = target, undrain, servers = ?names, "msg_server drain changed");
        }
        outcome
    }

    /// Logins handed out since start.
    pub fn assignments_total(&self) -> u64 {
        self.shared.table.assignments_total()
    }

    /// Logins refused since start (none registered, or all full or draining).
    pub fn refusals_total(&self) -> u64 {
        self.shared.refusals_total()
    }

    /// This server's metrics (also served on `/metrics`).
    pub fn metrics(&self) -> &Registry {
        &self.shared.metrics.registry
    }
}

/// Gauges read from the table when rendered, so the table is the only place they live.
fn register_computed(shared: &Arc<Shared>) {
    let r = &shared.metrics.registry;
    let weak = Arc::downgrade(shared);
    let read = move |f: fn(&Shared) -> u64| {
        let weak = weak.clone();
        move || weak.upgrade().map_or(0.0, |s| f(&s) as f64)
    };
    r.computed(
        "msg_servers",
        "Registered msg_servers.",
        "gauge",
        read(|s| s.table.len() as u64),
    );
    r.computed(
        "msg_server_users",
        "Authenticated connections reported by all msg_servers.",
        "gauge",
        read(|s| s.table.totals().0),
    );
    r.computed(
        "msg_server_capacity",
        "Sum of the registered msg_servers' max_conn_cnt.",
        "gauge",
        read(|s| s.table.totals().1),
    );
    r.computed(
        "pending_logins",
        "Logins handed out and not yet reported by their msg_server.",
        "gauge",
        read(|s| s.table.totals().2),
    );
    r.computed(
        "pending_expired_total",
        "Handed-out logins never reported within pending_login_ttl_secs.",
        "counter",
        read(|s| s.table.pending_expired_total()),
    );
}
