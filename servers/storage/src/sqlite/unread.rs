//! Unread counters (FLOWS.md 7): single counts in `IMCacheUnread` (+1 per stored message, row
//! deleted on read), group counts as the group's message count (`IMCacheGroupCounter`) minus
//! the member's read mark (`IMCacheUserGroupRead`).

use rusqlite::Connection;

use crate::error::StorageResult;
use crate::types::{GroupId, SessionType, UnreadSummary, UserId};

use super::messages;
use super::row::u32_at;
use super::writer::Tx;

/// Single sessions first (by peer id), then the groups `user` is a member of (most recently
/// joined first), each with its newest message; see [`crate::Store::unread`].
pub(super) fn unread(conn: &Connection, user: UserId) -> StorageResult<Vec<UnreadSummary>> {
    let singles = conn
        .prepare_cached(
            "SELECT peerId, count FROM IMCacheUnread WHERE userId = ?1 AND count > 0 \
             ORDER BY peerId",
        )?
        .query_map([user], |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let groups = conn
        .prepare_cached(
            "SELECT m.groupId, c.msgCount - COALESCE(r.count, 0) FROM IMGroupMember m \
             JOIN IMCacheGroupCounter c ON c.groupId = m.groupId \
             LEFT JOIN IMCacheUserGroupRead r ON r.userId = m.userId AND r.groupId = m.groupId \
             WHERE m.userId = ?1 AND m.status = 0 AND c.msgCount > COALESCE(r.count, 0) \
             ORDER BY m.updated DESC, m.id DESC",
        )?
        .query_map([user], |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(singles.len() + groups.len());
    for (peer, count) in singles {
        if let Some(last) = messages::last_visible(conn, user, SessionType::Single, peer)? {
            out.push(UnreadSummary {
                peer_id: peer,
                session_type: SessionType::Single,
                count,
                last,
            });
        }
    }
    for (group, count) in groups {
        if let Some(last) = messages::last_group(conn, group)? {
            out.push(UnreadSummary {
                peer_id: group,
                session_type: SessionType::Group,
                count,
                last,
            });
        }
    }
    Ok(out)
}

/// Total unread (single + group) per requested user, in request order.
pub(super) fn totals(conn: &Connection, users: &[UserId]) -> StorageResult<Vec<(UserId, u32)>> {
    let mut single =
        conn.prepare_cached("SELECT COALESCE(SUM(count), 0) FROM IMCacheUnread WHERE userId = ?1")?;
    let mut group = conn.prepare_cached(
        "SELECT COALESCE(SUM(MAX(c.msgCount - COALESCE(r.count, 0), 0)), 0) \
         FROM IMGroupMember m JOIN IMCacheGroupCounter c ON c.groupId = m.groupId \
         LEFT JOIN IMCacheUserGroupRead r ON r.userId = m.userId AND r.groupId = m.groupId \
         WHERE m.userId = ?1 AND m.status = 0",
    )?;
    let mut out = Vec::with_capacity(users.len());
    for &user in users {
        let s = single.query_row([user], |row| u32_at(row, 0))?;
        let g = group.query_row([user], |row| u32_at(row, 0))?;
        out.push((user, s.saturating_add(g)));
    }
    Ok(out)
}

/// Sets `user`'s read mark of `group` to the group's message count (0 unread).
pub(super) fn mark_group_read(tx: &Tx<'_>, user: UserId, group: GroupId) -> StorageResult<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheUserGroupRead (userId, groupId, count) \
             SELECT ?1, groupId, msgCount FROM IMCacheGroupCounter WHERE groupId = ?2 \
             ON CONFLICT (userId, groupId) DO UPDATE SET count = excluded.count",
        )?
        .execute((user, group))?;
    Ok(())
}

/// Read ack: clears the whole unread count of one session.
pub(super) fn clear(
    tx: &Tx<'_>,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<()> {
    match session_type {
        SessionType::Single => {
            tx.conn
                .prepare_cached("DELETE FROM IMCacheUnread WHERE userId = ?1 AND peerId = ?2")?
                .execute((user, peer))?;
            Ok(())
        }
        SessionType::Group => mark_group_read(tx, user, peer),
    }
}
