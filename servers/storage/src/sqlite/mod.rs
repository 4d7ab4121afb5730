//! The embedded SQLite backend (the default): one file in WAL mode, created and migrated on
//! first start ([`schema`]), with counters and caches in tables of the same file, so a restart
//! loses nothing.
//!
//! Threads, each with its own connection:
//! * [`writer`]: every write, in submission order, group-committed (many writes, one
//!   transaction);
//! * [`syncer`]: with `synchronous = "full"`, fsyncs the WAL after each commit and only then
//!   answers the batch's writes, while the writer already runs the next batch;
//! * [`checkpoint`]: copies the WAL back into the database file, off the writer's path;
//! * [`readers`]: `readers` read-only connections serving every read.
//!
//! No SQLite call ever runs on an async thread: every [`Store`](crate::Store) method sends a
//! closure to a thread and awaits a oneshot reply. Write methods enqueue when called (the
//! ordering contract of [`crate::store`]) and reply only once their batch is durable.
//!
//! The binaries that open stores (db_proxy_server, imctl) install [`pcache`]'s wrapper
//! around SQLite's page cache at start, which spares each commit a scan of the whole cache.
//!
//! The SQL lives in one file per area: [`users`], [`admin`], [`tokens`], [`messages`],
//! [`unread`], [`sessions`], [`groups`], [`files`]; [`api`] maps the trait onto them.

mod admin;
mod api;
mod checkpoint;
mod files;
mod groups;
mod messages;
mod pcache;
mod readers;
mod row;
pub(crate) mod schema;
mod sessions;
mod syncer;
#[cfg(test)]
mod test_util;
mod tokens;
mod unread;
mod users;
mod writer;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::{SqliteConfig, SqliteSync};
use crate::error::{StorageError, StorageResult};
use crate::types::Timestamp;

pub use pcache::{PageCacheStats, install_page_cache, page_cache_stats};
use readers::ReaderPool;
use writer::{Tx, WriterHandle};

/// Unix time in seconds (0 if the clock is before 1970; u32 holds it until 2106).
pub(crate) fn unix_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as Timestamp)
}

/// Counters for db_proxy's admin stats (latency histograms are db_proxy's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SqliteStats {
    /// Writes answered (committed or failed).
    pub writes: u64,
    /// Writes queued and not answered yet.
    pub write_queue: u64,
    /// Transactions committed or attempted by the writer.
    pub batches: u64,
    /// Batches that failed as a whole (COMMIT or the transaction itself failed).
    pub failed_batches: u64,
    /// Largest number of writes in one transaction so far.
    pub largest_batch: u64,
    /// Time the writer spent in transactions, in microseconds (its utilisation).
    pub writer_busy_us: u64,
    /// fsyncs of the WAL by the sync thread (`synchronous = "full"`); each answers every
    /// batch committed since the previous one.
    pub wal_syncs: u64,
    /// RESTART checkpoints run by the writer (`wal_restart_pages`) that copied every frame
    /// back, so that the next write started the WAL over.
    pub wal_restarts: u64,
    /// Total time of the writer's RESTART checkpoints (completed or not), in microseconds.
    pub wal_restart_us: u64,
    /// Reads answered.
    pub reads: u64,
    /// Reads queued and not answered yet.
    pub read_queue: u64,
}

