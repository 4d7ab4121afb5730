//! Storage configuration (the `[storage]` section of db_proxy_server's config, and what
//! `imctl migrate` builds from a URL).

use std::path::PathBuf;

use serde::Deserialize;

/// Which database holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One embedded SQLite file (the default; exactly one db_proxy_server).
    #[default]
    Sqlite,
    /// MySQL/MariaDB on the original TeamTalk schema.
    Mysql,
}

/// Where counters and caches live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Tables in the SQLite file: nothing lost on restart. Only with `backend = "sqlite"`.
    #[default]
    Embedded,
    /// Redis with the original key names (standalone or Redis Cluster). Only with
    /// `backend = "mysql"`.
    Redis,
}

/// How passwords are checked and stored (Decisions 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHashing {
    /// The original format only: md5hex(md5hex(plain) + salt) in `IMUser.password`.
    #[default]
    Legacy,
    /// argon2id over the client digest in a side table, legacy rows upgraded on login.
    Argon2id,
}

/// `synchronous` pragma for SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit: an acknowledged message survives a machine crash.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, not a power loss.
    Normal,
}

/// Valid `[storage.sqlite] checkpoint_interval_ms` values.
pub const CHECKPOINT_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

/// `[storage.sqlite]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file; created and migrated on first start.
    pub path: PathBuf,
    /// Reader connections (each on its own thread).
    pub readers: usize,
    /// Most writes committed in one transaction (group commit).
    pub max_batch: usize,
    /// Durability of commits.
    pub synchronous: SqliteSync,
    /// WAL pages (4 KiB) above which the writer runs a RESTART checkpoint between two
    /// batches so that the WAL starts over instead of growing (see the sqlite checkpoint
    /// module); 0 turns it off.
    pub wal_restart_pages: u32,
    /// Milliseconds between two PASSIVE checkpoints of the checkpoint thread, within
    /// [`CHECKPOINT_INTERVAL_MS`]: short enough that each pass writes back and fsyncs little,
    /// long enough that hot pages are not written back over and over (see the sqlite
    /// checkpoint module).
    pub checkpoint_interval_ms: u64,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("teamtalk.db"),
            readers: 4,
            max_batch: 1024,
            synchronous: SqliteSync::Full,
            wal_restart_pages: 4096,
            checkpoint_interval_ms: 300,
        }
    }
}

/// `[storage.mysql]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlConfig {
    /// Primary (master) URL, e.g. `mysql://tt:secret@127.0.0.1:3306/teamtalk`. Every write and
    /// every read that must see a write just made goes here.
    pub url: String,
    /// Read replicas (the original's slave pool); may be empty.
    pub replica_urls: Vec<String>,
    /// Connections to the primary.
    pub pool_size: u32,
    /// Connections to each replica.
    pub replica_pool_size: u32,
    /// Most message stores committed in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            url: String::new(),
            replica_urls: Vec::new(),
            pool_size: 16,
            replica_pool_size: 8,
            max_batch: 512,
        }
    }
}

/// Redis database numbers per purpose (the original's pools; STORAGE.md 5 and FLOWS.md 20.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisDbs {
    /// Pool `unread`: unread counters, message id sequences, group message counts.
    pub unread: u8,
    /// Pool `group_set`: per-user group settings (push mute).
    pub group_set: u8,
    /// Pool `sync`: configured by the original, unused.
    pub sync: u8,
    /// Pool `token`: device tokens.
    pub token: u8,
    /// Pool `group_member`: group member hashes.
    pub group_member: u8,
}

impl Default for RedisDbs {
    fn default() -> Self {
        // The auto_setup values of the original.
        RedisDbs {
            unread: 1,
            group_set: 2,
            sync: 3,
            token: 4,
            group_member: 5,
        }
    }
}

