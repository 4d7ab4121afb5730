//! Per-second rates from two stats snapshots of one server: `(total now - total before) /
//! (time between the answers)`, timed by when imctl received each answer.

use std::collections::BTreeMap;

use im_proto::admin::LinkState;
use serde::Serialize;

use super::state::Sample;

/// Per-second rates of one server between its last two answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Seconds between the two answers.
    pub secs: f64,
    /// Messages received from clients (msg_server), stored (db_proxy).
    pub msgs_in: f64,
    /// Messages delivered to clients.
    pub msgs_out: f64,
    /// Logins (msg_server), assignments (login_server).
    pub logins: f64,
    /// PDUs sent to route_servers (msg_server) or msg_servers (route_server).
    pub routed_out: f64,
    /// PDUs received from route_servers / msg_servers.
    pub routed_in: f64,
    /// CPU use in percent of one core.
    pub cpu_percent: f64,
    /// db_proxy: share of the time its single storage writer spent committing, in percent.
    pub writer_busy_percent: Option<f64>,
    /// Requests per second by command name (db_proxy).
    pub commands: BTreeMap<String, CommandRate>,
    /// Every monotonic generic metric, per second, by name with labels.
    pub metrics: BTreeMap<String, f64>,
    /// Upstream links, by `kind@addr`: PDUs per second each way.
    pub links: BTreeMap<String, LinkRate>,
}

/// Requests and errors per second of one command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CommandRate {
    /// Requests per second.
    pub requests: f64,
    /// Errors per second.
    pub errors: f64,
}

/// PDUs per second on one upstream link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkRate {
    /// Received from the peer.
    pub pdus_in: f64,
    /// Sent to the peer.
    pub pdus_out: f64,
}

/// `(now - before) / secs`; a counter that went backwards (a link reconnected, counting from
/// zero again) gives its new value over the interval.
fn per_sec(before: u64, now: u64, secs: f64) -> f64 {
    let delta = if now >= before { now - before } else { now };
    delta as f64 / secs
}

/// Rates between two answers of one server; `None` when they are not comparable (no time
/// between them, or the server restarted: its uptime went backwards).
pub fn rates(prev: &Sample, cur: &Sample) -> Option<Rates> {
    let secs = cur.at.checked_duration_since(prev.at)?.as_secs_f64();
    let (a, b) = (&prev.polled.stats, &cur.polled.stats);
    if secs <= 0.0 || b.uptime_ms() < a.uptime_ms() {
        return None;
    }
    let mut commands = BTreeMap::new();
    for c in &b.commands {
        let before = a.commands.iter().find(|p| p.command_id() == c.command_id());
        let name = if c.name().is_empty() {
            format!("0x{:04x}", c.command_id())
        } else {
            c.name().to_owned()
        };
        commands.insert(
            name,
            CommandRate {
                requests: per_sec(
                    before.map_or(0, |p| p.requests_total()),
                    c.requests_total(),
                    secs,
                ),
                errors: per_sec(
                    before.map_or(0, |p| p.errors_total()),
                    c.errors_total(),
                    secs,
                ),
            },
        );
    }
    let mut metrics = BTreeMap::new();
    for m in b.metrics.iter().filter(|m| m.monotonic()) {
        let before = a
            .metrics
            .iter()
            .find(|p| p.name() == m.name())
            .map_or(0.0, |p| p.value());
        let delta = if m.value() >= before {
            m.value() - before
        } else {
            m.value()
        };
        metrics.insert(m.name().to_owned(), delta / secs);
    }
    let mut links = BTreeMap::new();
    for l in &b.upstreams {
        let before = a
            .upstreams
            .iter()
            .find(|p| p.kind() == l.kind() && p.addr() == l.addr());
        let rate = if l.state() == LinkState::Connected {
            LinkRate {
                pdus_in: per_sec(
                    before.map_or(0, |p| p.pdus_in_total()),
                    l.pdus_in_total(),
                    secs,
                ),
                pdus_out: per_sec(
                    before.map_or(0, |p| p.pdus_out_total()),
                    l.pdus_out_total(),
                    secs,
                ),
            }
        } else {
            LinkRate::default()
        };
        links.insert(format!("{}@{}", l.kind(), l.addr()), rate);
    }
    Some(Rates {
        secs,
        msgs_in: per_sec(a.msgs_in_total(), b.msgs_in_total(), secs),
        msgs_out: per_sec(a.msgs_out_total(), b.msgs_out_total(), secs),
        logins: per_sec(a.logins_total(), b.logins_total(), secs),
        routed_out: per_sec(a.routed_out_total(), b.routed_out_total(), secs),
        routed_in: per_sec(a.routed_in_total(), b.routed_in_total(), secs),
        cpu_percent: per_sec(a.cpu_time_ms(), b.cpu_time_ms(), secs) / 10.0,
        writer_busy_percent: match (&a.storage, &b.storage) {
            (Some(x), Some(y)) if y.writer_busy_micros_total.is_some() => Some(
                per_sec(
                    x.writer_busy_micros_total(),
                    y.writer_busy_micros_total(),
                    secs,
                ) / 10_000.0,
            ),
            _ => None,
        },
        commands,
        metrics,
        links,
    })
}
