//! The cluster verdict: one word and the reasons for it, from what the servers said.
//!
//! Rules, most severe first (every matching rule adds a reason; the level is the worst):
//!
//! | level | when |
//! |---|---|
//! | critical | every login_server is down (clients cannot get a msg_server address) |
//! | critical | a db_proxy_server is down (nothing it serves is stored: no acks) |
//! | critical | every route_server is down (no message crosses msg_servers) |
//! | critical | more than half of the msg_servers are down |
//! | degraded | any other server is down, or stopping |
//! | degraded | a server that answers reports an upstream link that is not connected |
//! | degraded | a server has slow consumers right now (connections over the slow mark) |
//! | degraded | a db_proxy's storage write p99 is above [`STORAGE_P99_DEGRADED`] |
//! | busy | a server uses more than [`BUSY_CPU_PERCENT`] of a core |
//! | busy | a connection's outbound queue is deeper than [`BUSY_QUEUE_MAX`] |
//! | busy | an upstream link queues more than [`BUSY_LINK_QUEUE`] frames |
//! | busy | a db_proxy uses every connection of its storage pool |
//! | busy | a db_proxy's storage writer is committing more than [`BUSY_WRITER_PERCENT`] of the time and more than [`BUSY_WRITE_QUEUE`] writes wait |
//! | ok | none of the above |
//!
//! Servers not heard from yet (top just started) count for nothing.

use std::fmt;
use std::time::Duration;

use im_proto::admin::{LinkState, ServerState};
use serde::Serialize;

use super::state::{Kind, State};

/// Storage write p99 above which the cluster is degraded: acks wait for durable writes, so a
/// slow store is what every sender feels.
pub const STORAGE_P99_DEGRADED: Duration = Duration::from_millis(500);
/// CPU use (percent of one core) above which a server is busy.
pub const BUSY_CPU_PERCENT: f64 = 80.0;
/// Deepest outbound queue (PDUs) above which a server is busy: well under msg_server's
/// slow-consumer mark (1000), so "busy" warns before connections are closed.
pub const BUSY_QUEUE_MAX: u64 = 256;
/// Share of the time (percent) a db_proxy's single storage writer spends committing above
/// which it may be busy. A group-committing writer under steady load is committing almost
/// all the time (on MariaDB most of a commit is waiting for the log flush; batches grow
/// instead), so this alone says nothing: it counts with a queue deeper than
/// [`BUSY_WRITE_QUEUE`].
pub const BUSY_WRITER_PERCENT: f64 = 90.0;
/// Writes waiting for the storage writer above which a writer past [`BUSY_WRITER_PERCENT`]
/// is busy: about 50 ms of backlog at 20,000 stores/s.
pub const BUSY_WRITE_QUEUE: u64 = 1_000;
/// Frames queued on one upstream link above which a server is busy.
pub const BUSY_LINK_QUEUE: u64 = 1000;

/// How bad things are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Loaded, still serving well.
    Busy,
    /// Something is wrong; users may notice.
    Degraded,
    /// The cluster cannot do its job.
    Critical,
}

impl Level {
    /// Upper-case word for the header.
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Busy => "BUSY",
            Level::Degraded => "DEGRADED",
            Level::Critical => "CRITICAL",
        }
    }
}

/// A level and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The worst level found.
    pub level: Level,
    /// Why, worst first.
    pub reasons: Vec<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.level.word(), self.reasons.join("; "))
    }
}

#[derive(Default)]
struct Findings(Vec<(Level, String)>);

impl Findings {
    fn add(&mut self, level: Level, reason: String) {
        self.0.push((level, reason));
    }
}

