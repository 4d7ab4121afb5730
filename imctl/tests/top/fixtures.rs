//! Fixed cluster states built in code: a healthy cluster, the same with one msg_server down,
//! and with a slow consumer. Thirty answers one second apart give every server rates and a
//! sparkline; every number is a function of the step, so the screens are the same every run.

use std::time::{Duration, Instant};

use im_proto::admin::{
    ClientTypeCount, CommandStat, ConnInfo, ImAdminConnListRsp, ImAdminMsgServerListRsp, Latency,
    LinkState, Metric, MsgServerLoad, RouteEntry, ServerStats, StorageStats, UpstreamLink,
    UserLocation,
};
use imctl::top::state::{ConnsDetail, Endpoint, Kind, Located, PollUpdate, Polled, State};

/// Answers per server in a fixture.
pub const STEPS: u64 = 30;

/// The watched servers: login, route, three msg_servers, db_proxy, push_server, file_server.
pub fn endpoints() -> Vec<Endpoint> {
    [
        (Kind::LoginServer, "127.0.0.1:18080"),
        (Kind::RouteServer, "127.0.0.1:18200"),
        (Kind::MsgServer, "127.0.0.1:18000"),
        (Kind::MsgServer, "127.0.0.1:18001"),
        (Kind::MsgServer, "127.0.0.1:18002"),
        (Kind::DbProxyServer, "127.0.0.1:20600"),
        (Kind::PushServer, "127.0.0.1:18500"),
        (Kind::FileServer, "127.0.0.1:18600"),
    ]
    .into_iter()
    .map(|(kind, a)| Endpoint {
        kind,
        admin_addr: a.to_owned(),
    })
    .collect()
}

/// Sum of `per_step(i)` for the steps before `step`: a counter's total at `step`.
fn total(step: u64, per_step: impl Fn(u64) -> u64) -> u64 {
    (0..step).map(per_step).sum()
}

/// A wave so sparklines have a shape.
fn wave(i: u64, base: u64, amp: u64) -> u64 {
    base + amp * ((i * 3) % 7)
}

fn lat(p50: u64, p99: u64) -> Option<Latency> {
    Some(Latency {
        p50_micros: Some(p50),
        p99_micros: Some(p99),
        max_micros: Some(p99 * 4),
        count: Some(1000),
    })
}

fn conns(list: &[(u32, u32)]) -> Vec<ClientTypeCount> {
    list.iter()
        .map(|&(t, n)| ClientTypeCount {
            client_type: Some(t),
            count: Some(n),
        })
        .collect()
}

fn link(kind: &str, addr: &str, rtt: u64, step: u64, per_step: u64) -> UpstreamLink {
    UpstreamLink {
        kind: Some(kind.into()),
        addr: Some(addr.into()),
        state: Some(LinkState::Connected as i32),
        rtt_micros: Some(rtt),
        pdus_in_total: Some(total(step, |i| wave(i, per_step, 1))),
        pdus_out_total: Some(total(step, |i| wave(i, per_step + 2, 1))),
        reconnects_total: Some(0),
        state_age_ms: Some(3_600_000),
        queue_depth: Some(0),
    }
}

fn common(name: &str, listen: &str, step: u64, cpu_ms_per_s: u64, rss_mb: u64) -> ServerStats {
    ServerStats {
        server_name: Some(name.into()),
        version: Some("0.1.0".into()),
        uptime_ms: Some(7_200_000 + step * 1000),
        listen_addr: Some(listen.into()),
        rss_bytes: Some(rss_mb * 1_048_576),
        cpu_time_ms: Some(600_000 + step * cpu_ms_per_s),
        ..ServerStats::default()
    }
}

fn msg_server(n: u64, step: u64) -> ServerStats {
    let load = [40, 25, 10][n as usize];
    let mut s = common(
        &format!("msg_server-{}", n + 1),
        &format!("10.0.0.{}:8000", 11 + n),
        step,
        120 + 40 * n,
        38 + 9 * n,
    );
    s.connections = conns(&[
        (0, 1),
        (1, 300 + 10 * load as u32),
        (2, 40),
        (0x11, 120 + load as u32),
        (0x12, 90),
    ]);
    s.logins_total = Some(5_000 + total(step, |i| wave(i, 1, 1)));
    // Each server's wave has its own phase, so the sparklines differ.
    s.msgs_in_total = Some(1_000_000 + total(step, |i| wave(i + 2 * n, load, load / 10)));
    s.msgs_out_total = Some(1_100_000 + total(step, |i| wave(i + 2 * n, load + 3, load / 10)));
    s.routed_out_total = Some(400_000 + total(step, |i| wave(i, load / 2, 1)));
    s.routed_in_total = Some(380_000 + total(step, |i| wave(i, load / 2, 2)));
    s.ack_latency = lat(900 + 100 * n, 4_200 + 700 * n);
    s.outbound_queue_depth = Some(3 + n);
    s.outbound_queue_max = Some(2);
    s.slow_consumers = Some(0);
    s.upstreams = vec![
        link("db_proxy_server", "127.0.0.1:10600", 250, step, load),
        link(
            "route_server",
            "127.0.0.1:8200",
            310 + 20 * n,
            step,
            load / 2,
        ),
        link("login_server", "127.0.0.1:8100", 280, step, 0),
    ];
    s.table_size = Some(500 + 10 * load);
    s
}