/// The SQLite store. Cheap to share behind an `Arc`; dropping it lets the threads finish the
/// queued writes and exit, [`SqliteStore::close`] also waits for them.
pub struct SqliteStore {
    writer: WriterHandle,
    readers: ReaderPool,
    /// fsyncs done by the sync thread (stays 0 without one).
    wal_syncs: Arc<AtomicU64>,
    /// Stops the checkpoint thread (sent or dropped).
    checkpoint_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Completed (sender dropped) when each thread has closed its connection.
    exited: Mutex<Vec<oneshot::Receiver<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating the file, its directory and the schema if missing, migrating an older
    /// schema) and starts the writer and reader threads. The blocking work runs on those
    /// threads, not on the caller's.
    pub async fn open(config: &SqliteConfig) -> StorageResult<SqliteStore> {
        let mut exited = Vec::new();
        let mut wal_syncs = Arc::new(AtomicU64::new(0));
        let syncer = match config.synchronous {
            SqliteSync::Full => {
                let (exit_tx, exit_rx) = oneshot::channel();
                exited.push(exit_rx);
                let syncer = syncer::spawn(&config.path, exit_tx)?;
                wal_syncs = syncer.syncs.clone();
                Some(syncer)
            }
            SqliteSync::Normal => None,
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        exited.push(exit_rx);
        let writer = writer::spawn(config.clone(), syncer, ready_tx, exit_tx)?;
        ready_rx
            .await
            .map_err(|_| StorageError::Open("the sqlite writer thread exited".into()))??;
        let readers = match readers::spawn(config, config.readers, &mut exited).await {
            Ok(r) => r,
            Err(e) => {
                writer.stop();
                return Err(e);
            }
        };
        let (exit_tx, exit_rx) = oneshot::channel();
        let checkpoint_stop = match checkpoint::spawn(config, writer.stats.clone(), exit_tx) {
            Ok(stop) => stop,
            Err(e) => {
                writer.stop();
                readers.stop();
                return Err(e);
            }
        };
        exited.push(exit_rx);
        tracing::info!(
            path = %config.path.display(),
            readers = config.readers.max(1),
            max_batch = config.max_batch,
            synchronous = ?config.synchronous,
            "sqlite store open"
        );
        Ok(SqliteStore {
            writer,
            readers,
            wal_syncs,
            checkpoint_stop: Mutex::new(Some(checkpoint_stop)),
            exited: Mutex::new(exited),
        })
    }

    /// Stops taking requests, lets the writer commit everything queued before, and waits
    /// until every thread has closed its connection. Later calls fail with `Closed`.
    pub async fn close(&self) {
        let done = self.writer.stop();
        self.readers.stop();
        if let Ok(mut stop) = self.checkpoint_stop.lock() {
            stop.take();
        }
        if let Some(done) = done {
            let _ = done.await;
        }
        let exited = match self.exited.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => Vec::new(),
        };
        for rx in exited {
            let _ = rx.await;
        }
    }

    /// Current counters.
    pub fn stats(&self) -> SqliteStats {
        let w = &self.writer.stats;
        let r = &self.readers.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SqliteStats {
            writes: load(&w.finished),
            write_queue: load(&w.submitted).saturating_sub(load(&w.finished)),
            batches: load(&w.batches),
            failed_batches: load(&w.failed_batches),
            largest_batch: load(&w.largest_batch),
            writer_busy_us: load(&w.busy_us),
            wal_syncs: load(&self.wal_syncs),
            wal_restarts: load(&w.wal_restarts),
            wal_restart_us: load(&w.wal_restart_us),
            reads: load(&r.finished),
            read_queue: load(&r.submitted).saturating_sub(load(&r.finished)),
        }
    }

    /// Queues a write now; the future resolves after its batch committed.
    fn write<T, F>(&self, op: F) -> impl Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Fn(&Tx<'_>) -> StorageResult<T> + Send + 'static,
    {
        let pending = self.writer.submit(op);
        async move {
            match pending {
                Ok(rx) => rx.await.unwrap_or(Err(StorageError::Closed)),
                Err(e) => Err(e),
            }
        }
    }

    /// Queues a read now on the reader pool.
    fn read<T, F>(&self, f: F) -> impl Future<Output = StorageResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let pending = self.readers.submit(f);
        async move {
            match pending {
                Ok(rx) => rx.await.unwrap_or(Err(StorageError::Closed)),
                Err(e) => Err(e),
            }
        }
    }
}
