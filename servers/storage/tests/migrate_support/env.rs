//! A MariaDB database and a Redis key prefix per test (see the parent module).

use std::path::Path;
use std::str::FromStr;

use im_storage::config::{RedisConfig, RedisDbs};
use rand::Rng;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, MySqlPool};

/// A MariaDB database and a Redis key prefix of one test, removed on drop.
pub struct Env {
    admin_url: String,
    /// The database name.
    pub db: String,
    /// URL of the database.
    pub url: String,
    /// Standalone Redis URL.
    pub redis_url: String,
    /// Key prefix of this test.
    pub prefix: String,
}

impl Env {
    /// Creates the database, or `None` (after a loud message) when the services are not
    /// configured; panics in CI then.
    pub async fn new() -> Option<Env> {
        let mysql = std::env::var("IM_TEST_MYSQL_URL")
            .ok()
            .filter(|s| !s.is_empty());
        let redis = std::env::var("IM_TEST_REDIS_URL")
            .ok()
            .filter(|s| !s.is_empty());
        let (Some(admin_url), Some(redis_url)) = (mysql, redis) else {
            if std::env::var_os("CI").is_some() {
                panic!("IM_TEST_MYSQL_URL / IM_TEST_REDIS_URL not set, but CI is");
            }
            eprintln!(
                "\n*** SKIPPED: IM_TEST_MYSQL_URL and IM_TEST_REDIS_URL are needed for the \
                 MariaDB/Redis migration tests ***\n"
            );
            return None;
        };
        let tag = format!("{:016x}", rand::rng().random::<u64>());
        let db = format!("im_m_{tag}");
        let admin = pool(&admin_url).await;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE `{db}` CHARACTER SET utf8mb4"
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
        Some(Env {
            url: with_database(&admin_url, &db),
            admin_url,
            db,
            redis_url,
            prefix: format!("m{tag}:"),
        })
    }

    /// The Redis of this test (original database numbers, the test's prefix).
    pub fn redis(&self) -> RedisConfig {
        RedisConfig {
            url: self.redis_url.clone(),
            cluster_urls: Vec::new(),
            dbs: RedisDbs::default(),
            key_prefix: self.prefix.clone(),
        }
    }

    /// The MySQL store on this database and prefix.
    pub async fn store(&self) -> im_storage::MysqlStore {
        use im_storage::config::{Backend, CacheKind, MysqlConfig, StorageConfig};
        let config = StorageConfig {
            backend: Backend::Mysql,
            cache: CacheKind::Redis,
            mysql: MysqlConfig {
                url: self.url.clone(),
                pool_size: 4,
                ..MysqlConfig::default()
            },
            redis: self.redis(),
            ..StorageConfig::default()
        };
        im_storage::MysqlStore::open(&config).await.unwrap()
    }

    /// A pool on this database.
    pub async fn pool(&self) -> MySqlPool {
        pool(&self.url).await
    }

    /// Loads fixtures/sql/teamtalk_original.sql and teamtalk_original_redis.txt (an
    /// original deployment) into this database and prefix.
    pub async fn load_teamtalk(&self, fixtures: &Path) {
        let sql = std::fs::read_to_string(fixtures.join("teamtalk_original.sql")).unwrap();
        let pool = self.pool().await;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let text = std::fs::read_to_string(fixtures.join("teamtalk_original_redis.txt")).unwrap();
        let dbs = RedisDbs::default();
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            let db = match words[0] {
                "unread" => dbs.unread,
                "group_set" => dbs.group_set,
                "token" => dbs.token,
                "group_member" => dbs.group_member,
                other => panic!("unknown pool {other}"),
            };
            let mut conn = self.redis_conn(db).await;
            let mut cmd = redis::cmd(words[1]);
            cmd.arg(format!("{}{}", self.prefix, words[2]));
            for w in &words[3..] {
                cmd.arg(*w);
            }
            let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        }
    }

    /// A connection to Redis database `db`.
    pub async fn redis_conn(&self, db: u8) -> redis::aio::MultiplexedConnection {
        let url = format!("{}/{db}", self.redis_url.trim_end_matches('/'));
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let (admin_url, db) = (self.admin_url.clone(), self.db.clone());
        let (redis_url, prefix) = (self.redis_url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = pool(&admin_url).await;
                let drop = format!("DROP DATABASE IF EXISTS `{db}`");
                let _ = sqlx::query(AssertSqlSafe(drop)).execute(&admin).await;
                admin.close().await;
                for n in 0..=5 {
                    let url = format!("{}/{n}", redis_url.trim_end_matches('/'));
                    let mut conn = redis::Client::open(url)
                        .unwrap()
                        .get_multiplexed_async_connection()
                        .await
                        .unwrap();
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    for key in keys {
                        let _: i64 = redis::cmd("DEL")
                            .arg(key)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn pool(url: &str) -> MySqlPool {
    let options = MySqlConnectOptions::from_str(url).unwrap();
    MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

/// `url` with its database replaced by `db` (query kept).
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
