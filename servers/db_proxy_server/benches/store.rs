//! Store throughput through db_proxy_server's socket: several links (as a msg_server pools
//! them), each keeping many stores in flight, 100-byte text bodies, one conversation per
//! link (msg_server hashes a conversation onto one link). Prints messages/s and latency.
//!
//! Run: `cargo bench -p db_proxy_server --bench store` (release build). Environment knobs:
//! `BENCH_LINKS` (10), `BENCH_IN_FLIGHT` per link (1000), `BENCH_MESSAGES` in all (200000),
//! `BENCH_SYNC` (`full` or `normal`, SQLite's synchronous), `BENCH_DIR` (where the database
//! goes; default a temp dir, which is on whatever disk /tmp is). `BENCH_BACKEND=mysql` runs
//! on MySQL/MariaDB + Redis instead, from `IM_TEST_MYSQL_URL` and `IM_TEST_REDIS_URL` (a
//! scratch database `im_bench_<pid>` is created and dropped; the server's durability
//! settings, e.g. `innodb_flush_log_at_trx_commit`, are printed).
//!
//! Not a test: no assertion on speed, it only reports what it measured and the settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use db_proxy_server::{Backend, Config, DbProxy, Listeners};
use hdrhistogram::Histogram;
use im_common::CancellationToken;
use im_proto::Pdu;
use im_proto::attach::RequestTag;
use im_proto::base::MsgType;
use im_proto::client::{ClientConfig, ImClient};
use im_proto::message::ImMsgData;
use im_storage::config::{Backend as BackendKind, CacheKind, SqliteConfig, SqliteSync};
use im_storage::{MysqlStore, NewUser, SqliteStore};
use sqlx::AssertSqlSafe;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let links = env("BENCH_LINKS", 10).max(1);
    let in_flight = env("BENCH_IN_FLIGHT", 1000).clamp(1, 30_000);
    let total = env("BENCH_MESSAGES", 200_000).max(links);
    let shape = format!("{links} links x {in_flight} in flight, 100-byte bodies");
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    if std::env::var("BENCH_BACKEND").as_deref() == Ok("mysql") {
        let mysql = std::env::var("IM_TEST_MYSQL_URL").expect("IM_TEST_MYSQL_URL");
        let redis = std::env::var("IM_TEST_REDIS_URL").expect("IM_TEST_REDIS_URL");
        let db = format!("im_bench_{}", std::process::id());
        let admin = sqlx::MySqlPool::connect(&mysql).await.expect("mysql");
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE `{db}` CHARACTER SET utf8mb4"
        )))
        .execute(&admin)
        .await
        .expect("create database");
        let flush: (String, String) =
            sqlx::query_as("SHOW VARIABLES LIKE 'innodb_flush_log_at_trx_commit'")
                .fetch_one(&admin)
                .await
                .unwrap_or_default();
        config.storage.backend = BackendKind::Mysql;
        config.storage.cache = CacheKind::Redis;
        config.storage.mysql.url = with_database(&mysql, &db);
        config.storage.redis.url = redis;
        config.storage.redis.key_prefix = format!("{db}:");
        let store = MysqlStore::open(&config.storage).await.expect("open mysql");
        let setting = format!(
            "MySQL/MariaDB + Redis, innodb_flush_log_at_trx_commit={}",
            flush.1
        );
        measure(config, store, &setting, &shape, links, in_flight, total).await;
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE `{db}`")))
            .execute(&admin)
            .await;
    } else {
        let sync = match std::env::var("BENCH_SYNC").as_deref() {
            Ok("normal") => SqliteSync::Normal,
            _ => SqliteSync::Full,
        };
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = std::env::var("BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| tmp.path().to_path_buf());
        let path = dir.join(format!("bench-{}.db", std::process::id()));
        config.storage.sqlite = SqliteConfig {
            path: path.clone(),
            synchronous: sync,
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open(&config.storage.sqlite)
            .await
            .expect("open sqlite");
        let setting = format!("SQLite synchronous={sync:?}, database {}", path.display());
        measure(config, store, &setting, &shape, links, in_flight, total).await;
        let _ = std::fs::remove_file(&path);
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn measure<S: Backend>(
    config: Config,
    store: S,
    setting: &str,
    shape: &str,
    links: usize,
    in_flight: usize,
    total: usize,
) {
    let mut users = Vec::new();
    for i in 0..links * 2 {
        users.push(
            store
                .add_user(NewUser {
                    name: format!("bench{i}"),
                    password: "pw".into(),
                    nick: format!("bench{i}"),
                    ..NewUser::default()
                })
                .await
                .expect("user"),
        );
    }
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let proxy = DbProxy::new(config, store).expect("server");
    let server = tokio::spawn(proxy.serve(
        Listeners {
            main_tls: None,
            main,
            admin: None,
            metrics: None,
        },
        shutdown.clone(),
    ));

    let per_link = total / links;
    let body = Bytes::from(vec![b'x'; 100]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for l in 0..links {
        let (from, to) = (users[2 * l], users[2 * l + 1]);
        let (addr, body) = (addr.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            one_link(&addr, l as u64, from, to, body, per_link, in_flight).await
        }));
    }
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut failed = 0u64;
    for t in tasks {
        let (h, f) = t.await.unwrap();
        hist.add(h).unwrap();
        failed += f;
    }
    let elapsed = start.elapsed();
    let done = hist.len();
    shutdown.cancel();
    let _ = server.await;
    println!("db_proxy store benchmark: {setting}; {shape}");
    println!(
        "  {done} messages in {:.2} s = {:.0} msgs/s; latency p50 {:.2} ms, p99 {:.2} ms, max \
         {:.2} ms; {failed} failed",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
}

/// One link: keeps `in_flight` stores outstanding until `count` are answered. Returns the
/// latencies in µs and the number of failed (msg_id 0) answers.
async fn one_link(
    addr: &str,
    origin: u64,
    from: u32,
    to: u32,
    body: Bytes,
    count: usize,
    in_flight: usize,
) -> (Histogram<u64>, u64) {
    let (link, mut events) = ImClient::connect(
        addr,
        ClientConfig {
            event_buffer: in_flight * 2 + 16,
            heartbeat_interval: Some(Duration::from_secs(5)),
            ..ClientConfig::default()
        },
    )
    .await
    .expect("connect");
    let mut sent_at = vec![None::<Instant>; 65_536];
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut failed = 0;
    let mut sent = 0usize;
    let mut answered = 0usize;
    let mut seq: u16 = 0;
    let mut send = |link: &ImClient, n: usize, sent_at: &mut Vec<Option<Instant>>| {
        seq = if seq == u16::MAX { 1 } else { seq + 1 };
        let msg = ImMsgData {
            from_user_id: if n.is_multiple_of(2) { from } else { to },
            to_session_id: if n.is_multiple_of(2) { to } else { from },
            msg_id: 0,
            create_time: 0,
            msg_type: MsgType::SingleText as i32,
            msg_data: body.clone(),
            attach_data: Some(
                RequestTag {
                    origin,
                    seq: n as u64,
                }
                .encode(),
            ),
        };
        sent_at[usize::from(seq)] = Some(Instant::now());
        let frame = Pdu::from_msg(&msg, seq).to_frame();
        let link = link.clone();
        async move { link.send_frame(frame).await.expect("send") }
    };
    while sent < in_flight.min(count) {
        send(&link, sent, &mut sent_at).await;
        sent += 1;
    }
    while answered < count {
        let pdu = events
            .recv_timeout(Duration::from_secs(60))
            .await
            .expect("answer in time")
            .expect("link open");
        let Ok(m) = pdu.decode::<ImMsgData>() else {
            continue;
        };
        if let Some(t) = sent_at[usize::from(pdu.seq_num())].take() {
            let _ = hist.record(t.elapsed().as_micros() as u64);
        }
        if m.msg_id == 0 {
            failed += 1;
        }
        answered += 1;
        if sent < count {
            send(&link, sent, &mut sent_at).await;
            sent += 1;
        }
    }
    (hist, failed)
}
