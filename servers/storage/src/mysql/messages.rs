//! Reading messages (FLOWS.md 9): history, by ids, latest id, and a conversation's newest
//! message for session and unread lists. Rows of `IMMessage_<relateId % 8>` and
//! `IMGroupMessage_<groupId % 8>`; voice rows hold an `IMAudio` id as decimal text.

use std::collections::HashMap;

use sqlx::MySqlPool;
use sqlx::mysql::MySqlRow;

use super::rows::{col_bytes, col_str, col_u32, placeholders, sql, unique_sorted};
use super::schema::{group_message_table, message_table};
use super::{Inner, content, members, relations};
use crate::error::StorageResult;
use crate::types::{AudioRef, MessageContent, MsgId, MsgType, SessionType, StoredMessage, UserId};

/// Most ids answered by [`by_ids`] (the original's `LIMIT 100`).
const MAX_BY_IDS: usize = 100;

/// Most ids looked up by one [`by_ids`] call (the largest ones are kept).
const MAX_ID_LIST: usize = 10_000;

/// Columns every message query selects, in this order.
const SINGLE_COLS: &str = "msgId, fromId, created, type, content";
const GROUP_COLS: &str = "msgId, userId, created, type, content";

/// The stored type of a row. Unknown values are read as text of the table's kind (the group
/// table's schema comment mentions 2 = text and 101 = voice; db_proxy always wrote 17/18).
fn row_type(kind: u32, group: bool) -> MsgType {
    match (group, kind) {
        (false, 2) => MsgType::SingleAudio,
        (false, _) => MsgType::SingleText,
        (true, 0x12 | 101) => MsgType::GroupAudio,
        (true, _) => MsgType::GroupText,
    }
}

struct Raw {
    msg_id: MsgId,
    from_id: UserId,
    created: u32,
    msg_type: MsgType,
    content: Vec<u8>,
}

fn raw(row: &MySqlRow, group: bool) -> StorageResult<Raw> {
    Ok(Raw {
        msg_id: col_u32(row, 0)?,
        from_id: col_u32(row, 1)?,
        created: col_u32(row, 2)?,
        msg_type: row_type(col_u32(row, 3)?, group),
        content: col_bytes(row, 4)?,
    })
}

