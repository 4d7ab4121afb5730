//! What the servers said: per server the last two stats snapshots, the rates computed from
//! them, a short history of msgs/s, and whether the server answers. Everything here is data
//! and pure functions over it; nothing draws and nothing does I/O.
//!
//! Servers report monotonic totals (IM.Admin.proto: "rates are computed by the reader from two
//! snapshots"), so every rate is `(total now - total before) / (time between the answers)`,
//! timed by when imctl received each answer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use im_proto::admin::{
    ConnInfo, ImAdminConnListRsp, ImAdminMsgServerListRsp, RouteEntry, ServerState, ServerStats,
};
use serde::Serialize;

pub use super::rates::{CommandRate, LinkRate, Rates, rates};

/// msgs/s values kept per server for its sparkline: two minutes at the default interval.
pub const HISTORY_LEN: usize = 120;

/// Server kinds, as named in the imctl config and by the servers themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// login_server.
    LoginServer,
    /// route_server.
    RouteServer,
    /// msg_server.
    MsgServer,
    /// db_proxy_server.
    DbProxyServer,
    /// file_server.
    FileServer,
    /// push_server.
    PushServer,
    /// msfs.
    Msfs,
    /// http_msg_server.
    HttpMsgServer,
}

impl Kind {
    /// Every kind, in display order (as `config::SERVER_KINDS`).
    pub const ALL: [Kind; 8] = [
        Kind::LoginServer,
        Kind::RouteServer,
        Kind::MsgServer,
        Kind::DbProxyServer,
        Kind::FileServer,
        Kind::PushServer,
        Kind::Msfs,
        Kind::HttpMsgServer,
    ];

    /// The config / wire name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LoginServer => "login_server",
            Kind::RouteServer => "route_server",
            Kind::MsgServer => "msg_server",
            Kind::DbProxyServer => "db_proxy_server",
            Kind::FileServer => "file_server",
            Kind::PushServer => "push_server",
            Kind::Msfs => "msfs",
            Kind::HttpMsgServer => "http_msg_server",
        }
    }

    /// file_server, push_server, msfs and http_msg_server: the servers of the service panel.
    pub fn is_service(self) -> bool {
        matches!(
            self,
            Kind::FileServer | Kind::PushServer | Kind::Msfs | Kind::HttpMsgServer
        )
    }

    /// The kind named `s`, if imctl knows it.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One server to watch: its kind and admin address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Kind as configured.
    pub kind: Kind,
    /// Admin address (`host:port`).
    pub admin_addr: String,
}

/// What one poll of a server brought back.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    /// The name the server gave when we authenticated.
    pub name: String,
    /// IMAdminStatsRsp's stats.
    pub stats: ServerStats,
    /// login_server only: its msg_server table.
    pub msg_servers: Option<ImAdminMsgServerListRsp>,
}

/// A poller's report about server `index` (an index into [`State::servers`]).
#[derive(Debug, Clone)]
pub struct PollUpdate {
    /// Which server.
    pub index: usize,
    /// When the answer (or the failure) arrived.
    pub at: Instant,
    /// The answer, or why there is none.
    pub result: Result<Box<Polled>, String>,
}

/// One answer and when it arrived.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Arrival time.
    pub at: Instant,
    /// What the server said.
    pub polled: Polled,
}

/// Whether a server answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// No answer and no failure yet (top just started).
    Pending,
    /// The last poll was answered.
    Up,
    /// The last poll failed.
    Down {
        /// When it stopped answering (first failure in a row).
        since: Instant,
        /// The last error.
        error: String,
    },
}

/// One watched server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Kind and admin address.
    pub endpoint: Endpoint,
    /// Answering or not.
    pub health: Health,
    /// The answer before `last`.
    pub prev: Option<Sample>,
    /// The latest answer (kept while the server is down, to show what it last said).
    pub last: Option<Sample>,
    /// Rates between `prev` and `last`; `None` until two answers of the same process arrived.
    pub rates: Option<Rates>,
    /// msgs/s (in) after each answer, oldest first, at most [`HISTORY_LEN`].
    pub history: VecDeque<f64>,
}

