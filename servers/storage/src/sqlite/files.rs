//! Offline file records (`IMTransmitFile`, STORAGE.md 2.12 and 4.5).

use rusqlite::{Connection, Row};

use crate::error::StorageResult;
use crate::types::{OfflineFile, Timestamp, UserId};

use super::row::{text_at, u32_at};
use super::writer::Tx;

macro_rules! file_cols {
    () => {
        "id, fromId, toId, fileName, size, taskId, created"
    };
}

fn file_from_row(row: &Row<'_>) -> rusqlite::Result<OfflineFile> {
    Ok(OfflineFile {
        id: u32_at(row, 0)?,
        from_id: u32_at(row, 1)?,
        to_id: u32_at(row, 2)?,
        file_name: text_at(row, 3)?,
        size: u32_at(row, 4)?,
        task_id: text_at(row, 5)?,
        created: u32_at(row, 6)?,
    })
}

/// Pending files addressed to `user`, oldest first.
pub(super) fn pending(conn: &Connection, user: UserId) -> StorageResult<Vec<OfflineFile>> {
    let files = conn
        .prepare_cached(concat!(
            "SELECT ",
            file_cols!(),
            " FROM IMTransmitFile WHERE toId = ?1 AND status = 0 \
             ORDER BY created, id"
        ))?
        .query_map([user], file_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(files)
}

/// Records a finished offline upload (status 0, created now).
pub(super) fn add(
    tx: &Tx<'_>,
    from: UserId,
    to: UserId,
    task_id: &str,
    file_name: &str,
    size: u32,
) -> StorageResult<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMTransmitFile (fromId, toId, fileName, size, taskId, status, created, \
             updated) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
        )?
        .execute((from, to, file_name, size, task_id, tx.now))?;
    Ok(())
}

/// Deletes a downloaded file's record; `true` if one was deleted.
pub(super) fn delete(tx: &Tx<'_>, from: UserId, to: UserId, task_id: &str) -> StorageResult<bool> {
    let n = tx
        .conn
        .prepare_cached(
            "DELETE FROM IMTransmitFile WHERE fromId = ?1 AND toId = ?2 AND taskId = ?3",
        )?
        .execute((from, to, task_id))?;
    Ok(n > 0)
}

/// Deletes and returns the records created before `before`, oldest first.
pub(super) fn expire(tx: &Tx<'_>, before: Timestamp) -> StorageResult<Vec<OfflineFile>> {
    let mut files = tx
        .conn
        .prepare_cached(concat!(
            "DELETE FROM IMTransmitFile WHERE created < ?1 RETURNING ",
            file_cols!()
        ))?
        .query_map([before], file_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    files.sort_by_key(|f| (f.created, f.id));
    Ok(files)
}