/// Turns rows into messages, reading the `IMAudio` rows of voice messages. A voice row whose
/// audio row is missing keeps its id with an empty path (db_proxy then has nothing to fetch).
async fn finish(pool: &MySqlPool, raws: Vec<Raw>) -> StorageResult<Vec<StoredMessage>> {
    let audio_ids: Vec<u32> = raws
        .iter()
        .filter(|r| r.msg_type.is_audio())
        .filter_map(|r| std::str::from_utf8(&r.content).ok()?.trim().parse().ok())
        .collect();
    let mut audio: HashMap<u32, AudioRef> = HashMap::new();
    let audio_ids = unique_sorted(&audio_ids);
    if !audio_ids.is_empty() {
        let text = format!(
            "SELECT id, path, size, duration FROM IMAudio WHERE id IN ({})",
            placeholders(audio_ids.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for id in &audio_ids {
            q = q.bind(id);
        }
        for row in q.fetch_all(pool).await? {
            let a = AudioRef {
                id: col_u32(&row, 0)?,
                path: col_str(&row, 1)?,
                size: col_u32(&row, 2)?,
                duration: col_u32(&row, 3)?,
            };
            audio.insert(a.id, a);
        }
    }
    Ok(raws
        .into_iter()
        .map(|r| {
            let content = if r.msg_type.is_audio() {
                let id = std::str::from_utf8(&r.content)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                MessageContent::Audio(audio.get(&id).cloned().unwrap_or(AudioRef {
                    id,
                    path: String::new(),
                    size: 0,
                    duration: 0,
                }))
            } else {
                MessageContent::Text(content::decode(r.content))
            };
            StoredMessage {
                msg_id: r.msg_id,
                from_id: r.from_id,
                created: r.created,
                msg_type: r.msg_type,
                content,
            }
        })
        .collect())
}

/// The newest visible message of a user pair (nothing is created).
pub async fn last_single(
    pool: &MySqlPool,
    user: UserId,
    peer: UserId,
) -> StorageResult<Option<StoredMessage>> {
    let Some(relate_id) = relations::find(pool, user, peer).await? else {
        return Ok(None);
    };
    let text = format!(
        "SELECT {SINGLE_COLS} FROM {} FORCE INDEX (idx_relateId_status_created) \
         WHERE relateId = ? AND status = 0 ORDER BY created DESC, id DESC LIMIT 1",
        message_table(relate_id)
    );
    let row = sqlx::query(sql(text))
        .bind(relate_id)
        .fetch_optional(pool)
        .await?;
    let raws = row
        .map(|r| raw(&r, false))
        .transpose()?
        .into_iter()
        .collect();
    Ok(finish(pool, raws).await?.pop())
}

/// The newest visible message of a group.
pub async fn last_group(pool: &MySqlPool, group: u32) -> StorageResult<Option<StoredMessage>> {
    let text = format!(
        "SELECT {GROUP_COLS} FROM {} WHERE groupId = ? AND status = 0 \
         ORDER BY created DESC, id DESC LIMIT 1",
        group_message_table(group)
    );
    let row = sqlx::query(sql(text))
        .bind(group)
        .fetch_optional(pool)
        .await?;
    let raws = row
        .map(|r| raw(&r, true))
        .transpose()?
        .into_iter()
        .collect();
    Ok(finish(pool, raws).await?.pop())
}

/// Which ids a query may see.
enum Filter<'a> {
    /// `msgId <= begin` when begin != 0, at most `count` rows.
    Range { begin: MsgId, count: u32 },
    /// `msgId IN (ids)`.
    Ids(&'a [MsgId]),
}

/// History (FLOWS.md 9) on a replica: a little staleness is harmless here.
pub async fn history(
    inner: &Inner,
    user: UserId,
    session_type: SessionType,
    peer: u32,
    begin: MsgId,
    count: u32,
) -> StorageResult<Vec<StoredMessage>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    query(
        inner,
        user,
        session_type,
        peer,
        Filter::Range { begin, count },
    )
    .await
}

/// The messages with these ids (at most 100), newest first.
pub async fn by_ids(
    inner: &Inner,
    user: UserId,
    session_type: SessionType,
    peer: u32,
    ids: &[MsgId],
) -> StorageResult<Vec<StoredMessage>> {
    let mut ids = unique_sorted(ids);
    // The newest 100 of the requested ids are answered; the list itself is bounded only to
    // keep the statement small (a client asks for far fewer).
    if ids.len() > MAX_ID_LIST {
        ids.drain(..ids.len() - MAX_ID_LIST);
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    query(inner, user, session_type, peer, Filter::Ids(&ids)).await
}

async fn query(
    inner: &Inner,
    user: UserId,
    session_type: SessionType,
    peer: u32,
    filter: Filter<'_>,
) -> StorageResult<Vec<StoredMessage>> {
    let pool = inner.pools.replica();
    let (id_cond, limit) = match &filter {
        Filter::Range { begin: 0, count } => (String::new(), *count as usize),
        Filter::Range { count, .. } => (" AND msgId <= ?".to_owned(), *count as usize),
        Filter::Ids(ids) => (
            format!(" AND msgId IN ({})", placeholders(ids.len())),
            MAX_BY_IDS,
        ),
    };
    let bind_ids =
        |mut q: sqlx::query::Query<'static, sqlx::MySql, sqlx::mysql::MySqlArguments>| {
            match &filter {
                Filter::Range { begin: 0, .. } => {}
                Filter::Range { begin, .. } => q = q.bind(*begin),
                Filter::Ids(ids) => {
                    for id in ids.iter() {
                        q = q.bind(*id);
                    }
                }
            }
            q.bind(u32::try_from(limit).unwrap_or(u32::MAX))
        };
    let raws = match session_type {
        SessionType::Single => {
            let Some(relate_id) = relations::find(pool, user, peer).await? else {
                return Ok(Vec::new());
            };
            let text = format!(
                "SELECT {SINGLE_COLS} FROM {} FORCE INDEX (idx_relateId_status_created) \
                 WHERE relateId = ? AND status = 0{id_cond} ORDER BY created DESC, id DESC LIMIT ?",
                message_table(relate_id)
            );
            let q = bind_ids(sqlx::query(sql(text)).persistent(false).bind(relate_id));
            let rows = q.fetch_all(pool).await?;
            rows.iter()
                .map(|r| raw(r, false))
                .collect::<StorageResult<Vec<_>>>()?
        }
        SessionType::Group => {
            // Members only, and only from their join time on.
            let Some(Some(joined)) = members::membership(inner, peer, user).await? else {
                return Ok(Vec::new());
            };
            let text = format!(
                "SELECT {GROUP_COLS} FROM {} WHERE groupId = ? AND status = 0 AND created >= ?\
                 {id_cond} ORDER BY created DESC, id DESC LIMIT ?",
                group_message_table(peer)
            );
            let q = bind_ids(
                sqlx::query(sql(text))
                    .persistent(false)
                    .bind(peer)
                    .bind(joined),
            );
            let rows = q.fetch_all(pool).await?;
            rows.iter()
                .map(|r| raw(r, true))
                .collect::<StorageResult<Vec<_>>>()?
        }
    };
    finish(pool, raws).await
}

/// Id of a conversation's newest message, 0 if none (groups: 0 unless `user` is a member).
pub async fn latest_id(
    inner: &Inner,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<MsgId> {
    // Primary: asked right after a store.
    let pool = inner.pools.primary();
    let last = match session_type {
        SessionType::Single => last_single(pool, user, peer).await?,
        SessionType::Group => {
            if !matches!(members::membership(inner, peer, user).await?, Some(Some(_))) {
                return Ok(0);
            }
            last_group(pool, peer).await?
        }
    };
    Ok(last.map_or(0, |m| m.msg_id))
}
