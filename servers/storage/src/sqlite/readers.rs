//! The reader pool: `readers` read-only connections, each on its own thread, taking jobs from
//! one shared queue. WAL lets them read while the writer commits; each job runs in its own
//! read transaction, so it sees one consistent snapshot that includes every write whose
//! reply was already sent.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{StorageError, StorageResult};

use super::schema;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum ReaderMsg {
    Job(ReadJob),
    Stop,
}

/// Read counters shared with [`super::SqliteStats`].
#[derive(Debug, Default)]
pub(super) struct ReaderStats {
    pub submitted: AtomicU64,
    pub finished: AtomicU64,
}

/// The sending side, owned by the store.
pub(super) struct ReaderPool {
    tx: mpsc::Sender<ReaderMsg>,
    threads: usize,
    closed: AtomicBool,
    pub stats: Arc<ReaderStats>,
}

impl ReaderPool {
    /// Queues `f` for the next free reader.
    pub fn submit<T, F>(&self, f: F) -> StorageResult<oneshot::Receiver<StorageResult<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        let stats = self.stats.clone();
        let job: ReadJob = Box::new(move |conn| {
            let result =
                catch_unwind(AssertUnwindSafe(|| snapshot(conn, f))).unwrap_or_else(|_| {
                    tracing::error!("sqlite read operation panicked");
                    Err(StorageError::Database(
                        "internal error in a read operation".into(),
                    ))
                });
            stats.finished.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(result);
        });
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(ReaderMsg::Job(job)).is_err() {
            self.stats.finished.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::Closed);
        }
        Ok(rx)
    }

    /// Refuses new reads; every reader exits after the jobs queued before.
    pub fn stop(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for _ in 0..self.threads {
            let _ = self.tx.send(ReaderMsg::Stop);
        }
    }
}

/// Runs `f` in one read transaction.
fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StorageResult<T>,
) -> StorageResult<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn);
    if let Err(e) = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
    {
        tracing::warn!(error = %e, "ending a sqlite read transaction failed");
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}

/// Opens `n` reader connections, each on its own thread; returns once all are open. Each
/// thread drops its `exited` sender after closing its connection.
pub(super) async fn spawn(
    config: &SqliteConfig,
    n: usize,
    exited: &mut Vec<oneshot::Receiver<()>>,
) -> StorageResult<ReaderPool> {
    let n = n.max(1);
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let mut ready = Vec::with_capacity(n);
    for i in 0..n {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel::<()>();
        exited.push(exit_rx);
        ready.push(ready_rx);
        let rx = rx.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name(format!("sqlite-reader-{i}"))
            .spawn(move || {
                let conn = match schema::open_reader(&config) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run(&conn, &rx);
                drop(conn);
                drop(exit_tx);
            })
            .map_err(|e| StorageError::Open(format!("cannot start a sqlite reader thread: {e}")))?;
    }
    let pool = ReaderPool {
        tx,
        threads: n,
        closed: AtomicBool::new(false),
        stats: Arc::new(ReaderStats::default()),
    };
    for r in ready {
        if let Err(e) = r.await.unwrap_or(Err(StorageError::Closed)) {
            pool.stop();
            return Err(e);
        }
    }
    Ok(pool)
}

fn run(conn: &Connection, rx: &Mutex<mpsc::Receiver<ReaderMsg>>) {
    loop {
        // One thread waits on the queue at a time; the lock is released before the job runs.
        let msg = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match msg {
            Ok(ReaderMsg::Job(job)) => job(conn),
            Ok(ReaderMsg::Stop) | Err(_) => return,
        }
    }
}
