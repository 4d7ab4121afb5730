//! The primary pool and the optional read-replica pools (the original's `teamtalk_master` and
//! `teamtalk_slave`). Every write and every read that must see a write just made uses the
//! primary; reads where a little staleness is harmless (user and department lists, history)
//! rotate over the replicas, or use the primary when there are none.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::config::MysqlConfig;
use crate::error::{StorageError, StorageResult};

/// How long a caller waits for a free connection before the operation fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle longer than this is pinged before use (see `connect`).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Connections to the primary and the replicas.
pub struct Pools {
    primary: MySqlPool,
    replicas: Vec<MySqlPool>,
    next_replica: AtomicUsize,
}

/// Size and use of one pool, for the admin port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Configured maximum.
    pub max: u32,
}

impl Pools {
    /// Connects to the primary (failing if it cannot be reached) and to every replica.
    pub async fn connect(config: &MysqlConfig) -> StorageResult<Pools> {
        let primary = connect(&config.url, config.pool_size, "storage.mysql.url").await?;
        let mut replicas = Vec::with_capacity(config.replica_urls.len());
        for url in &config.replica_urls {
            replicas
                .push(connect(url, config.replica_pool_size, "storage.mysql.replica_urls").await?);
        }
        Ok(Pools {
            primary,
            replicas,
            next_replica: AtomicUsize::new(0),
        })
    }

    /// The primary: writes and reads that must see the latest writes.
    pub fn primary(&self) -> &MySqlPool {
        &self.primary
    }

    /// A replica (round robin), or the primary when none is configured.
    pub fn replica(&self) -> &MySqlPool {
        if self.replicas.is_empty() {
            return &self.primary;
        }
        let n = self.next_replica.fetch_add(1, Ordering::Relaxed);
        &self.replicas[n % self.replicas.len()]
    }

    /// Number of replica pools.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Stats of the primary, then of each replica.
    pub fn stats(&self) -> (PoolStats, Vec<PoolStats>) {
        (
            pool_stats(&self.primary),
            self.replicas.iter().map(pool_stats).collect(),
        )
    }

    /// Closes every connection (waits for those in use to be returned).
    pub async fn close(&self) {
        self.primary.close().await;
        for replica in &self.replicas {
            replica.close().await;
        }
    }
}

fn pool_stats(pool: &MySqlPool) -> PoolStats {
    PoolStats {
        size: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}

async fn connect(url: &str, size: u32, key: &str) -> StorageResult<MySqlPool> {
    if url.is_empty() {
        return Err(StorageError::Open(format!(
            "{key}: empty URL; expected mysql://user:password@host:3306/database"
        )));
    }
    let options = MySqlConnectOptions::from_str(url)
        .map_err(|e| StorageError::Open(format!("{key}: {e}")))?
        // The original connects with utf8mb4 (emoji in names, signatures and messages).
        .charset("utf8mb4");
    MySqlPoolOptions::new()
        .max_connections(size.max(1))
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out by default: a round trip and a MariaDB
        // command per query (a login storm spent a third of mysqld's commands on it). Only a
        // connection that sat idle, and so may have been dropped by the server, is pinged.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| StorageError::Open(format!("{key}: cannot connect to {}: {e}", redact(url))))
}

/// The URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("mysql://tt:secret@127.0.0.1:3306/teamtalk"),
            "mysql://tt:***@127.0.0.1:3306/teamtalk"
        );
        assert_eq!(redact("mysql://127.0.0.1/x"), "mysql://127.0.0.1/x");
    }
}
