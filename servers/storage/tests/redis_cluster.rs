//! The MySQL backend on a Redis Cluster (Decisions 11): three `redis-server --cluster-enabled
//! yes` processes on loopback, started and stopped by the test, run the message, unread,
//! token and group parts of the conformance suite, and the Redis-loss recovery.
//!
//! Needs `redis-server` and `redis-cli` on PATH, plus the MariaDB of `IM_TEST_MYSQL_URL`
//! (tests/mysql_support); without them the test fails in CI and is skipped loudly elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros)]
mod conformance;
mod mysql_support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use im_storage::Store;
use mysql_support::TestEnv;
use rand::Rng;

/// How long the cluster may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Three master nodes, killed on drop.
struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Child>,
    ports: Vec<u16>,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// A port `p` with `p` and its cluster bus port `p + 10000` both free now.
fn free_port_pair() -> u16 {
    loop {
        let port = rand::rng().random_range(20_000..55_000u16);
        let ok = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if ok {
            return port;
        }
    }
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisCluster {
    /// Starts the nodes and creates the cluster; `None` (after a loud message) when the
    /// binaries are missing outside CI.
    async fn start() -> Option<RedisCluster> {
        if !have("redis-server") || !have("redis-cli") {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server/redis-cli not found, but CI is set: install redis-server");
            }
            eprintln!("\n*** SKIPPED: redis-server/redis-cli not on PATH ***\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
            ports: Vec::new(),
        };
        for n in 0..3 {
            let port = free_port_pair();
            let path = |name: String| cluster.dir.path().join(name).display().to_string();
            let node = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &path(format!("nodes-{n}.conf"))])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--dir", &cluster.dir.path().display().to_string()])
                .args(["--logfile", &path(format!("redis-{n}.log"))])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            cluster.nodes.push(node);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            cluster.wait_for(port, "PING", "PONG").await;
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for &port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            cluster.logs()
        );
        for &port in &cluster.ports {
            cluster
                .wait_for(port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
        Some(cluster)
    }

    /// Polls `command` on one node until its answer contains `want`.
    async fn wait_for(&self, port: u16, command: &str, want: &str) {
        let started = Instant::now();
        loop {
            let answer = async {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let mut words = command.split(' ');
                let mut cmd = redis::cmd(words.next()?);
                for w in words {
                    cmd.arg(w);
                }
                cmd.query_async::<String>(&mut conn).await.ok()
            }
            .await;
            if answer.is_some_and(|a| a.contains(want)) {
                return;
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "node {port}: no {want:?} after {START_DEADLINE:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// Keys each node holds.
    async fn keys_per_node(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for url in self.urls() {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            out.push(redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap());
        }
        out
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|n| {
                let path = self.dir.path().join(format!("redis-{n}.log"));
                read_tail(&path)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn read_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(2_000);
    format!("--- {} ---\n{}", path.display(), &text[start..])
}

/// A test database and prefix on the cluster.
async fn env_on(cluster: &RedisCluster) -> Option<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.cluster_urls = cluster.urls();
    Some(env)
}

macro_rules! run_cases {
    ($cluster:expr; $($case:ident),* $(,)?) => {
        $(
            {
                let env = env_on($cluster).await.unwrap();
                let store = env.open().await;
                let started = Instant::now();
                conformance::$case(&store).await;
                eprintln!("cluster: {} passed in {:?}", stringify!($case), started.elapsed());
                store.close().await;
            }
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_redis_cluster() {
    if mysql_support::service_urls().is_none() {
        return;
    }
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    run_cases!(&cluster;
        single_message_ids,
        request_dedup,
        group_messages,
        group_history_join_time,
        unread_counts,
        unread_cleared_by_member_change,
        remove_session,
        sync_group_sessions,
        device_tokens,
        groups_and_members,
        change_members_rules,
        group_shields,
        concurrent_ids,
        call_order,
    );

    // The data is spread over the nodes (the keys are not all in one slot).
    let env = env_on(&cluster).await.unwrap();
    let store = env.open().await;
    let ids = conformance::Ids::new();
    for peer in 2..40 {
        conformance::send(&store, conformance::text(ids.user(1), ids.user(peer), "x")).await;
    }
    let per_node = cluster.keys_per_node().await;
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "{per_node:?}"
    );
    assert!(store.unread_totals(&[ids.user(5)]).await.unwrap()[0].1 == 1);

    // A lost cluster (every key of this test gone): ids and members come back from MySQL.
    mysql_support::redis_loss(&env, &store).await;
}
