//! The scale-out backend: MySQL/MariaDB on the original TeamTalk schema (sqlx), with Redis for
//! counters, id sequences, member hashes and push tokens under the original key names.
//!
//! Layout: [`schema`] (the original DDL + ours), [`migrate`] (versions and the unique keys the
//! original lacks), [`pool`] (primary + replicas), [`batcher`] (the single ordered writer and
//! its group commit of message stores), then one module per area.
//!
//! Writes: every write method enqueues its work on one ordered queue when it is called (the
//! ordering contract of [`crate::store`]); one writer task applies them in order, storing runs
//! of queued messages as one transaction each (group commit), and answers only after the
//! commit. Redis is written after MySQL (Decisions 11). Reads run concurrently on the pools.

pub mod migrate;
pub mod pool;
pub mod schema;

mod batch_commit;
mod batch_prepare;
mod batcher;
pub(crate) mod content;
mod files;
mod groups;
mod members;
mod messages;
mod relations;
mod rows;
mod sessions;
mod store_batch;
mod store_impl;
mod tokens;
mod unread;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::config::{Backend, CacheKind, StorageConfig};
use crate::error::{StorageError, StorageResult};
use crate::redis_cache::{CacheStats, RedisCache};
use batcher::WriteOp;
use migrate::{MEMBER_KEY, MigrationReport, RELATION_KEY, SESSION_KEY};
use pool::{PoolStats, Pools};

/// Which of our unique keys are in force (found at open, logged). Only the relation key
/// changes the code path (`INSERT ... ON DUPLICATE KEY UPDATE` with it, a locking read
/// without); sessions and members always use locking reads (sessions: see
/// `sessions::upsert`; members: under the locked group row), which keep them unique either
/// way, the key being a second guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UniqueKeys {
    /// `IMRelationShip (smallId, bigId)`.
    pub relation: bool,
    /// `IMRecentSession (userId, peerId, type)`.
    pub session: bool,
    /// `IMGroupMember (groupId, userId)`.
    pub member: bool,
}

/// Counters of the writer, for the admin port.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queued: AtomicUsize,
    pub writes: AtomicU64,
    pub batches: AtomicU64,
    pub batched_messages: AtomicU64,
    pub largest_batch: AtomicU64,
    pub failed_batches: AtomicU64,
    pub retried_messages: AtomicU64,
    pub stored_messages: AtomicU64,
    pub duplicates: AtomicU64,
    pub reseeded_sequences: AtomicU64,
    pub rebuilt_member_hashes: AtomicU64,
    pub cache_errors_after_commit: AtomicU64,
    pub prepare_us: AtomicU64,
    pub commit_us: AtomicU64,
    pub after_commit_us: AtomicU64,
}

/// State shared by the writer task and the readers.
pub(crate) struct Inner {
    pub pools: Pools,
    pub cache: RedisCache,
    pub unique: UniqueKeys,
    pub report: MigrationReport,
    pub counters: Counters,
    /// Set by [`MysqlStore::close`]: later calls fail with `Closed`.
    pub closed: AtomicBool,
}

/// Figures for db_proxy's admin port and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlStats {
    /// The primary pool.
    pub primary: PoolStats,
    /// Each replica pool.
    pub replicas: Vec<PoolStats>,
    /// Writes answered (committed or failed).
    pub writes: u64,
    /// Writes queued and not yet applied.
    pub queued_writes: usize,
    /// Message batches committed or failed.
    pub batches: u64,
    /// Messages that went through batches.
    pub batched_messages: u64,
    /// Largest batch so far.
    pub largest_batch: u64,
    /// Batches whose transaction failed (their messages were retried one by one).
    pub failed_batches: u64,
    /// Messages retried alone after a failed batch.
    pub retried_messages: u64,
    /// Messages stored.
    pub stored_messages: u64,
    /// Store requests answered from the de-duplication table.
    pub duplicates: u64,
    /// Id sequences re-seeded from MySQL after a Redis loss.
    pub reseeded_sequences: u64,
    /// Group member hashes rebuilt from MySQL.
    pub rebuilt_member_hashes: u64,
    /// Redis updates that failed after a commit (the data is stored; counters may be off).
    pub cache_errors_after_commit: u64,
    /// Time the writer spent preparing batches (de-duplication, membership, relations, id
    /// allocation), in microseconds.
    pub prepare_us: u64,
    /// Time the writer spent in batch transactions (including retries), in microseconds.
    pub commit_us: u64,
    /// Time the writer spent updating Redis counters after commits, in microseconds.
    pub after_commit_us: u64,
    /// Redis round trips and failures.
    pub cache: CacheStats,
}

