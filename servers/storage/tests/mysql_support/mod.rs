//! Shared set-up of the MariaDB/Redis tests (tests/mysql.rs, tests/redis_cluster.rs): each
//! test gets its own database `im_t_<random>` and its own Redis key prefix, both removed when
//! its [`TestEnv`] is dropped, so tests run in parallel on one MariaDB and one Redis.
//!
//! The services come from `IM_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`) and
//! `IM_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379/`). Without them a test fails when `CI`
//! is set and is skipped, loudly, otherwise.

#![allow(dead_code)]

use std::str::FromStr;

use crate::conformance::{Ids, group_text, new_group, send, text};
use im_storage::config::{Backend, CacheKind, MysqlConfig, RedisConfig, RedisDbs, StorageConfig};
use im_storage::{GroupKind, MemberChange, MysqlStore, SessionType, Store};
use rand::Rng;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool};

/// The service URLs, or `None` (after a loud message) when the test must be skipped.
pub fn service_urls() -> Option<(String, String)> {
    let mysql = std::env::var("IM_TEST_MYSQL_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let redis = std::env::var("IM_TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty());
    match (mysql, redis) {
        (Some(m), Some(r)) => Some((m, r)),
        (m, _) => {
            let missing = if m.is_none() {
                "IM_TEST_MYSQL_URL"
            } else {
                "IM_TEST_REDIS_URL"
            };
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{missing} is not set, but CI is: the MariaDB/Redis tests must run in CI \
                     (scripts/ci-services.sh starts the services)"
                );
            }
            eprintln!(
                "\n*** SKIPPED: {missing} not set (MariaDB/Redis tests need \
                 IM_TEST_MYSQL_URL and IM_TEST_REDIS_URL) ***\n"
            );
            None
        }
    }
}

/// `url` with its database (path) replaced by `db`, query parameters kept.
pub fn with_database(url: &str, db: &str) -> String {
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

/// A random lower-case hex tag.
pub fn random_tag() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// One test's database and Redis prefix.
pub struct TestEnv {
    /// The URL the test was given (its database is used only to create and drop ours).
    pub admin_url: String,
    /// Our database.
    pub db: String,
    /// URL of our database.
    pub url: String,
    /// Standalone Redis URL.
    pub redis_url: String,
    /// Redis Cluster seed URLs (cluster tests), else empty.
    pub cluster_urls: Vec<String>,
    /// Key prefix of this test.
    pub prefix: String,
}

impl TestEnv {
    /// Creates the database; `None` when the test is skipped.
    pub async fn new() -> Option<TestEnv> {
        let (admin_url, redis_url) = service_urls()?;
        let tag = random_tag();
        let db = format!("im_t_{tag}");
        let admin = admin_pool(&admin_url).await;
        let create = format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4");
        sqlx::query(AssertSqlSafe(create))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(TestEnv {
            url: with_database(&admin_url, &db),
            admin_url,
            db,
            redis_url,
            cluster_urls: Vec::new(),
            prefix: format!("t{tag}:"),
        })
    }

    /// The storage config of this test (small pools: many tests share one server).
    pub fn config(&self) -> StorageConfig {
        StorageConfig {
            backend: Backend::Mysql,
            cache: CacheKind::Redis,
            mysql: MysqlConfig {
                url: self.url.clone(),
                pool_size: 4,
                replica_pool_size: 2,
                ..MysqlConfig::default()
            },
            redis: RedisConfig {
                url: self.redis_url.clone(),
                cluster_urls: self.cluster_urls.clone(),
                dbs: RedisDbs::default(),
                key_prefix: self.prefix.clone(),
            },
            ..StorageConfig::default()
        }
    }

    /// Opens a store on this test's database and prefix.
    pub async fn open(&self) -> MysqlStore {
        MysqlStore::open(&self.config()).await.unwrap()
    }

    /// A pool on this test's database, for planting and checking rows.
    pub async fn pool(&self) -> MySqlPool {
        admin_pool(&self.url).await
    }

    /// Deletes every Redis key of this test (what a Redis loss does to it).
    pub async fn flush_redis(&self) {
        flush(&self.redis_url, &self.cluster_urls, &self.prefix).await;
    }
}

/// Deletes the keys starting with `prefix` in every database of a standalone Redis, or on
/// every node of a cluster (each node's SCAN sees the keys it owns).
pub async fn flush(redis_url: &str, cluster_urls: &[String], prefix: &str) {
    let urls: Vec<String> = if cluster_urls.is_empty() {
        let dbs = RedisDbs::default();
        [
            dbs.unread,
            dbs.group_set,
            dbs.sync,
            dbs.token,
            dbs.group_member,
        ]
        .iter()
        .map(|db| format!("{}/{db}", redis_url.trim_end_matches('/')))
        .collect()
    } else {
        cluster_urls.to_vec()
    };
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        delete_prefixed(&mut conn, prefix).await;
    }
}

async fn delete_prefixed(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        for key in keys {
            // One key per DEL: in a cluster, keys of one SCAN page live in different slots.
            let _: i64 = redis::cmd("DEL").arg(&key).query_async(conn).await.unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// A small pool on `url`.
pub async fn admin_pool(url: &str) -> MySqlPool {
    let options = MySqlConnectOptions::from_str(url).unwrap();
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block: clean up on a thread of
        // our own with its own runtime.
        let admin_url = self.admin_url.clone();
        let db = self.db.clone();
        let redis_url = self.redis_url.clone();
        let cluster_urls = self.cluster_urls.clone();
        let prefix = self.prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = admin_pool(&admin_url).await;
                let drop = format!("DROP DATABASE IF EXISTS `{db}`");
                let _ = sqlx::query(AssertSqlSafe(drop)).execute(&admin).await;
                admin.close().await;
                flush(&redis_url, &cluster_urls, &prefix).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// WEAKNESSES 24 and 25 on `store`: delete the test's Redis keys, then check that ids
/// continue above the stored ones and membership comes back from MySQL (shared by the
/// standalone and the cluster tests).
pub async fn redis_loss(env: &TestEnv, store: &MysqlStore) {
    let ids = Ids::new();
    let (a, b, c) = (ids.user(1), ids.user(2), ids.user(3));
    for i in 0..5 {
        send(store, text(a, b, &format!("{i}"))).await;
    }
    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    store
        .change_members(a, g, MemberChange::Add, &[c])
        .await
        .unwrap();
    for i in 0..3 {
        send(store, group_text(b, g, &format!("{i}"))).await;
    }
    let before = store.group_members(g).await.unwrap().unwrap();

    env.flush_redis().await;

    assert_eq!(
        send(store, text(b, a, "after")).await,
        6,
        "continues above the stored ids"
    );
    assert_eq!(send(store, group_text(c, g, "after")).await, 4);
    let mut after = store.group_members(g).await.unwrap().unwrap();
    after.sort_by_key(|m| m.user_id);
    let mut before = before;
    before.sort_by_key(|m| m.user_id);
    assert_eq!(after, before, "members and join times rebuilt");
    let h = store
        .history(c, SessionType::Group, g, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        h.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    let stats = store.stats();
    assert!(stats.reseeded_sequences >= 2, "{stats:?}");
    assert!(stats.rebuilt_member_hashes >= 1, "{stats:?}");
    // Group info and a member change work on the rebuilt hash.
    assert_eq!(store.groups(&[g]).await.unwrap()[0].members.len(), 3);
    assert_eq!(
        store.group_shields(g, &[a]).await.unwrap(),
        Some(vec![(a, false)])
    );
}