/// `[storage.redis]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Standalone Redis URL, e.g. `redis://127.0.0.1:6379/` (the database number is chosen per
    /// purpose from `dbs`).
    pub url: String,
    /// Redis Cluster seed URLs; when non-empty, cluster mode is used (database 0, keys with a
    /// hash tag so multi-key commands stay in one slot; Decisions 11) and `url` is ignored.
    pub cluster_urls: Vec<String>,
    /// Database numbers per purpose (standalone mode).
    pub dbs: RedisDbs,
    /// Prefix prepended to every key (empty for an original deployment; tests use it to share
    /// one Redis).
    pub key_prefix: String,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite` (default) or `mysql`.
    pub backend: Backend,
    /// `embedded` (default, with sqlite) or `redis` (with mysql).
    pub cache: CacheKind,
    /// `legacy` (default) or `argon2id`.
    pub password_hash: PasswordHashing,
    /// SQLite settings.
    pub sqlite: SqliteConfig,
    /// MySQL settings.
    pub mysql: MysqlConfig,
    /// Redis settings.
    pub redis: RedisConfig,
}

impl StorageConfig {
    /// Checks the combinations; the error names the key and the valid choices.
    pub fn validate(&self) -> Result<(), String> {
        let ms = self.sqlite.checkpoint_interval_ms;
        if self.backend == Backend::Sqlite && !CHECKPOINT_INTERVAL_MS.contains(&ms) {
            return Err(format!(
                "storage.sqlite.checkpoint_interval_ms: {ms} is out of range {}..={} (the \
                 default is 300)",
                CHECKPOINT_INTERVAL_MS.start(),
                CHECKPOINT_INTERVAL_MS.end()
            ));
        }
        match (self.backend, self.cache) {
            (Backend::Sqlite, CacheKind::Embedded) => Ok(()),
            (Backend::Mysql, CacheKind::Redis) => {
                if self.mysql.url.is_empty() {
                    return Err(
                        "storage.mysql.url: required when storage.backend = \"mysql\"".into(),
                    );
                }
                if self.redis.url.is_empty() && self.redis.cluster_urls.is_empty() {
                    return Err(
                        "storage.redis.url (or storage.redis.cluster_urls): required when \
                                storage.cache = \"redis\""
                            .into(),
                    );
                }
                Ok(())
            }
            (Backend::Sqlite, CacheKind::Redis) => Err(
                "storage.cache: \"redis\" needs storage.backend = \"mysql\"; with \"sqlite\" the \
                 cache is \"embedded\" (tables in the same file)"
                    .into(),
            ),
            (Backend::Mysql, CacheKind::Embedded) => Err(
                "storage.cache: with storage.backend = \"mysql\" use \"redis\" (the original key \
                 layout); \"embedded\" is for \"sqlite\""
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_interval_range() {
        let mut c = StorageConfig::default();
        for ms in [10, 300, 60_000] {
            c.sqlite.checkpoint_interval_ms = ms;
            assert!(c.validate().is_ok(), "{ms}");
        }
        for ms in [0, 9, 60_001] {
            c.sqlite.checkpoint_interval_ms = ms;
            let e = c.validate().expect_err("out of range");
            assert!(
                e.starts_with("storage.sqlite.checkpoint_interval_ms:") && e.contains("10..=60000"),
                "{e}"
            );
        }
    }

    #[test]
    fn combinations() {
        assert!(StorageConfig::default().validate().is_ok());
        let mut c = StorageConfig {
            backend: Backend::Mysql,
            ..StorageConfig::default()
        };
        assert!(c.validate().is_err_and(|e| e.starts_with("storage.cache")));
        c.cache = CacheKind::Redis;
        assert!(
            c.validate()
                .is_err_and(|e| e.starts_with("storage.mysql.url"))
        );
        c.mysql.url = "mysql://x".into();
        assert!(
            c.validate()
                .is_err_and(|e| e.starts_with("storage.redis.url"))
        );
        c.redis.url = "redis://x".into();
        assert!(c.validate().is_ok());
    }
}
