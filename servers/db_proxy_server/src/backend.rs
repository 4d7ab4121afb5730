//! What db_proxy needs of a storage backend beyond [`Store`]: its name for the admin stats,
//! its counters, and an orderly close at shutdown (every queued write committed).

use std::future::Future;

use im_storage::{MysqlStore, SqliteStore, Store};

/// A store db_proxy can run on.
pub trait Backend: Store {
    /// `storage.backend` value ("sqlite", "mysql").
    const BACKEND: &'static str;
    /// `storage.cache` value ("embedded", "redis").
    const CACHE: &'static str;

    /// Commits what is queued and releases the database.
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// Counters for the admin stats.
    fn backend_stats(&self) -> BackendStats;
}

/// Backend counters shown by `imctl top`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Transactions committed (group commits).
    pub group_commits: u64,
    /// Writes applied.
    pub writes: u64,
    /// Connections in use, where the backend has a pool.
    pub pool_in_use: Option<u32>,
    /// Pool size, where the backend has a pool.
    pub pool_size: Option<u32>,
    /// Time the writer spent committing batches, in microseconds.
    pub writer_busy_us: u64,
    /// Writes queued and not answered yet.
    pub write_queue: u64,
}

impl Backend for SqliteStore {
    const BACKEND: &'static str = "sqlite";
    const CACHE: &'static str = "embedded";

    fn close(&self) -> impl Future<Output = ()> + Send {
        SqliteStore::close(self)
    }

    fn backend_stats(&self) -> BackendStats {
        let s = self.stats();
        BackendStats {
            group_commits: s.batches,
            writes: s.writes,
            pool_in_use: None,
            pool_size: None,
            writer_busy_us: s.writer_busy_us,
            write_queue: s.write_queue,
        }
    }
}

impl Backend for MysqlStore {
    const BACKEND: &'static str = "mysql";
    const CACHE: &'static str = "redis";

    fn close(&self) -> impl Future<Output = ()> + Send {
        MysqlStore::close(self)
    }

    fn backend_stats(&self) -> BackendStats {
        let s = self.stats();
        BackendStats {
            group_commits: s.batches,
            writes: s.batched_messages,
            pool_in_use: Some(s.primary.size.saturating_sub(s.primary.idle)),
            pool_size: Some(s.primary.max),
            // The writer prepares the next batch while one commits; commits (and the Redis
            // counters after them) take turns, so their time is the writer's limit.
            writer_busy_us: s.commit_us + s.after_commit_us,
            write_queue: s.queued_writes as u64,
        }
    }
}
