//! WAL checkpoints on their own thread and connection.
//!
//! Copying committed pages from the WAL back into the database file (and, with
//! `synchronous=FULL`, fsyncing it) took close to a tenth of the writer's time when SQLite
//! did it inside the writer's commits. A PASSIVE checkpoint runs beside the writer and the
//! readers without blocking them, so it happens here every [`CHECKPOINT_EVERY`]; the writer
//! keeps a large automatic threshold only as a safety net ([`schema`]).

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{StorageError, StorageResult};

use super::schema;

/// Pause between checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Starts the checkpoint thread; it stops when the returned sender is used or dropped, and
/// drops `exited` after closing its connection.
pub(super) fn spawn(
    config: &SqliteConfig,
    exited: oneshot::Sender<()>,
) -> StorageResult<mpsc::Sender<()>> {
    let conn = schema::open_checkpointer(config)?;
    let (stop, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                checkpoint(&conn);
            }
            drop(conn);
            drop(exited);
        })
        .map_err(|e| {
            StorageError::Open(format!("cannot start the sqlite checkpoint thread: {e}"))
        })?;
    Ok(stop)
}

fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((wal, done)) if wal > 0 => tracing::trace!(wal, done, "wal checkpoint"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
    }
}
