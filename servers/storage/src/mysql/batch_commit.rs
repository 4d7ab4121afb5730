//! Step 5 of a batch ([`super::store_batch`]): the MySQL transaction, and the one-by-one
//! retry when it fails.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sqlx::MySqlConnection;

use super::batch_prepare::stored_request_ids;
use super::batcher::SessionCache;
use super::rows::{TextInserts, now};
use super::schema::{group_message_table, message_table};
use super::store_batch::{Conv, Item, Msg, copy_error};
use super::{Inner, content, sessions};
use crate::error::{StorageError, StorageResult};
use crate::types::{NewContent, SessionType, StoreOutcome};

/// Step 5: the batch transaction, or each message alone if it fails.
pub(super) async fn store(inner: &Inner, sessions: &mut SessionCache, items: &mut [Item]) {
    let open: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Item::Msg(m) if m.open()))
        .map(|(i, _)| i)
        .collect();
    if open.is_empty() {
        return;
    }
    let batch: Vec<&Msg> = open
        .iter()
        .filter_map(|&i| match &items[i] {
            Item::Msg(m) => Some(m),
            Item::Clear { .. } => None,
        })
        .collect();
    match commit(inner, sessions, &batch).await {
        Ok(seen) => {
            sessions.remember(seen);
            for &i in &open {
                if let Item::Msg(m) = &mut items[i] {
                    m.result = Some(Ok(StoreOutcome::Stored(m.msg_id)));
                }
            }
            inner
                .counters
                .stored_messages
                .fetch_add(open.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            inner
                .counters
                .failed_batches
                .fetch_add(1, Ordering::Relaxed);
            if open.len() > 1 {
                tracing::warn!(error = %e, messages = open.len(), "batch failed; retrying its messages one by one");
            }
            for &i in &open {
                let Item::Msg(m) = &mut items[i] else {
                    continue;
                };
                let result = if open.len() == 1 {
                    Err(copy_error(&e))
                } else {
                    inner
                        .counters
                        .retried_messages
                        .fetch_add(1, Ordering::Relaxed);
                    retry_alone(inner, sessions, m).await
                };
                if result.is_ok() {
                    inner
                        .counters
                        .stored_messages
                        .fetch_add(1, Ordering::Relaxed);
                }
                m.result = Some(result);
            }
        }
    }
}

async fn retry_alone(
    inner: &Inner,
    sessions: &mut SessionCache,
    m: &Msg,
) -> StorageResult<StoreOutcome> {
    // A concurrent process may have stored the same request meanwhile.
    if let Some(rid) = m.msg.request_id
        && let Some(&id) = stored_request_ids(inner.pools.primary(), std::iter::once(rid))
            .await?
            .get(&rid)
    {
        return Ok(StoreOutcome::Duplicate(id));
    }
    let seen = commit(inner, sessions, &[m]).await?;
    sessions.remember(seen);
    Ok(StoreOutcome::Stored(m.msg_id))
}

