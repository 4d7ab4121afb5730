//! Fault tests with real processes: the server binaries on loopback, driven by fake clients
//! that verify every message (im-e2e's support code). docs/faults.md says what each test
//! shows and how "lost" is defined; each test prints an `E2E-FAULT` summary row, also
//! collected in target/e2e-faults.md.
//!
//! The scenarios run one at a time (a 2-core machine runs one suite under load at a time);
//! they need the workspace's binaries (`cargo test --workspace` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use im_e2e::group::Members;
use im_e2e::report::secs;
use im_e2e::services::services_available;
use im_e2e::suite::config::{FRESH_GROUP, SMALL_GROUP, SMALL_GROUP_SIZE};
use im_e2e::verify::ids_continue;
use im_e2e::{FaultReport, Load, LoadSpec, Placement, ServerId, StorageKind, Suite, SuiteOptions};
use tokio::time::Instant;

/// One scenario at a time.
static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The load most scenarios run under: 16 conversations, each user sending 8 messages a
/// second to its peer (256 messages/s in all), well below msg_server's 100/s per connection.
fn standard_load() -> LoadSpec {
    LoadSpec::new(16, 8.0)
}

async fn suite(opts: SuiteOptions) -> Suite {
    Suite::start(opts).await.expect("the suite starts")
}

fn users_for(spec: &LoadSpec) -> SuiteOptions {
    SuiteOptions {
        users: spec.users_needed(),
        ..SuiteOptions::default()
    }
}

