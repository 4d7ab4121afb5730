//! The Redis layer of the MySQL backend: counters, id sequences, member hashes and push tokens
//! under the original TeamTalk key names and database numbers (STORAGE.md 5), standalone or
//! Redis Cluster (Decisions 11).
//!
//! Standalone mode keeps one multiplexed, auto-reconnecting connection per configured database
//! number (the original's pools `unread`, `group_set`, `token`, `group_member`; `sync` is
//! unused). Cluster mode uses database 0 and one cluster connection; [`keys::Keys`] adds hash
//! tags where a script touches two keys, and [`RedisCache::run`] splits a batch into one
//! pipeline per slot (order is kept per slot, and every key's commands share its slot).

pub mod keys;
pub mod scripts;
pub mod slot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Value};

use crate::config::RedisConfig;
use crate::error::{StorageError, StorageResult};

pub use keys::Keys;

/// How long one Redis command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The original's Redis pools; each maps to a database number in standalone mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Unread counters, id sequences, group message counts, `total_user_update`.
    Unread,
    /// Per-user group settings.
    GroupSet,
    /// Device tokens.
    Token,
    /// Group member hashes.
    GroupMember,
}

enum Conns {
    Standalone {
        unread: ConnectionManager,
        group_set: ConnectionManager,
        token: ConnectionManager,
        group_member: ConnectionManager,
    },
    Cluster(ClusterConnection),
}

/// Counters for the admin port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Round trips (single commands and pipelines) sent.
    pub round_trips: u64,
    /// Round trips that failed.
    pub errors: u64,
}

/// Connections to Redis plus the key naming.
pub struct RedisCache {
    keys: Keys,
    conns: Conns,
    round_trips: AtomicU64,
    errors: AtomicU64,
}

impl RedisCache {
    /// Connects (standalone: one connection per distinct database number; cluster: to the
    /// seed nodes).
    pub async fn connect(config: &RedisConfig) -> StorageResult<RedisCache> {
        let cluster = !config.cluster_urls.is_empty();
        let conns = if cluster {
            let client = ClusterClient::builder(config.cluster_urls.iter().map(String::as_str))
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(3)
                .build()
                .map_err(|e| open_error("storage.redis.cluster_urls", e))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| open_error("storage.redis.cluster_urls", e))?;
            Conns::Cluster(conn)
        } else {
            let info = config
                .url
                .as_str()
                .into_connection_info()
                .map_err(|e| open_error("storage.redis.url", e))?;
            let mut by_db: BTreeMap<u8, ConnectionManager> = BTreeMap::new();
            let dbs = config.dbs;
            for db in [dbs.unread, dbs.group_set, dbs.token, dbs.group_member] {
                if by_db.contains_key(&db) {
                    continue;
                }
                let settings = info.redis_settings().clone().set_db(i64::from(db));
                let client = redis::Client::open(info.clone().set_redis_settings(settings))
                    .map_err(|e| open_error("storage.redis.url", e))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(3);
                let manager = ConnectionManager::new_with_config(client, manager_config)
                    .await
                    .map_err(|e| open_error("storage.redis.url", e))?;
                by_db.insert(db, manager);
            }
            let get = |db: u8| {
                by_db.get(&db).cloned().ok_or_else(|| {
                    StorageError::Open(format!("storage.redis.dbs: no connection for db {db}"))
                })
            };
            Conns::Standalone {
                unread: get(dbs.unread)?,
                group_set: get(dbs.group_set)?,
                token: get(dbs.token)?,
                group_member: get(dbs.group_member)?,
            }
        };
        Ok(RedisCache {
            keys: Keys::new(&config.key_prefix, cluster),
            conns,
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conns, Conns::Cluster(_))
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            round_trips: self.round_trips.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn counted<T>(&self, result: redis::RedisResult<T>) -> StorageResult<T> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        result.map_err(|e| {
            self.errors.fetch_add(1, Ordering::Relaxed);
            StorageError::Cache(e.to_string())
        })
    }