fn stats(kind: Kind, index: usize, step: u64) -> Polled {
    let (stats, msg_servers) = match kind {
        Kind::LoginServer => {
            let mut s = common("login_server-1", "127.0.0.1:8080", step, 20, 14);
            s.connections = conns(&[(0, 4)]);
            s.logins_total = Some(9_000 + total(step, |i| wave(i, 3, 1)));
            s.table_size = Some(3);
            let list = ImAdminMsgServerListRsp {
                result_code: Some(0),
                servers: (0..3)
                    .map(|n| MsgServerLoad {
                        host_name: Some(format!("msg_server-{}", n + 1)),
                        ip1: Some(format!("10.0.0.{}", 11 + n)),
                        port: Some(8000),
                        ..MsgServerLoad::default()
                    })
                    .collect(),
                assignments_total: Some(9_000),
            };
            (s, Some(list))
        }
        Kind::RouteServer => {
            let mut s = common("route_server-1", "127.0.0.1:8200", step, 60, 22);
            s.connections = conns(&[(0, 3)]);
            s.table_size = Some(1_630);
            s.routed_in_total = Some(1_000_000 + total(step, |i| wave(i, 37, 4)));
            s.routed_out_total = Some(990_000 + total(step, |i| wave(i, 35, 4)));
            (s, None)
        }
        Kind::MsgServer => (msg_server(index as u64 - 2, step), None),
        Kind::DbProxyServer => {
            let mut s = common("db_proxy_server-1", "127.0.0.1:10600", step, 210, 64);
            s.connections = conns(&[(0, 3)]);
            s.msgs_in_total = Some(3_000_000 + total(step, |i| wave(i, 75, 15)));
            s.storage = Some(StorageStats {
                backend: Some("sqlite".into()),
                cache: Some("embedded".into()),
                write_latency: lat(800, 2_100),
                read_latency: lat(120, 450),
                pool_in_use: Some(1),
                pool_size: Some(4),
                group_commits_total: Some(100_000),
                writes_total: Some(3_000_000),
                writer_busy_micros_total: Some(total(step, |i| wave(i, 400_000, 50_000))),
                write_queue: Some(12),
            });
            let cmd = |id: u32, name: &str, per: u64, p99: u64, errors: u64| CommandStat {
                command_id: Some(id),
                name: Some(name.into()),
                requests_total: Some(100_000 + total(step, |i| wave(i, per, per / 5))),
                errors_total: Some(errors),
                latency: lat(p99 / 3, p99),
            };
            s.commands = vec![
                cmd(0x0301, "CID_MSG_DATA", 75, 2_100, 0),
                cmd(0x0303, "CID_MSG_READ_ACK", 40, 900, 0),
                cmd(0x0302, "CID_MSG_UNREAD_CNT_REQUEST", 6, 700, 0),
                cmd(0x0305, "CID_MSG_LIST_REQUEST", 4, 1_900, 0),
                cmd(0x0703, "CID_OTHER_VALIDATE_REQ", 3, 5_400, 2),
            ];
            (s, None)
        }
        Kind::FileServer => {
            let mut s = common("file_server-1", "127.0.0.1:8600", step, 30, 25);
            s.connections = conns(&[(0, 7)]);
            let m = |name: &str, value: u64, monotonic: bool| Metric {
                name: Some(name.into()),
                value: Some(value as f64),
                monotonic: Some(monotonic),
            };
            s.metrics = vec![
                m("transfers_active", 2, false),
                m("transfers_completed_total", 40 + step / 10, true),
                m(
                    "sent_bytes_total",
                    total(step, |i| wave(i, 700_000, 90_000)),
                    true,
                ),
                m("received_bytes_total", total(step, |_| 650_000), true),
            ];
            (s, None)
        }
        _ => {
            let mut s = common("push_server-1", "127.0.0.1:8500", step, 15, 18);
            s.connections = conns(&[(0, 3)]);
            let m = |name: &str, value: u64, monotonic: bool| Metric {
                name: Some(name.into()),
                value: Some(value as f64),
                monotonic: Some(monotonic),
            };
            s.metrics = vec![
                m(
                    "pushes_sent_total{provider=\"apns\"}",
                    total(step, |i| wave(i, 4, 1)),
                    true,
                ),
                m(
                    "pushes_sent_total{provider=\"fcm\"}",
                    total(step, |_| 2),
                    true,
                ),
                m(
                    "pushes_failed_total{provider=\"apns\"}",
                    total(step, |i| i % 2),
                    true,
                ),
                m("queue_depth", 7, false),
            ];
            (s, None)
        }
    };
    Polled {
        name: stats.server_name().to_owned(),
        stats,
        msg_servers,
    }
}

