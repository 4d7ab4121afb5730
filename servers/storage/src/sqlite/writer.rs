//! The writer thread: every write, in submission order, group-committed.
//!
//! Write methods box their operation as a [`Job`] and send it over an unbounded channel at
//! call time (the ordering contract of [`crate::store`]). The thread takes every queued job
//! (up to `max_batch`), runs them in ONE transaction, COMMITs, and only then replies to all
//! of them: an `Ok` means committed with the configured `synchronous` (FULL by default), so
//! one fsync serves a whole batch.
//!
//! One failing write fails alone. Almost every failure is found before the operation writes
//! anything (a refused message, an invalid request), and then there is nothing to undo, so
//! the batch runs without per-write savepoints (they cost about a fifth of the writer's time:
//! SQLite copies every page a savepoint touches). If a write fails after changing rows (a
//! database error halfway, or a bug), the whole transaction is rolled back and the batch is
//! run again with a SAVEPOINT around each write, so that only the failing one is rolled back.
//! Operations are therefore `Fn` and deterministic given the batch's `now`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{StorageError, StorageResult};
use crate::types::Timestamp;

use super::syncer::{Durable, Syncer};
use super::{schema, unix_now};

/// Request ids are kept at least this long (the brief asks for 10 minutes; msg_server retries
/// within seconds).
const DEDUP_KEEP_SECS: u32 = 15 * 60;
/// How often the writer prunes older request ids.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a write operation sees: the connection inside the batch transaction and the time
/// the batch started (the `now` written to `updated` columns).
pub(super) struct Tx<'c> {
    /// The writer connection, inside `BEGIN IMMEDIATE`.
    pub conn: &'c Connection,
    /// Unix time for `created`/`updated` columns.
    pub now: Timestamp,
    /// What the writer remembers between writes; emptied whenever a transaction is rolled
    /// back, so it never holds anything that is not in the database.
    pub memo: &'c RefCell<Memo>,
}

/// Lookups the writer keeps in memory (it is the only writer, so they cannot go stale).
#[derive(Debug, Default)]
pub(super) struct Memo {
    /// `IMRelationShip.id` (active) per (smallId, bigId): one indexed read less per message.
    pub relations: HashMap<(u32, u32), u32>,
    /// Sessions (userId, peerId, type) set active with `updated` = [`Memo::sessions_at`] by
    /// this writer: touching one again in the same second changes nothing, so the statement
    /// is skipped (two of a single message's statements, most of the time under load).
    /// Anything else that writes `IMRecentSession` calls [`Memo::forget_sessions`].
    sessions: HashSet<(u32, u32, u8)>,
    sessions_at: Timestamp,
}

/// Entries kept in [`Memo::relations`] before it starts over (about 30 MB).
const MEMO_RELATIONS: usize = 1 << 20;

impl Memo {
    /// Remembers an active relation.
    pub fn relation(&mut self, pair: (u32, u32), id: u32) {
        if self.relations.len() >= MEMO_RELATIONS {
            self.relations.clear();
        }
        self.relations.insert(pair, id);
    }

    /// True if the session was already touched at `now`; otherwise notes that it is about
    /// to be (a failed statement rolls the transaction back, and [`Memo::clear`] with it).
    pub fn session_touched(&mut self, key: (u32, u32, u8), now: Timestamp) -> bool {
        if self.sessions_at != now {
            self.sessions.clear();
            self.sessions_at = now;
        }
        if self.sessions.len() >= MEMO_RELATIONS {
            self.sessions.clear();
        }
        !self.sessions.insert(key)
    }

    /// Some other statement wrote `IMRecentSession`.
    pub fn forget_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Forgets everything (the transaction was rolled back).
    pub fn clear(&mut self) {
        self.relations.clear();
        self.sessions.clear();
    }
}