/// The MySQL/MariaDB + Redis store. Cheap to share behind an `Arc`; dropping it lets the
/// writer finish the queued writes and stop; [`MysqlStore::close`] also waits for them.
pub struct MysqlStore {
    inner: Arc<Inner>,
    writer: mpsc::UnboundedSender<WriteOp>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("replicas", &self.inner.pools.replica_count())
            .field("redis_cluster", &self.inner.cache.is_cluster())
            .field("unique_keys", &self.inner.unique)
            .finish_non_exhaustive()
    }
}

impl MysqlStore {
    /// Connects to MySQL (primary and replicas) and Redis, creates missing tables, adds the
    /// unique keys the data allows, and starts the writer task. Needs a tokio runtime.
    pub async fn open(config: &StorageConfig) -> StorageResult<MysqlStore> {
        if config.backend != Backend::Mysql || config.cache != CacheKind::Redis {
            return Err(StorageError::Open(
                "MysqlStore needs storage.backend = \"mysql\" and storage.cache = \"redis\"".into(),
            ));
        }
        config.validate().map_err(StorageError::Open)?;
        let pools = Pools::connect(&config.mysql).await?;
        let report = migrate::migrate(pools.primary()).await?;
        let cache = RedisCache::connect(&config.redis).await?;
        let unique = UniqueKeys {
            relation: report.has(RELATION_KEY),
            session: report.has(SESSION_KEY),
            member: report.has(MEMBER_KEY),
        };
        let inner = Arc::new(Inner {
            pools,
            cache,
            unique,
            report,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        });
        let (writer, rx) = mpsc::unbounded_channel();
        tokio::spawn(batcher::run(
            Arc::clone(&inner),
            rx,
            config.mysql.max_batch.max(1),
        ));
        tracing::info!(
            replicas = inner.pools.replica_count(),
            redis_cluster = inner.cache.is_cluster(),
            unique_keys = ?unique,
            "MySQL store open"
        );
        Ok(MysqlStore { inner, writer })
    }

    /// What opening the database did (unique keys added, duplicates found).
    pub fn migration_report(&self) -> &MigrationReport {
        &self.inner.report
    }

    /// Pool, batch and cache figures.
    pub fn stats(&self) -> MysqlStats {
        let c = &self.inner.counters;
        let (primary, replicas) = self.inner.pools.stats();
        MysqlStats {
            primary,
            replicas,
            writes: c.writes.load(Ordering::Relaxed),
            queued_writes: c.queued.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            batched_messages: c.batched_messages.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
            retried_messages: c.retried_messages.load(Ordering::Relaxed),
            stored_messages: c.stored_messages.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            reseeded_sequences: c.reseeded_sequences.load(Ordering::Relaxed),
            rebuilt_member_hashes: c.rebuilt_member_hashes.load(Ordering::Relaxed),
            cache_errors_after_commit: c.cache_errors_after_commit.load(Ordering::Relaxed),
            prepare_us: c.prepare_us.load(Ordering::Relaxed),
            commit_us: c.commit_us.load(Ordering::Relaxed),
            after_commit_us: c.after_commit_us.load(Ordering::Relaxed),
            cache: self.inner.cache.stats(),
        }
    }

    /// Stops taking requests, waits until every write queued before is applied, and closes
    /// the pools. Later calls fail with `Closed`.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel::<()>();
        let barrier: batcher::Job = Box::new(move |_inner| {
            Box::pin(async move {
                let _ = tx.send(());
            })
        });
        if self.send(WriteOp::Job(barrier)) {
            let _ = rx.await;
        }
        self.inner.pools.close().await;
    }

    /// Whether [`MysqlStore::close`] was called.
    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Runs a read unless the store is closed.
    fn read<T, F>(&self, read: F) -> impl Future<Output = StorageResult<T>> + Send + use<T, F>
    where
        T: Send,
        F: Future<Output = StorageResult<T>> + Send,
    {
        let closed = self.is_closed();
        async move {
            if closed {
                return Err(StorageError::Closed);
            }
            read.await
        }
    }

    fn enqueue(&self, op: WriteOp) -> bool {
        !self.is_closed() && self.send(op)
    }

    fn send(&self, op: WriteOp) -> bool {
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.writer.send(op).is_err() {
            self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues `work` on the writer now; the returned future waits for its result.
    fn write<T, F, Fut>(
        &self,
        work: F,
    ) -> impl Future<Output = StorageResult<T>> + Send + use<T, F, Fut>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: Future<Output = StorageResult<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: batcher::Job = Box::new(move |inner| {
            Box::pin(async move {
                let _ = tx.send(work(inner).await);
            })
        });
        let queued = self.enqueue(WriteOp::Job(job));
        async move {
            if !queued {
                return Err(StorageError::Closed);
            }
            rx.await.unwrap_or(Err(StorageError::Closed))
        }
    }
}
