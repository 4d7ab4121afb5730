//! Recent sessions (STORAGE.md 4.2 and 4.6, FLOWS.md 8). The unique index on
//! (userId, peerId, type) keeps one row per conversation (WEAKNESSES 26), so "create or
//! reactivate and touch" is one upsert.

use rusqlite::{Connection, OptionalExtension};

use crate::error::StorageResult;
use crate::types::{SessionSummary, SessionType, Timestamp, UserId};

use super::messages;
use super::row::u32_at;
use super::unread;
use super::writer::Tx;

/// Makes `user`'s session with `peer` active and sets `updated` to now (no write at all when
/// it already is: a busy conversation touches its sessions once per second, not per message).
pub(super) fn touch_session(
    tx: &Tx<'_>,
    user: UserId,
    peer: u32,
    session_type: SessionType,
) -> StorageResult<()> {
    if tx
        .memo
        .borrow_mut()
        .session_touched((user, peer, session_type as u8), tx.now)
    {
        return Ok(());
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO IMRecentSession (userId, peerId, type, status, created, updated) \
             VALUES (?1, ?2, ?3, 0, ?4, ?4) ON CONFLICT (userId, peerId, type) \
             DO UPDATE SET status = 0, updated = excluded.updated \
             WHERE status != 0 OR updated != excluded.updated",
        )?
        .execute((user, peer, session_type as u8, tx.now))?;
    Ok(())
}

/// Active sessions updated after `since`, newest first, each with the newest message the user
/// may read (groups: since joining); sessions without one are skipped and do not count
/// towards `limit`.
pub(super) fn recent(
    conn: &Connection,
    user: UserId,
    since: Timestamp,
    limit: u32,
) -> StorageResult<Vec<SessionSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT peerId, type, updated FROM IMRecentSession \
         WHERE userId = ?1 AND status = 0 AND updated > ?2 ORDER BY updated DESC, id DESC",
    )?;
    let mut rows = stmt.query((user, since))?;
    let mut out = Vec::new();
    while out.len() < limit as usize {
        let Some(row) = rows.next()? else {
            break;
        };
        let Some(session_type) = SessionType::from_u32(u32_at(row, 1)?) else {
            continue;
        };
        let peer_id = u32_at(row, 0)?;
        let updated = u32_at(row, 2)?;
        if let Some(last) = messages::last_visible(conn, user, session_type, peer_id)? {
            out.push(SessionSummary {
                peer_id,
                session_type,
                updated,
                last,
            });
        }
    }
    Ok(out)
}

/// Hides an active session and clears its unread count; `false` if there was none.
pub(super) fn remove(
    tx: &Tx<'_>,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<bool> {
    let id: Option<i64> = tx
        .conn
        .prepare_cached(
            "SELECT id FROM IMRecentSession \
             WHERE userId = ?1 AND peerId = ?2 AND type = ?3 AND status = 0",
        )?
        .query_row((user, peer, session_type as u8), |row| row.get(0))
        .optional()?;
    let Some(id) = id else {
        return Ok(false);
    };
    tx.conn
        .prepare_cached("UPDATE IMRecentSession SET status = 1, updated = ?2 WHERE id = ?1")?
        .execute((id, tx.now))?;
    tx.memo.borrow_mut().forget_sessions();
    unread::clear(tx, user, session_type, peer)?;
    Ok(true)
}

/// The periodic group-session sync (STORAGE.md 4.6) in one statement: every member of every
/// group that chatted since `since` gets its group session's `updated` = `lastChated`
/// (status untouched, so a removed session stays removed), a missing session is created
/// active. Returns the writer's now: messages stored later set `lastChated >= ` it.
pub(super) fn sync_groups(tx: &Tx<'_>, since: Timestamp) -> StorageResult<Timestamp> {
    let n = tx
        .conn
        .prepare_cached(
            "INSERT INTO IMRecentSession (userId, peerId, type, status, created, updated) \
             SELECT m.userId, g.id, 2, 0, ?2, g.lastChated FROM IMGroup g \
             JOIN IMGroupMember m ON m.groupId = g.id AND m.status = 0 \
             WHERE g.status = 0 AND g.lastChated >= ?1 AND g.lastChated != 0 \
             ON CONFLICT (userId, peerId, type) DO UPDATE SET updated = excluded.updated \
             WHERE updated != excluded.updated",
        )?
        .execute((since, tx.now))?;
    tx.memo.borrow_mut().forget_sessions();
    if n > 0 {
        tracing::debug!(sessions = n, since, "group sessions synced");
    }
    Ok(tx.now)
}