/// Applies the rules in the module documentation to `state`.
pub fn verdict(state: &State) -> Verdict {
    let mut f = Findings::default();
    for kind in [Kind::LoginServer, Kind::RouteServer] {
        let all: Vec<_> = state.of_kind(kind).collect();
        let down = all.iter().filter(|(_, s)| s.is_down()).count();
        if !all.is_empty() && down == all.len() {
            let what = if all.len() == 1 {
                format!("{} down", kind.name())
            } else {
                format!("every {} down", kind.name())
            };
            f.add(Level::Critical, what);
        }
    }
    for (_, s) in state.of_kind(Kind::DbProxyServer) {
        if s.is_down() {
            f.add(Level::Critical, format!("{} down", s.name()));
        }
    }
    let msg: Vec<_> = state.of_kind(Kind::MsgServer).collect();
    let msg_down = msg.iter().filter(|(_, s)| s.is_down()).count();
    if msg_down * 2 > msg.len() {
        f.add(
            Level::Critical,
            format!("{msg_down} of {} msg_servers down", msg.len()),
        );
    }
    for s in &state.servers {
        let kind = s.endpoint.kind;
        if s.is_down() {
            // Already a critical reason above? Then do not repeat it as "degraded".
            let counted = matches!(kind, Kind::DbProxyServer)
                || (matches!(kind, Kind::LoginServer | Kind::RouteServer)
                    && state.of_kind(kind).all(|(_, o)| o.is_down()))
                || (kind == Kind::MsgServer && msg_down * 2 > msg.len());
            if !counted {
                let age = s
                    .down_for(state.now)
                    .map(|d| format!(" for {}s", d.as_secs()))
                    .unwrap_or_default();
                f.add(Level::Degraded, format!("{} down{age}", s.name()));
            }
            continue;
        }
        let Some(st) = s.stats().filter(|_| s.is_up()) else {
            continue;
        };
        if st.state() == ServerState::Stopping {
            f.add(Level::Degraded, format!("{} stopping", s.name()));
        }
        for l in &st.upstreams {
            if l.state() != LinkState::Connected {
                f.add(
                    Level::Degraded,
                    format!("{}: {} link {} down", s.name(), l.kind(), l.addr()),
                );
            } else if l.queue_depth() > BUSY_LINK_QUEUE {
                f.add(
                    Level::Busy,
                    format!(
                        "{}: {} frames queued to {} {}",
                        s.name(),
                        l.queue_depth(),
                        l.kind(),
                        l.addr()
                    ),
                );
            }
        }
        if st.slow_consumers() > 0 {
            f.add(
                Level::Degraded,
                format!("{} slow consumer(s) on {}", st.slow_consumers(), s.name()),
            );
        }
        if let Some(storage) = &st.storage {
            let p99 = storage.write_latency.as_ref().map_or(0, |l| l.p99_micros());
            if p99 > STORAGE_P99_DEGRADED.as_micros() as u64 {
                f.add(
                    Level::Degraded,
                    format!("{}: storage write p99 {} ms", s.name(), p99 / 1000),
                );
            }
            if storage.pool_size() > 0 && storage.pool_in_use() >= storage.pool_size() {
                f.add(
                    Level::Busy,
                    format!(
                        "{}: storage pool full ({}/{})",
                        s.name(),
                        storage.pool_in_use(),
                        storage.pool_size()
                    ),
                );
            }
        }
        let queue = st.storage.as_ref().map_or(0, |x| x.write_queue());
        if let Some(busy) = s.rates.as_ref().and_then(|r| r.writer_busy_percent)
            && busy > BUSY_WRITER_PERCENT
            && queue > BUSY_WRITE_QUEUE
        {
            f.add(
                Level::Busy,
                format!(
                    "{}: storage writer busy {busy:.0}% ({queue} writes queued)",
                    s.name()
                ),
            );
        }
        if let Some(r) = &s.rates
            && r.cpu_percent > BUSY_CPU_PERCENT
        {
            f.add(
                Level::Busy,
                format!("{} CPU {:.0}%", s.name(), r.cpu_percent),
            );
        }
        if st.outbound_queue_max() > BUSY_QUEUE_MAX {
            f.add(
                Level::Busy,
                format!(
                    "{}: outbound queue {} deep",
                    s.name(),
                    st.outbound_queue_max()
                ),
            );
        }
    }
    f.0.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
    let level = f.0.first().map_or(Level::Ok, |(l, _)| *l);
    let mut reasons: Vec<String> = f.0.into_iter().map(|(_, r)| r).collect();
    if reasons.is_empty() {
        let answering = state.servers.iter().filter(|s| s.is_up()).count();
        let pending = state.servers.len() - answering;
        reasons.push(if pending > 0 {
            format!("{answering} servers answering, waiting for {pending}")
        } else {
            format!("all {answering} servers answering")
        });
    }
    Verdict { level, reasons }
}