/// A state after [`STEPS`] answers, with `tweak(index, step, stats)` applied to every answer
/// and the servers in `down` failing from step `down_from` on.
pub fn build(
    down: &[usize],
    down_from: u64,
    tweak: impl Fn(usize, u64, &mut ServerStats),
) -> State {
    let base = Instant::now();
    let eps = endpoints();
    let mut state = State::new(eps.clone(), Duration::from_secs(1), base);
    for step in 0..STEPS {
        let at = base + Duration::from_secs(step);
        for (index, e) in eps.iter().enumerate() {
            let result = if down.contains(&index) && step >= down_from {
                Err(format!(
                    "connecting to admin port {}: Connection refused (os error 111)",
                    e.admin_addr
                ))
            } else {
                let mut p = stats(e.kind, index, step);
                tweak(index, step, &mut p.stats);
                Ok(Box::new(p))
            };
            state.apply(PollUpdate { index, at, result });
        }
    }
    state
}

/// Every server up and quiet enough.
pub fn healthy() -> State {
    build(&[], 0, |_, _, _| {})
}

/// msg_server-2 (index 3) stopped answering 12 s ago.
pub fn one_down() -> State {
    build(&[3], STEPS - 13, |_, _, _| {})
}

/// msg_server-1 (index 2) has a slow consumer: one connection's queue is 1500 deep.
pub fn slow_consumer() -> State {
    build(&[], 0, |index, step, s| {
        if index == 2 && step > 20 {
            s.slow_consumers = Some(1);
            s.outbound_queue_max = Some(1_500);
            s.outbound_queue_depth = Some(1_520);
        }
    })
}

fn conn(id: u64, user: u32, ct: u32, msgs: u64, queue: u32) -> ConnInfo {
    ConnInfo {
        conn_id: Some(id),
        user_id: Some(user),
        client_type: Some(ct),
        peer_addr: Some(format!("192.168.1.{}:{}", 10 + id, 50_000 + id)),
        age_ms: Some(60_000 * id),
        bytes_in: Some(msgs * 180),
        bytes_out: Some(msgs * 210),
        msgs_in: Some(msgs),
        msgs_out: Some(msgs + 7),
        queue_depth: Some(queue),
        pending_acks: Some(queue / 10),
    }
}

/// `state` with the connections of msg_server-1 fetched.
pub fn with_conns(mut state: State) -> State {
    state.conns = Some(ConnsDetail {
        server: 2,
        at: state.now,
        result: Ok(ImAdminConnListRsp {
            result_code: Some(0),
            conns: vec![
                conn(7, 1001, 1, 4_200, 0),
                conn(3, 1002, 0x12, 3_100, 1_500),
                conn(9, 1001, 0x11, 1_900, 0),
                conn(12, 1017, 2, 650, 2),
                conn(15, 0, 0, 0, 0),
            ],
            total: Some(5),
        }),
    });
    state
}

/// `state` with user 1001 located on two msg_servers.
pub fn with_located(mut state: State) -> State {
    let loc = |server: &str, ct: i32, n: u32| UserLocation {
        msg_server: Some(server.into()),
        client_type: Some(ct),
        connections: Some(n),
    };
    state.located = Some(Located {
        user_id: 1001,
        result: Ok(Some(RouteEntry {
            user_id: Some(1001),
            locations: vec![
                loc("10.0.0.11:41822", 1, 1),
                loc("10.0.0.11:41822", 0x11, 1),
            ],
            wire_status: Some(1),
        })),
        conns: vec![(
            2,
            vec![conn(7, 1001, 1, 4_200, 0), conn(9, 1001, 0x11, 1_900, 0)],
        )],
    });
    state
}