fn reconnect_note(outcome: &im_e2e::Outcome) -> String {
    match outcome.reconnects() {
        (0, _, _) => "no client reconnected".into(),
        (n, Some(max), Some(median)) => format!(
            "{n} client reconnects via login_server, median {}, slowest {}",
            secs(median),
            secs(max)
        ),
        (n, _, _) => format!("{n} client outages, not all reconnected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_msg_server_under_load() {
    let _gate = GATE.lock().await;
    let spec = standard_load();
    let mut s = suite(users_for(&spec)).await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.kill9(ServerId::Msg(0)).await.unwrap();
    let back = load.wait_all_online(Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let moved = out.logs.iter().filter(|l| !l.outages.is_empty()).count();
    let survivor = s.msg_addr(1).unwrap();
    let all_on_survivor = out.logs.iter().all(|l| l.servers.last() == Some(&survivor));
    FaultReport::new("kill -9 msg_server-1 (of 2)", describe, &out.all)
        .note(reconnect_note(&out))
        .note(format!("all users online again after {}", secs(back)))
        .note(format!("settled in {}", secs(settle)))
        .publish();
    out.assert_clean("kill -9 msg_server");
    assert!(moved > 0, "nobody was on the killed msg_server");
    assert!(all_on_survivor, "every client ends on msg_server-2");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_one_of_two_route_servers_routing_continues() {
    let _gate = GATE.lock().await;
    let spec = standard_load().placed(Placement::Split);
    let mut s = suite(SuiteOptions {
        route_servers: 2,
        ..users_for(&spec)
    })
    .await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Kill the route_server that carries the traffic (the msg_servers' routing target).
    let mut busiest = (ServerId::Route(0), 0);
    for i in 0..2 {
        let id = ServerId::Route(i);
        let routed = s.stats(id).await.unwrap().routed_in_total();
        if routed > busiest.1 {
            busiest = (id, routed);
        }
    }
    assert!(busiest.1 > 0, "no route_server routed anything");
    s.kill9(busiest.0).await.unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let after = out.window((killed, Instant::now()));
    FaultReport::new(
        format!("kill -9 {} (of 2 route_servers)", busiest.0),
        format!("{describe}, every pair split over 2 msg_servers"),
        &out.all,
    )
    .note(format!(
        "{} acked after the kill, {} delivered live",
        after.acked, after.live
    ))
    .note(reconnect_note(&out))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("kill -9 one route_server");
    assert!(after.acked > 0, "nothing was acked after the kill");
    assert_eq!(out.all.synced, 0, "every message must arrive live");
    assert_eq!(out.reconnects().0, 0, "no client was disconnected");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_the_only_route_server_and_restart_it_3s_later() {
    let _gate = GATE.lock().await;
    let spec = standard_load().placed(Placement::Split);
    let mut s = suite(users_for(&spec)).await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let route = ServerId::Route(0);
    s.kill9(route).await.unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.start_server(route).await.unwrap();
    let listening = Instant::now();
    let linked = s
        .wait_links_up("route_server", Duration::from_secs(10))
        .await
        .unwrap();
    let relink = linked.saturating_duration_since(listening);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    // Messages acked from the kill until both msg_servers were registered again: each was
    // stored while nothing could route it.
    let meanwhile = out.window((killed, linked));
    FaultReport::new(
        "kill -9 the only route_server, restarted 3 s later",
        format!("{describe}, every pair split over 2 msg_servers"),
        &out.all,
    )
    .note(format!(
        "{} messages acked while it was down or re-registering, {} of them delivered live \
         (the original leaves 155-441 of 800 undelivered)",
        meanwhile.acked, meanwhile.live
    ))
    .note(format!(
        "msg_servers re-registered {} after it listened",
        secs(relink)
    ))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("route_server restart");
    assert!(
        meanwhile.acked > 100,
        "too few messages acked during the outage: {meanwhile:?}"
    );
    assert_eq!(
        meanwhile.live, meanwhile.acked,
        "every one arrives live: {meanwhile:?}"
    );
    assert_eq!(out.reconnects().0, 0, "no client was disconnected");
    assert!(
        relink < Duration::from_secs(5),
        "route links back after {relink:?}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_db_proxy_on_sqlite_and_restart() {
    let _gate = GATE.lock().await;
    let spec = standard_load();
    let mut s = suite(users_for(&spec)).await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.kill9(ServerId::DbProxy).await.unwrap();
    let (sent0, acked0) = load.progress();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.start_server(ServerId::DbProxy).await.unwrap();
    let listening = Instant::now();
    let linked = s
        .wait_links_up("db_proxy_server", Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let v = &out.all;
    FaultReport::new(
        "kill -9 db_proxy_server (SQLite), restarted 1.5 s later",
        describe,
        v,
    )
    .note(format!(
        "{} sent without an ack (stored anyway: {}); at the kill {sent0} sent / {acked0} acked",
        v.sent - v.acked,
        v.stored_unacked
    ))
    .note(format!(
        "stored twice {}, repeated ids {}",
        v.stored_twice, v.repeated_ids
    ))
    .note(format!(
        "db_proxy links back {} after it listened",
        secs(linked.saturating_duration_since(listening))
    ))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("kill -9 db_proxy");
    assert!(v.sent > v.acked, "the outage should have cost some acks");
    s.shutdown().await.unwrap();
}

fn mariadb_suite(spec: &LoadSpec) -> SuiteOptions {
    SuiteOptions {
        storage: StorageKind::MariadbRedis,
        ..users_for(spec)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mariadb_under_load_and_restart() {
    let _gate = GATE.lock().await;
    if !services_available("kill9_mariadb_under_load_and_restart").unwrap() {
        return;
    }
    let spec = standard_load();
    let mut s = suite(mariadb_suite(&spec)).await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let db = s.mariadb().unwrap();
    db.kill9().await.unwrap();
    let killed = Instant::now();
    let recovery = db.restart().await.unwrap();
    // Stores flow again once db_proxy's pool has reconnected: wait for new acks.
    let (_, acked) = load.progress();
    let start = Instant::now();
    while load.progress().1 < acked + 100 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no acks 30 s after MariaDB came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acks_back = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let v = &out.all;
    FaultReport::new(
        "kill -9 MariaDB (innodb_flush_log_at_trx_commit=1), restarted at once",
        format!("{describe}, db_proxy on MariaDB + Redis"),
        v,
    )
    .note(format!(
        "MariaDB answered again after {}, acks flowed again {} after the kill",
        secs(recovery),
        secs(acks_back)
    ))
    .note(format!(
        "{} sent without an ack (stored anyway: {}); stored twice {}, repeated ids {}",
        v.sent - v.acked,
        v.stored_unacked,
        v.stored_twice,
        v.repeated_ids
    ))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("MariaDB restart");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redis_empty_under_load() {
    let _gate = GATE.lock().await;
    if !services_available("restart_redis_empty_under_load").unwrap() {
        return;
    }
    let spec = standard_load();
    let mut s = suite(mariadb_suite(&spec)).await;
    let mut members = Members::login(&s, SMALL_GROUP_SIZE).await.unwrap();
    let before = members.round(SMALL_GROUP, 0).await.unwrap();
    assert_eq!(before.received, before.expected, "{before:?}");
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = s.redis().unwrap();
    redis.kill9().await.unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await.unwrap();
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Group messages: a group whose members every msg_server has cached, and one nobody
    // has asked for yet (its member hash must be rebuilt from MariaDB).
    let small = members.round(SMALL_GROUP, 1).await.unwrap();
    let fresh = members.round(FRESH_GROUP, 2).await.unwrap();
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let refs: Vec<&im_e2e::user::UserLog> = out.logs.iter().collect();
    let (checked, went_back) = ids_continue(&refs, killed, restarted);
    let v = &out.all;
    FaultReport::new(
        "kill -9 Redis, restarted empty 0.5 s later",
        format!("{describe}, db_proxy on MariaDB + Redis"),
        v,
    )
    .note(format!(
        "single-chat ids continued above the stored ones in {checked} of {checked} \
         conversations ({went_back} went back)"
    ))
    .note(format!(
        "group message ids {} then {}; after the restart {}/{} members of {SMALL_GROUP} and \
         {}/{} of {FRESH_GROUP} (never cached) got theirs",
        before.msg_id, small.msg_id, small.received, small.expected, fresh.received, fresh.expected
    ))
    .note(format!(
        "{} sent without an ack; unread counters not checked (Decisions 11 lets them go)",
        v.sent - v.acked
    ))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("Redis restart");
    assert!(
        checked > 0 && went_back == 0,
        "ids went back in {went_back} of {checked}"
    );
    assert!(
        small.msg_id > before.msg_id,
        "group ids went back: {before:?} {small:?}"
    );
    assert_eq!(small.received, small.expected, "{small:?}");
    assert_eq!(fresh.received, fresh.expected, "{fresh:?}");
    assert!(fresh.expected >= SMALL_GROUP_SIZE - 1);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_each_server_under_load_drains_and_exits_0() {
    let _gate = GATE.lock().await;
    let spec = standard_load();
    let mut s = suite(SuiteOptions {
        extras: true,
        ..users_for(&spec)
    })
    .await;
    let load = Load::start(&s, spec).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut steps = Vec::new();
    for id in [
        ServerId::Msg(0),
        ServerId::Route(0),
        ServerId::Login,
        ServerId::DbProxy,
        ServerId::File,
        ServerId::Push,
        ServerId::Msfs,
        ServerId::HttpMsg,
    ] {
        let begin = Instant::now();
        let (status, took) = s.terminate(id).await.unwrap();
        if id == ServerId::Msg(0) {
            load.wait_all_online(Duration::from_secs(30)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.start_server(id).await.unwrap();
        s.wait_ready().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        steps.push((id, status, took, (begin, Instant::now())));
    }
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    for (id, status, took, window) in &steps {
        let v = out.window(*window);
        FaultReport::new(
            format!("SIGTERM {id}, restarted 0.5 s later"),
            &describe,
            &v,
        )
        .note(format!("{status} after {}", secs(*took)))
        .publish();
    }
    FaultReport::new(
        "SIGTERM on each server in turn (whole run)",
        &describe,
        &out.all,
    )
    .note(reconnect_note(&out))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("SIGTERM under load");
    for (id, status, _, window) in &steps {
        assert!(status.success(), "{id} exited with {status}");
        assert!(
            out.window(*window).acked > 0,
            "nothing acked around {id}'s restart"
        );
    }
    // Everything once more, in reverse start order: each exits 0.
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_links_come_back_about_1s_after_a_peer_returns() {
    let _gate = GATE.lock().await;
    let spec = LoadSpec::new(4, 5.0);
    let mut s = suite(SuiteOptions {
        extras: true,
        ..users_for(&spec)
    })
    .await;
    let load = Load::start(&s, spec).await.unwrap();
    let mut figures = Vec::new();
    for (id, kind) in [
        (ServerId::Route(0), "route_server"),
        (ServerId::DbProxy, "db_proxy_server"),
        (ServerId::Login, "login_server"),
        (ServerId::File, "file_server"),
        (ServerId::Push, "push_server"),
    ] {
        s.kill9(id).await.unwrap();
        // Long enough for the links' backoff to reach its 1 s ceiling (Decisions 3).
        tokio::time::sleep(Duration::from_secs(2)).await;
        s.start_server(id).await.unwrap();
        let listening = Instant::now();
        let up = s
            .wait_links_up(kind, Duration::from_secs(10))
            .await
            .unwrap();
        figures.push((kind, up.saturating_duration_since(listening)));
        s.wait_ready().await.unwrap();
    }
    let settle = load.quiesce().await;
    let describe = load.describe();
    let out = load.finish(None).await.unwrap();
    let text: Vec<String> = figures
        .iter()
        .map(|(k, d)| format!("{k} {}", secs(*d)))
        .collect();
    FaultReport::new(
        "kill -9 each upstream peer of the msg_servers, restarted 2 s later",
        describe,
        &out.all,
    )
    .note(format!(
        "msg_server links up again after the peer listened: {}",
        text.join(", ")
    ))
    .note(format!("settled in {}", secs(settle)))
    .publish();
    out.assert_clean("upstream restarts");
    for (kind, d) in figures {
        assert!(
            d < Duration::from_secs(5),
            "{kind} links back only after {d:?}"
        );
    }
    s.shutdown().await.unwrap();
}
