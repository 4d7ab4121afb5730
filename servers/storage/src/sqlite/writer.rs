//! The writer thread: every write, in submission order, group-committed.
//!
//! Write methods box their operation as a [`Job`] and send it over an unbounded channel at
//! call time (the ordering contract of [`crate::store`]). The thread takes every queued job
//! (up to `max_batch`), runs them in ONE transaction with a SAVEPOINT each, so that one
//! failing write rolls back only itself, COMMITs, and only then replies to all of them: an
//! `Ok` means committed with the configured `synchronous` (FULL by default), so that one fsync
//! serves a whole batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{StorageError, StorageResult};
use crate::types::Timestamp;

use super::{schema, unix_now};

/// Request ids are kept at least this long (the brief asks for 10 minutes; msg_server retries
/// within seconds).
const DEDUP_KEEP_SECS: u32 = 15 * 60;
/// How often the writer prunes older request ids.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a write operation sees: the connection inside the batch transaction and the time
/// the batch started (the `now` written to `updated` columns).
pub(super) struct Tx<'c> {
    /// The writer connection, inside `BEGIN IMMEDIATE` and the operation's savepoint.
    pub conn: &'c Connection,
    /// Unix time for `created`/`updated` columns.
    pub now: Timestamp,
}

/// A queued write: applied in the batch, answered after the batch's COMMIT.
trait Job: Send {
    /// Runs the operation; `false` if it failed (its savepoint is then rolled back).
    fn apply(&mut self, tx: &Tx<'_>) -> bool;
    /// Replies: the operation's own result if the batch committed, else the commit error.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
}

struct TypedJob<T, F> {
    op: Option<F>,
    result: Option<StorageResult<T>>,
    reply: oneshot::Sender<StorageResult<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Tx<'_>) -> StorageResult<T> + Send,
{
    fn apply(&mut self, tx: &Tx<'_>) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        // A bug in one operation must not take the writer (and every later write) down.
        let result = catch_unwind(AssertUnwindSafe(|| op(tx))).unwrap_or_else(|_| {
            tracing::error!("sqlite write operation panicked; rolled back");
            Err(StorageError::Database(
                "internal error in a write operation".into(),
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &str>) {
        let result = match (self.result, committed) {
            // The operation's own failure is the more precise answer.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StorageError::Database(format!("batch not committed: {e}"))),
            (None, Ok(())) => Err(StorageError::Database("write was not applied".into())),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(result);
    }
}

enum WriterMsg {
    Job(Box<dyn Job>),
    /// Finish what was queued before, commit, close the connection, then reply.
    Stop(oneshot::Sender<()>),
}

/// Counters shared with [`super::SqliteStats`].
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    pub submitted: AtomicU64,
    pub finished: AtomicU64,
    pub batches: AtomicU64,
    pub failed_batches: AtomicU64,
    pub largest_batch: AtomicU64,
    pub busy_us: AtomicU64,
}

/// The sending side, owned by the store.
pub(super) struct WriterHandle {
    tx: mpsc::Sender<WriterMsg>,
    closed: AtomicBool,
    pub stats: Arc<WriterStats>,
}

/// Receives the reply of one submitted write.
pub(super) type Pending<T> = StorageResult<oneshot::Receiver<StorageResult<T>>>;

impl WriterHandle {
    /// Queues `op` now (before anything is awaited); the receiver completes after COMMIT.
    pub fn submit<T, F>(&self, op: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> StorageResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        let job = Box::new(TypedJob {
            op: Some(op),
            result: None,
            reply,
        });
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(WriterMsg::Job(job)).is_err() {
            self.stats.finished.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Closed);
        }
        Ok(rx)
    }

    /// Refuses new writes and asks the thread to finish the queued ones and stop; the
    /// receiver completes once the connection is closed.
    pub fn stop(&self) -> Option<oneshot::Receiver<()>> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (done, rx) = oneshot::channel();
        self.tx.send(WriterMsg::Stop(done)).ok().map(|()| rx)
    }
}

/// Starts the writer thread; it opens (creates, migrates) the database and reports on
/// `ready` before taking jobs. Dropping the handle lets the thread finish the queue and exit.
pub(super) fn spawn(
    config: SqliteConfig,
    ready: oneshot::Sender<StorageResult<()>>,
    exited: oneshot::Sender<()>,
) -> StorageResult<WriterHandle> {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(WriterStats::default());
    let thread_stats = stats.clone();
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let conn = match schema::open_writer(&config) {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            run(&conn, &rx, config.max_batch.max(1), &thread_stats);
            drop(conn);
            drop(exited);
        })
        .map_err(|e| StorageError::Open(format!("cannot start the sqlite writer thread: {e}")))?;
    Ok(WriterHandle {
        tx,
        closed: AtomicBool::new(false),
        stats,
    })
}

fn run(conn: &Connection, rx: &mpsc::Receiver<WriterMsg>, max_batch: usize, stats: &WriterStats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut last_prune: Option<Instant> = None;
    loop {
        let mut stop = None;
        match rx.recv() {
            Ok(WriterMsg::Job(job)) => batch.push(job),
            Ok(WriterMsg::Stop(done)) => stop = Some(done),
            // Every sender is gone and the queue is drained.
            Err(_) => return,
        }
        while stop.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(WriterMsg::Job(job)) => batch.push(job),
                Ok(WriterMsg::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let prune = last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            if prune {
                last_prune = Some(Instant::now());
            }
            commit_batch(conn, &mut batch, prune, stats);
        }
        if let Some(done) = stop {
            // Jobs queued after the stop are dropped with the receiver: their callers get
            // `Closed`, and none of them was applied.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
            drop(done);
            return;
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One group commit: BEGIN, a savepoint per job, COMMIT, then every reply.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Job>>,
    prune: bool,
    stats: &WriterStats,
) {
    let started = Instant::now();
    let tx = Tx {
        conn,
        now: unix_now(),
    };
    let outcome = (|| -> Result<(), String> {
        exec(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
        for job in batch.iter_mut() {
            exec(conn, "SAVEPOINT w").map_err(|e| e.to_string())?;
            if job.apply(&tx) {
                exec(conn, "RELEASE w").map_err(|e| e.to_string())?;
            } else if conn.is_autocommit() {
                // Some errors (disk full, I/O) make SQLite roll the whole transaction back:
                // the writes applied before are gone too, so the batch fails as a whole.
                return Err("SQLite rolled the transaction back".into());
            } else {
                exec(conn, "ROLLBACK TO w").map_err(|e| e.to_string())?;
                exec(conn, "RELEASE w").map_err(|e| e.to_string())?;
            }
        }
        if prune {
            prune_request_ids(conn, tx.now);
        }
        exec(conn, "COMMIT").map_err(|e| e.to_string())
    })();
    if outcome.is_err() {
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = ?outcome, jobs = batch.len(), "sqlite batch failed");
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    let n = batch.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    stats
        .busy_us
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let committed = outcome.as_ref().map(|_| ()).map_err(String::as_str);
    for job in batch.drain(..) {
        job.finish(committed);
    }
    stats.finished.fetch_add(n, Ordering::Relaxed);
}

/// Forgets request ids older than [`DEDUP_KEEP_SECS`], in its own savepoint so that a
/// failure costs nothing but a log line.
fn prune_request_ids(conn: &Connection, now: Timestamp) {
    let result = (|| -> rusqlite::Result<usize> {
        exec(conn, "SAVEPOINT prune")?;
        let n = conn
            .prepare_cached("DELETE FROM IMRequestDedup WHERE created < ?1")?
            .execute([now.saturating_sub(DEDUP_KEEP_SECS)]);
        match n {
            Ok(n) => {
                exec(conn, "RELEASE prune")?;
                Ok(n)
            }
            Err(e) => {
                exec(conn, "ROLLBACK TO prune")?;
                exec(conn, "RELEASE prune")?;
                Err(e)
            }
        }
    })();
    match result {
        Ok(0) => {}
        Ok(n) => tracing::debug!(pruned = n, "old store request ids pruned"),
        Err(e) => tracing::warn!(error = %e, "pruning old store request ids failed"),
    }
}
