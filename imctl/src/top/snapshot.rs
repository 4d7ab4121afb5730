//! `imctl top --once --json`: the state as our own JSON, verdict included, so scripts need
//! neither the proto nor the rate arithmetic.

use serde::Serialize;

use super::state::{Kind, Rates, Server, ServiceFigures, State, Totals};
use super::verdict::{Verdict, verdict};

/// The whole cluster at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Time between the two polls the rates come from, milliseconds.
    pub interval_ms: u64,
    /// The cluster verdict and its reasons.
    pub verdict: Verdict,
    /// Cluster-wide sums.
    pub totals: Totals,
    /// Every configured server, in config order.
    pub servers: Vec<ServerSnapshot>,
}

/// One server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSnapshot {
    /// Kind as configured.
    pub kind: Kind,
    /// Name the server reports.
    pub name: String,
    /// Admin address polled.
    pub admin_addr: String,
    /// Main listen address (the admin address when unknown).
    pub address: String,
    /// up, draining, stopping, down or pending.
    pub state: &'static str,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Uptime in ms (from the last answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// Open connections on the main listener (all types).
    pub connections: u64,
    /// Logged-in PC connections.
    pub clients_pc: u64,
    /// Logged-in mobile connections.
    pub clients_mobile: u64,
    /// Connections above the slow-consumer mark now.
    pub slow_consumers: u32,
    /// Sum of outbound queue depths.
    pub outbound_queue_depth: u64,
    /// Deepest outbound queue.
    pub outbound_queue_max: u64,
    /// Client send -> ack p99 since start, µs (msg_server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_p99_micros: Option<u64>,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Route table size (route_server: users; login_server: msg_servers; msg_server: users).
    pub table_size: u64,
    /// db_proxy: storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSnapshot>,
    /// Upstream links.
    pub upstreams: Vec<LinkSnapshot>,
    /// file_server, push_server, msfs, http_msg_server: the service panel's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceFigures>,
    /// Per-second rates between the two polls (absent after a single poll or a restart).
    pub rates: Option<Rates>,
}

/// db_proxy's storage.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSnapshot {
    /// sqlite or mysql.
    pub backend: String,
    /// embedded or redis.
    pub cache: String,
    /// Storage connections in use.
    pub pool_in_use: u32,
    /// Storage pool size.
    pub pool_size: u32,
    /// Write p50 since start, µs.
    pub write_p50_micros: u64,
    /// Write p99 since start, µs.
    pub write_p99_micros: u64,
    /// Read p99 since start, µs.
    pub read_p99_micros: u64,
    /// Writes queued and not answered (the writer's share of time is in `rates`).
    pub write_queue: u64,
}

/// One upstream link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkSnapshot {
    /// Peer kind.
    pub kind: String,
    /// Peer address.
    pub addr: String,
    /// connected, connecting or down.
    pub state: String,
    /// Last heartbeat RTT, µs (0 = unknown).
    pub rtt_micros: u64,
    /// Frames queued toward the peer.
    pub queue_depth: u64,
}

impl Snapshot {
    /// The snapshot of `state`.
    pub fn of(state: &State) -> Snapshot {
        Snapshot {
            interval_ms: state.interval.as_millis() as u64,
            verdict: verdict(state),
            totals: state.totals(),
            servers: state.servers.iter().map(server).collect(),
        }
    }
}

fn server(s: &Server) -> ServerSnapshot {
    let st = s.stats().filter(|_| s.is_up()).cloned().unwrap_or_default();
    let (pc, mobile) = if s.is_up() { s.clients() } else { (0, 0) };
    ServerSnapshot {
        kind: s.endpoint.kind,
        name: s.name(),
        admin_addr: s.endpoint.admin_addr.clone(),
        address: s.address(),
        state: s.state_name(),
        error: match &s.health {
            super::state::Health::Down { error, .. } => Some(error.clone()),
            _ => None,
        },
        uptime_ms: s.is_up().then(|| st.uptime_ms()),
        connections: if s.is_up() { s.connections() } else { 0 },
        clients_pc: pc,
        clients_mobile: mobile,
        slow_consumers: st.slow_consumers(),
        outbound_queue_depth: st.outbound_queue_depth(),
        outbound_queue_max: st.outbound_queue_max(),
        ack_p99_micros: st.ack_latency.as_ref().map(|l| l.p99_micros()),
        rss_bytes: st.rss_bytes(),
        table_size: st.table_size(),
        storage: st.storage.as_ref().map(|x| StorageSnapshot {
            backend: x.backend().to_owned(),
            cache: x.cache().to_owned(),
            pool_in_use: x.pool_in_use(),
            pool_size: x.pool_size(),
            write_p50_micros: x.write_latency.as_ref().map_or(0, |l| l.p50_micros()),
            write_p99_micros: x.write_latency.as_ref().map_or(0, |l| l.p99_micros()),
            read_p99_micros: x.read_latency.as_ref().map_or(0, |l| l.p99_micros()),
            write_queue: x.write_queue(),
        }),
        upstreams: st
            .upstreams
            .iter()
            .map(|l| LinkSnapshot {
                kind: l.kind().to_owned(),
                addr: l.addr().to_owned(),
                state: match l.state() {
                    im_proto::admin::LinkState::Connected => "connected",
                    im_proto::admin::LinkState::Connecting => "connecting",
                    im_proto::admin::LinkState::Down => "down",
                }
                .to_owned(),
                rtt_micros: l.rtt_micros(),
                queue_depth: l.queue_depth(),
            })
            .collect(),
        service: (s.is_up() && s.endpoint.kind.is_service()).then(|| s.service_figures()),
        rates: s.rates.clone(),
    }
}