    /// Runs one command in `pool`'s database.
    pub async fn query<T: FromRedisValue>(&self, pool: Pool, cmd: &Cmd) -> StorageResult<T> {
        let result = match self.conn(pool) {
            Conn::Single(mut conn) => cmd.query_async(&mut conn).await,
            Conn::Cluster(mut conn) => cmd.query_async(&mut conn).await,
        };
        self.counted(result)
    }

    /// Runs `cmds` in order and returns their replies in the same order: one pipeline in
    /// standalone mode, one pipeline per hash slot (sent concurrently) in cluster mode.
    pub async fn run(&self, pool: Pool, cmds: Vec<Cmd>) -> StorageResult<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let conn = match self.conn(pool) {
            Conn::Single(mut conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                let result = pipe.query_async::<Vec<Value>>(&mut conn).await;
                return self.counted(result);
            }
            Conn::Cluster(conn) => conn,
        };
        let total = cmds.len();
        let mut by_slot: BTreeMap<u16, (Vec<usize>, redis::Pipeline)> = BTreeMap::new();
        for (index, cmd) in cmds.into_iter().enumerate() {
            let entry = by_slot
                .entry(command_slot(&cmd))
                .or_insert_with(|| (Vec::new(), redis::pipe()));
            entry.0.push(index);
            entry.1.add_command(cmd);
        }
        let runs = by_slot.into_values().map(|(indices, pipe)| {
            let mut conn = conn.clone();
            async move {
                let values = pipe.query_async::<Vec<Value>>(&mut conn).await?;
                Ok::<_, redis::RedisError>((indices, values))
            }
        });
        let result = futures_util::future::try_join_all(runs).await;
        let parts = self.counted(result)?;
        let mut out = vec![Value::Nil; total];
        for (indices, values) in parts {
            if indices.len() != values.len() {
                return Err(StorageError::Cache(format!(
                    "pipeline answered {} replies for {} commands",
                    values.len(),
                    indices.len()
                )));
            }
            for (index, value) in indices.into_iter().zip(values) {
                out[index] = value;
            }
        }
        Ok(out)
    }

    fn conn(&self, pool: Pool) -> Conn {
        match &self.conns {
            Conns::Standalone {
                unread,
                group_set,
                token,
                group_member,
            } => Conn::Single(match pool {
                Pool::Unread => unread.clone(),
                Pool::GroupSet => group_set.clone(),
                Pool::Token => token.clone(),
                Pool::GroupMember => group_member.clone(),
            }),
            Conns::Cluster(conn) => Conn::Cluster(conn.clone()),
        }
    }
}

/// A connection handle for one call (both kinds are cheap clones of a shared connection).
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The slot of a command's first key (EVAL: the first key after the key count).
fn command_slot(cmd: &Cmd) -> u16 {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next().unwrap_or_default();
    let key = if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
        args.nth(2)
    } else {
        args.next()
    };
    slot::slot(key.unwrap_or_default())
}

fn open_error(key: &str, e: redis::RedisError) -> StorageError {
    StorageError::Open(format!("{key}: cannot connect to Redis: {e}"))
}

/// Decodes a reply, naming what was expected on failure.
pub fn decode<T: FromRedisValue>(value: Value, what: &str) -> StorageResult<T> {
    redis::from_redis_value(value)
        .map_err(|e| StorageError::Cache(format!("unexpected reply for {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_routed_by_their_first_key() {
        assert_eq!(command_slot(redis::cmd("GET").arg("foo")), 12182);
        assert_eq!(
            command_slot(redis::cmd("HINCRBY").arg("bar").arg("f").arg(1)),
            5061
        );
        // EVAL <script> <numkeys> <key>...
        assert_eq!(command_slot(&scripts::alloc("foo", 3)), 12182);
        assert_eq!(
            command_slot(&scripts::copy_count(
                "{7}_im_group_msg",
                "1_{7}_im_user_group"
            )),
            slot::slot(b"7")
        );
    }
}
