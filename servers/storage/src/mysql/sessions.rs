//! `IMRecentSession`: each user's conversation list (FLOWS.md 8).
//!
//! One row per (userId, peerId, type), kept so by the unique key (an upsert) or, where old
//! data holds duplicates, by a locking read of the newest row before updating or inserting
//! (the original's getSessionId also picks the newest).

use std::collections::{BTreeMap, HashSet};

use sqlx::MySqlConnection;

use super::rows::{col_u8, col_u32, now, sql};
use super::{Inner, members, messages};
use crate::error::StorageResult;
use crate::types::{SessionSummary, SessionType, Timestamp, UserId};

/// Most rows per multi-row upsert.
const ROWS_PER_UPSERT: usize = 500;

/// A session to touch: `updated` becomes at least `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// Owner.
    pub user: UserId,
    /// Peer user or group.
    pub peer: u32,
    /// 1 single, 2 group.
    pub kind: u8,
    /// New `updated`.
    pub time: Timestamp,
}

/// Touches sessions (sorted by key, for a stable lock order): existing rows get
/// `updated = GREATEST(updated, time)` and, with `reactivate`, status 0; missing rows are
/// inserted active.
pub async fn upsert(
    conn: &mut MySqlConnection,
    keyed: bool,
    rows: &[Touch],
    reactivate: bool,
) -> StorageResult<()> {
    if keyed {
        let set = if reactivate {
            "status = 0, updated = GREATEST(updated, VALUES(updated))"
        } else {
            "updated = GREATEST(updated, VALUES(updated))"
        };
        for chunk in rows.chunks(ROWS_PER_UPSERT) {
            let values = vec!["(?,?,?,0,?,?)"; chunk.len()].join(",");
            let text = format!(
                "INSERT INTO IMRecentSession (userId, peerId, type, status, created, updated) \
                 VALUES {values} ON DUPLICATE KEY UPDATE {set}"
            );
            let mut q = sqlx::query(sql(text)).persistent(false);
            for t in chunk {
                q = q
                    .bind(t.user)
                    .bind(t.peer)
                    .bind(t.kind)
                    .bind(t.time)
                    .bind(t.time);
            }
            q.execute(&mut *conn).await?;
        }
        return Ok(());
    }
    for t in rows {
        let found = sqlx::query(
            "SELECT id FROM IMRecentSession WHERE userId = ? AND peerId = ? AND type = ? \
             ORDER BY id DESC LIMIT 1 FOR UPDATE",
        )
        .bind(t.user)
        .bind(t.peer)
        .bind(t.kind)
        .fetch_optional(&mut *conn)
        .await?;
        match found {
            Some(row) => {
                let id = col_u32(&row, 0)?;
                let text = if reactivate {
                    "UPDATE IMRecentSession SET status = 0, updated = GREATEST(updated, ?) WHERE id = ?"
                } else {
                    "UPDATE IMRecentSession SET updated = GREATEST(updated, ?) WHERE id = ?"
                };
                sqlx::query(text)
                    .bind(t.time)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO IMRecentSession (userId, peerId, type, status, created, updated) \
                     VALUES (?, ?, ?, 0, ?, ?)",
                )
                .bind(t.user)
                .bind(t.peer)
                .bind(t.kind)
                .bind(t.time)
                .bind(t.time)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Active sessions with `updated > since`, newest first, each with its newest message.
pub async fn recent(
    inner: &Inner,
    user: UserId,
    since: Timestamp,
    limit: u32,
) -> StorageResult<Vec<SessionSummary>> {
    // Primary: a client asks right after its own message touched the session.
    let pool = inner.pools.primary();
    let rows = sqlx::query(
        "SELECT peerId, type, updated FROM IMRecentSession \
         WHERE userId = ? AND status = 0 AND updated > ? ORDER BY updated DESC, id DESC LIMIT ?",
    )
    .bind(user)
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let peer = col_u32(&row, 0)?;
        let Some(session_type) = SessionType::from_u32(u32::from(col_u8(&row, 1)?)) else {
            continue;
        };
        // Old data may hold several rows for one conversation: keep the newest.
        if !seen.insert((peer, session_type)) {
            continue;
        }
        let updated = col_u32(&row, 2)?;
        let last = match session_type {
            SessionType::Single => messages::last_single(pool, user, peer).await?,
            SessionType::Group => messages::last_group(pool, peer).await?,
        };
        if let Some(last) = last {
            out.push(SessionSummary {
                peer_id: peer,
                session_type,
                updated,
                last,
            });
        }
    }
    Ok(out)
}

/// Hides a session and clears its unread count; `false` without an active session.
pub async fn remove(
    inner: &Inner,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<bool> {
    let mut tx = inner.pools.primary().begin().await?;
    let updated = sqlx::query(
        "UPDATE IMRecentSession SET status = 1, updated = ? \
         WHERE userId = ? AND peerId = ? AND type = ? AND status = 0",
    )
    .bind(now())
    .bind(user)
    .bind(peer)
    .bind(session_type as u8)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    let cmd = super::store_batch::clear_cmd(inner, user, session_type, peer);
    inner
        .cache
        .run(crate::redis_cache::Pool::Unread, vec![cmd])
        .await?;
    Ok(true)
}

/// STORAGE.md 4.6: group sessions of every member follow the groups' `lastChated`.
pub async fn sync_groups(inner: &Inner, since: Timestamp) -> StorageResult<Timestamp> {
    let pool = inner.pools.primary();
    let rows = sqlx::query(
        "SELECT id, lastChated FROM IMGroup WHERE status = 0 AND lastChated >= ? AND lastChated <> 0",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut watermark = since;
    let mut chats: BTreeMap<u32, Timestamp> = BTreeMap::new();
    for row in rows {
        let (group, last) = (col_u32(&row, 0)?, col_u32(&row, 1)?);
        watermark = watermark.max(last);
        chats.insert(group, last);
    }
    let mut touches: Vec<Touch> = Vec::new();
    for (&group, &last) in &chats {
        // The member hash, as the original (rebuilt from MySQL when missing).
        let Some(list) = members::members(inner, group).await? else {
            continue;
        };
        touches.extend(list.iter().map(|m| Touch {
            user: m.user_id,
            peer: group,
            kind: SessionType::Group as u8,
            time: last,
        }));
    }
    touches.sort_by_key(|t| (t.user, t.peer, t.kind));
    touches.dedup_by_key(|t| (t.user, t.peer, t.kind));
    for chunk in touches.chunks(ROWS_PER_UPSERT) {
        let mut tx = pool.begin().await?;
        upsert(&mut tx, inner.unique.session, chunk, false).await?;
        tx.commit().await?;
    }
    Ok(watermark)
}
