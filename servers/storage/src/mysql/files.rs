//! Offline file records (`IMTransmitFile`, STORAGE.md 2.12 and 4.5).

use super::Inner;
use super::rows::{col_str, col_u32, now, placeholders, sql};
use crate::error::{StorageError, StorageResult};
use crate::types::{OfflineFile, Timestamp, UserId};

const COLS: &str = "id, fromId, toId, fileName, size, taskId, created";

fn file_row(row: &sqlx::mysql::MySqlRow) -> StorageResult<OfflineFile> {
    Ok(OfflineFile {
        id: col_u32(row, 0)?,
        from_id: col_u32(row, 1)?,
        to_id: col_u32(row, 2)?,
        file_name: col_str(row, 3)?,
        size: col_u32(row, 4)?,
        task_id: col_str(row, 5)?,
        created: col_u32(row, 6)?,
    })
}

/// Pending files for `user`, oldest first (primary: asked right after an upload).
pub async fn pending(inner: &Inner, user: UserId) -> StorageResult<Vec<OfflineFile>> {
    let text = format!(
        "SELECT {COLS} FROM IMTransmitFile WHERE toId = ? AND status = 0 ORDER BY created, id"
    );
    let rows = sqlx::query(sql(text))
        .bind(user)
        .fetch_all(inner.pools.primary())
        .await?;
    rows.iter().map(file_row).collect()
}

/// Records a finished upload.
pub async fn add(
    inner: &Inner,
    from: UserId,
    to: UserId,
    task_id: &str,
    file_name: &str,
    size: u32,
) -> StorageResult<()> {
    if task_id.is_empty() || task_id.chars().count() > 128 {
        return Err(StorageError::Invalid(format!(
            "task id has {} characters; expected 1..=128",
            task_id.chars().count()
        )));
    }
    if file_name.chars().count() > 512 {
        return Err(StorageError::Invalid(
            "file name longer than 512 characters".into(),
        ));
    }
    let t = now();
    sqlx::query(
        "INSERT INTO IMTransmitFile (fromId, toId, fileName, size, taskId, status, created, updated) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
    )
    .bind(from)
    .bind(to)
    .bind(file_name)
    .bind(size)
    .bind(task_id)
    .bind(t)
    .bind(t)
    .execute(inner.pools.primary())
    .await?;
    Ok(())
}

/// Deletes a downloaded file's record; `true` if one was deleted.
pub async fn delete(inner: &Inner, from: UserId, to: UserId, task_id: &str) -> StorageResult<bool> {
    let done =
        sqlx::query("DELETE FROM IMTransmitFile WHERE fromId = ? AND toId = ? AND taskId = ?")
            .bind(from)
            .bind(to)
            .bind(task_id)
            .execute(inner.pools.primary())
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes and returns records created before `before`.
pub async fn expire(inner: &Inner, before: Timestamp) -> StorageResult<Vec<OfflineFile>> {
    let mut tx = inner.pools.primary().begin().await?;
    let text =
        format!("SELECT {COLS} FROM IMTransmitFile WHERE created < ? ORDER BY id FOR UPDATE");
    let rows = sqlx::query(sql(text))
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
    let files = rows
        .iter()
        .map(file_row)
        .collect::<StorageResult<Vec<_>>>()?;
    for chunk in files.chunks(500) {
        let text = format!(
            "DELETE FROM IMTransmitFile WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for f in chunk {
            q = q.bind(f.id);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(files)
}