impl Server {
    /// A server not heard from yet.
    pub fn new(endpoint: Endpoint) -> Self {
        Server {
            endpoint,
            health: Health::Pending,
            prev: None,
            last: None,
            rates: None,
            history: VecDeque::new(),
        }
    }

    /// The last stats, if any answer arrived.
    pub fn stats(&self) -> Option<&ServerStats> {
        self.last.as_ref().map(|s| &s.polled.stats)
    }

    /// Display name: what the server calls itself, else `kind@admin address`.
    pub fn name(&self) -> String {
        match &self.last {
            Some(s) if !s.polled.name.is_empty() => s.polled.name.clone(),
            Some(s) if !s.polled.stats.server_name().is_empty() => {
                s.polled.stats.server_name().to_owned()
            }
            _ => format!("{}@{}", self.endpoint.kind.name(), self.endpoint.admin_addr),
        }
    }

    /// True when the last poll was answered.
    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }

    /// True when the last poll failed.
    pub fn is_down(&self) -> bool {
        matches!(self.health, Health::Down { .. })
    }

    /// "up", "draining", "stopping", "down" or "pending".
    pub fn state_name(&self) -> &'static str {
        match (&self.health, self.stats()) {
            (Health::Pending, _) => "pending",
            (Health::Down { .. }, _) => "down",
            (Health::Up, Some(s)) => match s.state() {
                ServerState::Up => "up",
                ServerState::Draining => "draining",
                ServerState::Stopping => "stopping",
            },
            (Health::Up, None) => "up",
        }
    }

    /// Client-facing address (from the stats), else the admin address.
    pub fn address(&self) -> String {
        match self.stats().map(|s| s.listen_addr()) {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => self.endpoint.admin_addr.clone(),
        }
    }

    /// Open connections of logged-in clients: (PC, mobile). Type 0 (not logged in, or server
    /// links) is left out.
    pub fn clients(&self) -> (u64, u64) {
        let Some(s) = self.stats() else {
            return (0, 0);
        };
        s.connections
            .iter()
            .fold((0, 0), |(pc, mobile), c| match c.client_type() {
                0x01 | 0x02 => (pc + u64::from(c.count()), mobile),
                0x11 | 0x12 => (pc, mobile + u64::from(c.count())),
                _ => (pc, mobile),
            })
    }

    /// Every open connection on the main listener, whatever its type.
    pub fn connections(&self) -> u64 {
        self.stats()
            .map(|s| s.connections.iter().map(|c| u64::from(c.count())).sum())
            .unwrap_or(0)
    }

    /// Sum of a generic metric over its labels: every entry named `name` or `name{...}`.
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let s = self.stats()?;
        let mut found = None;
        for m in &s.metrics {
            if metric_base(m.name()) == name {
                *found.get_or_insert(0.0) += m.value();
            }
        }
        found
    }

    /// Sum of a monotonic metric's rates over its labels.
    pub fn metric_rate(&self, name: &str) -> Option<f64> {
        let r = self.rates.as_ref()?;
        let mut found = None;
        for (n, v) in &r.metrics {
            if metric_base(n) == name {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// The service panel's figures, read from the generic metrics by name (see
    /// [`ServiceFigures`]).
    pub fn service_figures(&self) -> ServiceFigures {
        let st = self.stats();
        let sum = |keep: &dyn Fn(&str) -> bool, values: &mut dyn Iterator<Item = (&str, f64)>| {
            values
                .filter(|(n, _)| keep(metric_base(n)))
                .map(|(_, v)| v)
                .reduce(|a, b| a + b)
        };
        let gauges = || {
            st.into_iter()
                .flat_map(|s| s.metrics.iter())
                .filter(|m| !m.monotonic())
                .map(|m| (m.name(), m.value()))
        };
        let rates = || {
            self.rates
                .iter()
                .flat_map(|r| r.metrics.iter())
                .map(|(n, v)| (n.as_str(), *v))
        };
        ServiceFigures {
            transfers: sum(&|n| n.contains("transfers"), &mut gauges()),
            bytes_per_sec: sum(&|n| n.ends_with("bytes_total"), &mut rates()),
            pushes_sent_per_sec: sum(&|n| n == "pushes_sent_total", &mut rates()),
            pushes_failed_per_sec: sum(&|n| n == "pushes_failed_total", &mut rates()),
            requests_per_sec: sum(&|n| n == "requests_total", &mut rates())
                .or_else(|| sum(&|n| n == "http_requests_total", &mut rates())),
            queue: sum(&|n| n == "queue_depth", &mut gauges())
                .map_or_else(|| st.map_or(0, |s| s.outbound_queue_depth()), |q| q as u64),
        }
    }

    /// How long the server has been down, at `now`.
    pub fn down_for(&self, now: Instant) -> Option<Duration> {
        match &self.health {
            Health::Down { since, .. } => Some(now.saturating_duration_since(*since)),
            _ => None,
        }
    }
}

/// A metric's name without its labels.
pub fn metric_base(name: &str) -> &str {
    name.split_once('{').map_or(name, |(base, _)| base)
}

/// What the service panel shows of file_server, push_server, msfs and http_msg_server. They
/// report these through the generic metric list, found by name: gauges whose name contains
/// `transfers` are transfers in progress; counters ending in `bytes_total` add up to bytes/s;
/// `pushes_sent_total` / `pushes_failed_total` (any labels) are pushes; `requests_total` (else
/// `http_requests_total`) are requests; the `queue_depth` gauge (else the outbound queues) is
/// the queue. `None`: the server reports no such metric (or no rate yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// Transfers in progress.
    pub transfers: Option<f64>,
    /// Bytes per second, all directions.
    pub bytes_per_sec: Option<f64>,
    /// Pushes the providers accepted, per second.
    pub pushes_sent_per_sec: Option<f64>,
    /// Pushes given up on, per second.
    pub pushes_failed_per_sec: Option<f64>,
    /// Requests per second.
    pub requests_per_sec: Option<f64>,
    /// Work queued.
    pub queue: u64,
}

/// The connections of one server, as last fetched for the drill-down.
#[derive(Debug, Clone)]
pub struct ConnsDetail {
    /// Which server (index into [`State::servers`]).
    pub server: usize,
    /// When the answer arrived.
    pub at: Instant,
    /// The answer, or why there is none.
    pub result: Result<ImAdminConnListRsp, String>,
}

/// Where a user is connected: route_server's entry, and the connections each msg_server
/// lists for the user (route_server names msg_servers by their link's address, which imctl
/// cannot tie to a msg_server; the msg_servers' own lists can).
#[derive(Debug, Clone)]
pub struct Located {
    /// The user asked about.
    pub user_id: u32,
    /// route_server's entry (`None`: not connected anywhere), or why there is no answer.
    pub result: Result<Option<RouteEntry>, String>,
    /// (msg_server index into [`State::servers`], the user's connections there), for every
    /// answering msg_server where the user has one.
    pub conns: Vec<(usize, Vec<ConnInfo>)>,
}

/// Answers to the drill-down requests the loop sent.
#[derive(Debug, Clone)]
pub enum Detail {
    /// IMAdminConnListRsp.
    Conns(ConnsDetail),
    /// IMAdminLocateUserRsp.
    Located(Located),
    /// IMAdminKickUserRsp: the user and the connections closed (`None`: no matching one).
    Kicked {
        /// The user.
        user_id: u32,
        /// Connections closed, or why the kick failed.
        result: Result<Option<u32>, String>,
    },
}

/// Everything the servers said.
#[derive(Debug, Clone)]
pub struct State {
    /// Watched servers, in config order.
    pub servers: Vec<Server>,
    /// Poll interval.
    pub interval: Duration,
    /// The time the screen shows (ages and "down for" are computed against it).
    pub now: Instant,
    /// Drill-down: connections of one server.
    pub conns: Option<ConnsDetail>,
    /// `u`: where a user is connected.
    pub located: Option<Located>,
}

impl State {
    /// No answers yet from `endpoints`.
    pub fn new(endpoints: Vec<Endpoint>, interval: Duration, now: Instant) -> Self {
        State {
            servers: endpoints.into_iter().map(Server::new).collect(),
            interval,
            now,
            conns: None,
            located: None,
        }
    }

    /// Takes a poller's report.
    pub fn apply(&mut self, u: PollUpdate) {
        self.now = self.now.max(u.at);
        let Some(s) = self.servers.get_mut(u.index) else {
            return;
        };
        match u.result {
            Ok(polled) => {
                let sample = Sample {
                    at: u.at,
                    polled: *polled,
                };
                // A sample taken while the server was down does not pair with the one after:
                // the gap would average the rate over the outage.
                let was_up = s.is_up();
                s.prev = if was_up { s.last.take() } else { None };
                s.rates = s.prev.as_ref().and_then(|p| rates(p, &sample));
                s.last = Some(sample);
                s.health = Health::Up;
                if let Some(r) = &s.rates {
                    s.history.push_back(r.msgs_in);
                    while s.history.len() > HISTORY_LEN {
                        s.history.pop_front();
                    }
                }
            }
            Err(error) => {
                let since = match &s.health {
                    Health::Down { since, .. } => *since,
                    _ => u.at,
                };
                s.health = Health::Down { since, error };
                s.rates = None;
            }
        }
    }

    /// Takes a drill-down answer.
    pub fn apply_detail(&mut self, d: Detail) {
        match d {
            Detail::Conns(c) => self.conns = Some(c),
            Detail::Located(l) => self.located = Some(l),
            Detail::Kicked { .. } => {}
        }
    }

    /// Servers of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (usize, &Server)> {
        self.servers
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.endpoint.kind == kind)
    }

    /// The route_server whose client-facing address is `addr` (as msg_servers name it in
    /// their upstream links); an exact match first, else the same port (a server listening
    /// on 0.0.0.0 reports that address).
    pub fn route_server_at(&self, addr: &str) -> Option<&Server> {
        let routes: Vec<&Server> = self.of_kind(Kind::RouteServer).map(|(_, s)| s).collect();
        routes
            .iter()
            .find(|s| s.address() == addr)
            .or_else(|| {
                let port = addr.rsplit_once(':').map(|(_, p)| p)?;
                routes
                    .iter()
                    .find(|s| s.address().rsplit_once(':').map(|(_, p)| p) == Some(port))
            })
            .copied()
    }

    /// Cluster-wide sums.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for (_, s) in self.of_kind(Kind::MsgServer) {
            let (pc, mobile) = s.clients();
            if s.is_up() {
                t.users_pc += pc;
                t.users_mobile += mobile;
            }
            if let Some(r) = &s.rates {
                t.msgs_in_per_sec += r.msgs_in;
                t.msgs_out_per_sec += r.msgs_out;
                t.logins_per_sec += r.logins;
            }
        }
        t.users_online = self
            .of_kind(Kind::RouteServer)
            .filter(|(_, s)| s.is_up())
            .filter_map(|(_, s)| s.stats().map(|st| st.table_size()))
            .max();
        t
    }
}

/// Cluster-wide sums over the msg_servers that answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Distinct users online as route_server counts them (`None` without a route_server).
    pub users_online: Option<u64>,
    /// PC connections.
    pub users_pc: u64,
    /// Mobile connections.
    pub users_mobile: u64,
    /// Messages received from clients per second.
    pub msgs_in_per_sec: f64,
    /// Messages delivered to clients per second.
    pub msgs_out_per_sec: f64,
    /// Logins per second.
    pub logins_per_sec: f64,
}
