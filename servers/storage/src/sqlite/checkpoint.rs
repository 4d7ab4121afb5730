//! WAL checkpoints on their own thread and connection.
//!
//! Copying committed pages from the WAL back into the database file (and, with
//! `synchronous=FULL`, fsyncing it) took close to a tenth of the writer's time when SQLite
//! did it inside the writer's commits. A PASSIVE checkpoint runs beside the writer and the
//! readers without blocking them, so it happens here every `checkpoint_interval_ms`
//! (300 ms by default); the writer keeps a large automatic threshold only as a safety net
//! ([`schema`]).
//!
//! The pass's writes and fsync of the database file share the disk with the WAL fsyncs that
//! every acknowledgement waits for. With a pass every second, each one wrote back a second's
//! worth of scattered pages, and the WAL fsyncs queued behind it took 30-50 ms instead of
//! 1-2, twice in a row: once a second every acknowledgement stalled for 70-130 ms (the
//! 100 ms timeline of `imctl bench` showed it), and that was the p99 of delivery. A short
//! interval makes each flush small, but writes a hot page back once per pass instead of
//! once a second, which costs CPU when the machine has none to spare. p99 of delivery on a
//! fresh database, 2 cores, at 15,000 / 24,000 msgs/s: 64 / 198 ms with passes every
//! second, 20 / 74 ms every 300 ms, 13 / 164 ms every 100 ms (at 31,000 msgs/s, passes
//! every 100 ms wrote 10.7 KB per message to disk against 9.1 KB with passes every second).
//!
//! A PASSIVE checkpoint alone never lets the WAL start over under steady load: by the time
//! it has copied the frames it saw, newer ones have been appended, so the WAL is never fully
//! copied back and it grew until the writer's own threshold made the writer checkpoint
//! (about 120 ms) and then truncate the oversized file (150-180 ms more), a 300 ms stall
//! every few seconds at 5,000 msgs/s. So once a passive pass finds more than
//! `wal_restart_pages` frames in the WAL, it asks the writer (through
//! [`WriterStats::restart_due`]) to run a RESTART checkpoint between two batches: that one
//! copies only what the passive pass left (a few milliseconds of writes), and the next
//! write starts the WAL over at its beginning, overwriting frames in place instead of
//! growing and truncating the file.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::{CHECKPOINT_INTERVAL_MS, SqliteConfig};
use crate::error::{StorageError, StorageResult};

use super::schema;
use super::writer::WriterStats;

/// The shortest pause between checkpoints, also for a configuration that was not validated
/// (the lower end of [`CHECKPOINT_INTERVAL_MS`]).
const MIN_INTERVAL: Duration = Duration::from_millis(*CHECKPOINT_INTERVAL_MS.start());

/// Starts the checkpoint thread; it stops when the returned sender is used or dropped, and
/// drops `exited` after closing its connection.
pub(super) fn spawn(
    config: &SqliteConfig,
    writer: Arc<WriterStats>,
    exited: oneshot::Sender<()>,
) -> StorageResult<mpsc::Sender<()>> {
    let conn = schema::open_checkpointer(config)?;
    // The default (4096 pages, 16 MiB) is a few seconds of writes at the bench's latency
    // rate, well under the `journal_size_limit` above which SQLite truncates the file when
    // the WAL starts over.
    let restart_at = match config.wal_restart_pages {
        0 => i64::MAX,
        n => i64::from(n),
    };
    // The database file, for fsyncs of our own (see `flush`).
    let db = File::open(&config.path).map_err(|e| {
        StorageError::Open(format!(
            "cannot open {} for the checkpoint thread: {e}",
            config.path.display()
        ))
    })?;
    let every = Duration::from_millis(config.checkpoint_interval_ms).max(MIN_INTERVAL);
    let (stop, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut flushed = Flushed::default();
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                let first = checkpoint(&conn);
                if first.wal == 0 {
                    continue;
                }
                flushed.after(first, &db);
                // A second pass copies what was appended during the first pass and its
                // fsync, so that the writer's RESTART is left milliseconds of frames.
                let second = checkpoint(&conn);
                if second.wal > restart_at {
                    flushed.after(second, &db);
                    writer.restart_due.store(true, Ordering::Relaxed);
                }
            }
            drop(conn);
            drop(exited);
        })
        .map_err(|e| {
            StorageError::Open(format!("cannot start the sqlite checkpoint thread: {e}"))
        })?;
    Ok(stop)
}

/// What a PASSIVE pass reported: frames in the WAL and frames copied back (0, 0 if unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pass {
    wal: i64,
    done: i64,
}

/// The pass after which the database file was last fsynced, and how many fsyncs.
#[derive(Default)]
struct Flushed(Pass, u64);

impl Flushed {
    /// Fsyncs the database file after a PASSIVE pass that copied something since the last
    /// fsync (an idle database costs no fsync).
    ///
    /// SQLite fsyncs the database only at the end of a checkpoint that copied the whole
    /// WAL, which a PASSIVE pass under steady load never does. The pages it copied were then
    /// fsynced by the writer's RESTART checkpoint, all at once: a 40 ms stall of every write
    /// each second at 4,000 msgs/s (`perf trace`), the p99 of message delivery. Done here,
    /// that flush runs beside the writer, which finds little left to fsync. Skipping one
    /// (an unchanged report after a WAL restart) only leaves that flush to the writer.
    fn after(&mut self, pass: Pass, db: &File) {
        if pass == self.0 {
            return;
        }
        if let Err(e) = db.sync_data() {
            tracing::warn!(error = %e, "fsync of the database file failed");
            return;
        }
        self.0 = pass;
        self.1 += 1;
    }
}

/// One PASSIVE checkpoint.
fn checkpoint(conn: &Connection) -> Pass {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Pass {
            wal: r.get(1)?,
            done: r.get(2)?,
        })
    });
    match result {
        Ok(pass) => {
            if pass.wal > 0 {
                tracing::trace!(wal = pass.wal, done = pass.done, "wal checkpoint");
            }
            pass
        }
        Err(e) => {
            tracing::warn!(error = %e, "wal checkpoint failed");
            Pass::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_fsynced_only_after_a_pass_that_copied_something() {
        let dir = tempfile::tempdir().unwrap();
        let db = File::create(dir.path().join("db")).unwrap();
        let mut flushed = Flushed::default();
        let busy = Pass {
            wal: 900,
            done: 600,
        };
        flushed.after(busy, &db);
        assert_eq!(flushed.1, 1);
        // Idle: the same report again, nothing copied since.
        flushed.after(busy, &db);
        flushed.after(busy, &db);
        assert_eq!(flushed.1, 1);
        flushed.after(
            Pass {
                wal: 900,
                done: 900,
            },
            &db,
        );
        flushed.after(Pass { wal: 40, done: 40 }, &db);
        assert_eq!(flushed.1, 3);
    }
}