async fn commit(
    inner: &Inner,
    known: &SessionCache,
    batch: &[&Msg],
) -> StorageResult<Vec<(sessions::SessionKey, u32)>> {
    let mut tx = inner.pools.primary().begin().await?;
    let conn: &mut MySqlConnection = &mut tx;
    let mut contents: Vec<Cow<'_, str>> = Vec::with_capacity(batch.len());
    for m in batch {
        contents.push(match &m.msg.content {
            NewContent::Text(bytes) => match content::encode(bytes) {
                Ok(text) => text,
                Err(chars) => {
                    return Err(StorageError::Invalid(format!(
                        "message content needs {chars} characters"
                    )));
                }
            },
            NewContent::Audio {
                path,
                size,
                duration,
            } => {
                let done = sqlx::query(
                    "INSERT INTO IMAudio (fromId, toId, path, size, duration, created) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(m.msg.from_id)
                .bind(m.msg.to_id)
                .bind(path)
                .bind(size)
                .bind(duration)
                .bind(m.msg.created)
                .execute(&mut *conn)
                .await?;
                Cow::Owned(done.last_insert_id().to_string())
            }
        });
    }
    // Rows, request ids, the sessions whose row id is known and the groups' lastChated: one
    // round trip of SQL text for a batch of short messages.
    let mut text = TextInserts::default();
    message_rows(&mut text, batch, &contents);
    let created = now();
    for m in batch {
        if let Some(rid) = m.msg.request_id {
            text.row("INSERT INTO im_store_request (origin, seq, msgId, created)")
                .int(rid.origin)
                .int(rid.seq)
                .int(m.msg_id)
                .int(created);
        }
    }
    let mut sessions_rows: BTreeMap<(u32, u32, u8), u32> = BTreeMap::new();
    let mut groups: BTreeMap<u32, u32> = BTreeMap::new();
    for m in batch {
        let (from, to, t) = (m.msg.from_id, m.msg.to_id, m.msg.created);
        let mut touch = |key: (u32, u32, u8)| {
            let e = sessions_rows.entry(key).or_insert(t);
            *e = (*e).max(t);
        };
        if m.msg.msg_type.is_group() {
            touch((from, to, SessionType::Group as u8));
            let e = groups.entry(to).or_insert(t);
            *e = (*e).max(t);
        } else {
            touch((from, to, SessionType::Single as u8));
            touch((to, from, SessionType::Single as u8));
        }
    }
    let rows: Vec<sessions::Touch> = sessions_rows
        .into_iter()
        .map(|((user, peer, kind), time)| sessions::Touch {
            user,
            peer,
            kind,
            time,
        })
        .collect();
    let planned = sessions::plan_known(&mut text, &rows, true, Some(&known.map));
    // Groups after every session, the order in which a batch has always taken its locks:
    // with sessions not seen before (the locking path), in a round trip of their own after it.
    let mut late = TextInserts::default();
    let group_text = if planned.has_unknown() {
        &mut late
    } else {
        &mut text
    };
    for (group, time) in groups {
        group_text.statement(&format!(
            "UPDATE IMGroup SET lastChated = GREATEST(lastChated, {time}) WHERE id = {group}"
        ));
    }
    let matched = text.execute(conn).await?;
    let seen = sessions::upsert_rest(conn, planned, &matched, true).await?;
    // Nothing to send (no round trip) unless groups waited for new sessions.
    late.execute(conn).await?;
    tx.commit().await?;
    Ok(seen)
}

/// The batch's message rows, grouped by shard table (one multi-row INSERT each).
fn message_rows(out: &mut TextInserts, batch: &[&Msg], contents: &[Cow<'_, str>]) {
    let mut by_table: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (i, m) in batch.iter().enumerate() {
        let table = match m.conv {
            Some(Conv::Single(r)) => message_table(r),
            Some(Conv::Group(g)) => group_message_table(g),
            None => continue,
        };
        by_table.entry(table).or_default().push(i);
    }
    for (table, rows) in by_table {
        let group = table.starts_with("IMGroupMessage");
        let prefix = if group {
            format!(
                "INSERT INTO {table} (groupId, userId, msgId, content, type, status, created, updated)"
            )
        } else {
            format!(
                "INSERT INTO {table} (relateId, fromId, toId, msgId, content, type, status, created, updated)"
            )
        };
        for i in rows {
            let m = batch[i];
            let row = out.row(&prefix);
            match m.conv {
                Some(Conv::Group(g)) => row.int(g).int(m.msg.from_id),
                Some(Conv::Single(r)) => row.int(r).int(m.msg.from_id).int(m.msg.to_id),
                None => row,
            }
            .int(m.msg_id)
            .text(&contents[i])
            .int(m.msg.msg_type.as_u32())
            .int(0u32)
            .int(m.msg.created)
            .int(m.msg.created);
        }
    }
}