/// A queued write: applied in the batch (possibly twice, see the module docs), answered
/// after the batch's COMMIT.
trait Job: Send {
    /// Runs the operation and keeps its result; `false` if it failed.
    fn apply(&mut self, tx: &Tx<'_>) -> bool;
    /// Replies: the operation's own result if the batch committed, else the commit error.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
}

struct TypedJob<T, F> {
    op: F,
    result: Option<StorageResult<T>>,
    reply: oneshot::Sender<StorageResult<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: Fn(&Tx<'_>) -> StorageResult<T> + Send,
{
    fn apply(&mut self, tx: &Tx<'_>) -> bool {
        // A bug in one operation must not take the writer (and every later write) down.
        let result = catch_unwind(AssertUnwindSafe(|| (self.op)(tx))).unwrap_or_else(|_| {
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
            (_, Err(e)) => Err(StorageError::Database(format!(
                "not durably committed: {e}"
            ))),
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
    /// Set by the checkpoint thread: run a RESTART checkpoint before the next batch.
    pub restart_due: AtomicBool,
    /// RESTART checkpoints that completed (the next write starts the WAL over), and the
    /// microseconds every attempt took.
    pub wal_restarts: AtomicU64,
    pub wal_restart_us: AtomicU64,
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
        F: Fn(&Tx<'_>) -> StorageResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        let job = Box::new(TypedJob {
            op,
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
    syncer: Option<Syncer>,
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
            run(
                &conn,
                &rx,
                config.max_batch.max(1),
                &thread_stats,
                syncer.as_ref(),
            );
            drop(syncer);
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

fn run(
    conn: &Connection,
    rx: &mpsc::Receiver<WriterMsg>,
    max_batch: usize,
    stats: &Arc<WriterStats>,
    syncer: Option<&Syncer>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut last_prune: Option<Instant> = None;
    let memo = RefCell::new(Memo::default());
    loop {
        let mut stop = None;
        match rx.recv() {
            Ok(WriterMsg::Job(job)) => batch.push(job),
            Ok(WriterMsg::Stop(done)) => stop = Some(done),
            // Every sender is gone and the queue is drained.
            Err(_) => return,
        }
        if let Some(syncer) = syncer {
            // Jobs arriving while the previous fsync runs join this batch (see syncer).
            syncer.wait_for_room();
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
            commit_batch(conn, &memo, &mut batch, prune, stats, syncer);
        }
        if stop.is_none() && stats.restart_due.swap(false, Ordering::Relaxed) {
            restart_wal(conn, stats);
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

/// A RESTART checkpoint between batches (see [`super::checkpoint`]): copies what the
/// checkpoint thread's last pass left, fsyncs the database, and waits for readers to leave
/// the WAL, so that the next write starts it over. Writes queue meanwhile.
fn restart_wal(conn: &Connection, stats: &WriterStats) {
    let started = Instant::now();
    let result = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    let took = started.elapsed();
    stats
        .wal_restart_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    match result {
        Ok((busy, wal, done)) => {
            // Counted only when every frame was copied back: then, and only then, the next
            // write starts the WAL over. busy = 1: a reader or the checkpoint thread was in
            // the way; the next pass asks again.
            if busy == 0 && wal == done {
                stats.wal_restarts.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(busy, wal, done, ?took, "wal restart checkpoint");
        }
        Err(e) => tracing::warn!(error = %e, "wal restart checkpoint failed"),
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Why a pass over the batch stopped before COMMIT.
enum Abort {
    /// A write failed after changing rows and there was no savepoint to undo it.
    Redo,
    /// The transaction is lost (SQLite error, COMMIT failure): every write fails.
    Fatal(String),
}

impl From<rusqlite::Error> for Abort {
    fn from(e: rusqlite::Error) -> Self {
        Abort::Fatal(e.to_string())
    }
}

/// One pass: BEGIN, every job (each in a savepoint when `careful`), COMMIT.
fn run_pass(
    conn: &Connection,
    tx: &Tx<'_>,
    batch: &mut [Box<dyn Job>],
    careful: bool,
    prune: bool,
) -> Result<(), Abort> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        if careful {
            exec(conn, "SAVEPOINT w")?;
        }
        let changes = conn.total_changes();
        if job.apply(tx) {
            if careful {
                exec(conn, "RELEASE w")?;
            }
        } else if conn.is_autocommit() {
            // Some errors (disk full, I/O) make SQLite roll the whole transaction back: the
            // writes applied before are gone too, so the batch fails as a whole.
            return Err(Abort::Fatal("SQLite rolled the transaction back".into()));
        } else if careful {
            exec(conn, "ROLLBACK TO w")?;
            exec(conn, "RELEASE w")?;
            // What the failed write remembered may have been rolled back with it.
            tx.memo.borrow_mut().clear();
        } else if conn.total_changes() != changes {
            return Err(Abort::Redo);
        }
    }
    if prune {
        prune_request_ids(conn, tx.now);
    }
    exec(conn, "COMMIT")?;
    Ok(())
}

/// A committed batch waiting for the WAL fsync.
struct Committed {
    jobs: Vec<Box<dyn Job>>,
    stats: Arc<WriterStats>,
}

impl Durable for Committed {
    fn durable(self: Box<Self>, flushed: Result<(), &str>) {
        // Counted first, so that a caller who got its reply sees itself counted.
        self.stats
            .finished
            .fetch_add(self.jobs.len() as u64, Ordering::Relaxed);
        for job in self.jobs {
            job.finish(flushed);
        }
    }
}

/// One group commit; replies to every job once its fate is known: at once if the batch
/// failed or there is no [`Syncer`], else after the WAL fsync.
fn commit_batch(
    conn: &Connection,
    memo: &RefCell<Memo>,
    batch: &mut Vec<Box<dyn Job>>,
    prune: bool,
    stats: &Arc<WriterStats>,
    syncer: Option<&Syncer>,
) {
    let started = Instant::now();
    let tx = Tx {
        conn,
        now: unix_now(),
        memo,
    };
    let mut careful = false;
    let outcome = loop {
        match run_pass(conn, &tx, batch, careful, prune) {
            Ok(()) => break Ok(()),
            Err(abort) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                memo.borrow_mut().clear();
                match abort {
                    Abort::Redo if !careful => {
                        tracing::warn!(
                            jobs = batch.len(),
                            "a write failed halfway; redoing the batch with savepoints"
                        );
                        careful = true;
                    }
                    Abort::Redo => break Err("a write failed without its savepoint".to_owned()),
                    Abort::Fatal(e) => break Err(e),
                }
            }
        }
    };
    if let Err(e) = &outcome {
        stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, jobs = batch.len(), "sqlite batch failed");
    }
    let n = batch.len() as u64;
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    stats
        .busy_us
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    if let (Ok(()), Some(syncer)) = (&outcome, syncer) {
        let jobs = std::mem::replace(batch, Vec::with_capacity(batch.capacity()));
        syncer.after_fsync(Box::new(Committed {
            jobs,
            stats: stats.clone(),
        }));
        return;
    }
    let committed = outcome.as_ref().map(|_| ()).map_err(String::as_str);
    stats.finished.fetch_add(n, Ordering::Relaxed);
    for job in batch.drain(..) {
        job.finish(committed);
    }
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

#[cfg(test)]
mod tests;
