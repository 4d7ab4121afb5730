//! Groups (STORAGE.md 4.4, FLOWS.md 12). In SQLite mode `IMGroupMember` is the membership
//! truth (status 0 = member, `updated` = join time), so nothing can drift apart as the
//! original's Redis hash did (WEAKNESSES 25); a group exists when its `IMGroup` row does.

use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::{StorageError, StorageResult};
use crate::types::{
    ChangeOutcome, Group, GroupId, GroupKind, GroupMember, MemberChange, NewGroup, ShieldOutcome,
    UserId,
};

use super::row::{text_at, u8_at, u32_at};
use super::unread;
use super::writer::Tx;

/// `IM_GROUP_SETTING_PUSH`, the only group setting type.
const SETTING_PUSH: u32 = 1;

macro_rules! group_cols {
    () => {
        "id, name, avatar, creator, type, version, status, lastChated, created, updated"
    };
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: u32_at(row, 0)?,
        name: text_at(row, 1)?,
        avatar: text_at(row, 2)?,
        creator: u32_at(row, 3)?,
        kind: GroupKind::from_u32(u32_at(row, 4)?).unwrap_or(GroupKind::Normal),
        version: u32_at(row, 5)?,
        status: u8_at(row, 6)?,
        last_chated: u32_at(row, 7)?,
        created: u32_at(row, 8)?,
        updated: u32_at(row, 9)?,
        members: Vec::new(),
    })
}

/// Current members with join times, in the order they were first added.
pub(super) fn members(conn: &Connection, group: GroupId) -> StorageResult<Vec<GroupMember>> {
    let members = conn
        .prepare_cached(
            "SELECT userId, updated FROM IMGroupMember WHERE groupId = ?1 AND status = 0 \
             ORDER BY id",
        )?
        .query_map([group], |row| {
            Ok(GroupMember {
                user_id: u32_at(row, 0)?,
                joined: u32_at(row, 1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(members)
}

fn exists(conn: &Connection, group: GroupId) -> StorageResult<bool> {
    let found = conn
        .prepare_cached("SELECT 1 FROM IMGroup WHERE id = ?1")?
        .query_row([group], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

fn is_member(conn: &Connection, group: GroupId, user: UserId) -> StorageResult<bool> {
    Ok(super::messages::join_time(conn, group, user)?.is_some())
}

/// Normal groups `user` belongs to, with versions, `updated` desc.
pub(super) fn normal_groups(conn: &Connection, user: UserId) -> StorageResult<Vec<(GroupId, u32)>> {
    let groups = conn
        .prepare_cached(
            "SELECT g.id, g.version FROM IMGroupMember m JOIN IMGroup g ON g.id = m.groupId \
             WHERE m.userId = ?1 AND m.status = 0 AND g.type = 1 \
             ORDER BY g.updated DESC, g.id DESC",
        )?
        .query_map([user], |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(groups)
}

/// Groups by id with members, `updated` desc; unknown ids skipped.
pub(super) fn groups(conn: &Connection, ids: &[GroupId]) -> StorageResult<Vec<Group>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        group_cols!(),
        " FROM IMGroup WHERE id = ?1"
    ))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(mut group) = stmt.query_row([id], group_from_row).optional()? {
            group.members = members(conn, id)?;
            out.push(group);
        }
    }
    out.sort_by_key(|g| std::cmp::Reverse((g.updated, g.id)));
    Ok(out)
}

/// Groups by id after `after_id`, with members (admin listing).
pub(super) fn list_groups(
    conn: &Connection,
    after_id: GroupId,
    limit: u32,
) -> StorageResult<Vec<Group>> {
    let mut out = conn
        .prepare_cached(concat!(
            "SELECT ",
            group_cols!(),
            " FROM IMGroup WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map((after_id, limit), group_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for group in &mut out {
        group.members = members(conn, group.id)?;
    }
    Ok(out)
}

/// Makes `user` an active member with join time now; `true` if a row was inserted (rather
/// than reactivated or already active).
fn join(tx: &Tx<'_>, group: GroupId, user: UserId) -> StorageResult<bool> {
    let updated = tx
        .conn
        .prepare_cached(
            "UPDATE IMGroupMember SET status = 0, updated = ?3 WHERE groupId = ?1 AND userId = ?2",
        )?
        .execute((group, user, tx.now))?;
    if updated > 0 {
        return Ok(false);
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO IMGroupMember (groupId, userId, status, created, updated) \
             VALUES (?1, ?2, 0, ?3, ?3)",
        )?
        .execute((group, user, tx.now))?;
    Ok(true)
}

fn dedup(users: &[UserId]) -> Vec<UserId> {
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    users.iter().copied().filter(|u| seen.insert(*u)).collect()
}

/// Creates a group with its members; see [`crate::Store::create_group`].
pub(super) fn create(tx: &Tx<'_>, group: &NewGroup) -> StorageResult<GroupId> {
    if group.name.is_empty() {
        return Err(StorageError::Invalid("group name is empty".into()));
    }
    let users = dedup(&group.members);
    if users.is_empty() {
        return Err(StorageError::Invalid("group member list is empty".into()));
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO IMGroup (name, avatar, creator, type, userCnt, status, version, \
             lastChated, updated, created) VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, 0, ?6, ?6)",
        )?
        .execute((
            &group.name,
            &group.avatar,
            group.creator,
            group.kind as u8,
            users.len() as u32,
            tx.now,
        ))?;
    let id = tx.conn.last_insert_rowid() as GroupId;
    tx.conn
        .prepare_cached(
            "INSERT OR REPLACE INTO IMCacheGroupCounter (groupId, msgId, msgCount) VALUES (?1, 0, 0)",
        )?
        .execute([id])?;
    for user in users {
        join(tx, id, user)?;
    }
    Ok(id)
}

/// Adds or removes members; see [`crate::Store::change_members`] for the rules.
pub(super) fn change_members(
    tx: &Tx<'_>,
    requester: UserId,
    group: GroupId,
    change: MemberChange,
    users: &[UserId],
) -> StorageResult<ChangeOutcome> {
    let found = tx
        .conn
        .prepare_cached("SELECT creator, type FROM IMGroup WHERE id = ?1")?
        .query_row([group], |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)))
        .optional()?;
    let Some((creator, kind)) = found else {
        return Ok(ChangeOutcome::NoSuchGroup);
    };
    let temporary = kind == GroupKind::Temporary as u32;
    let allowed = requester == 0
        || requester == creator
        || (temporary && change == MemberChange::Add && is_member(tx.conn, group, requester)?);
    if !allowed {
        return Ok(ChangeOutcome::Denied);
    }
    let mut users = dedup(users);
    match change {
        MemberChange::Add => {
            let mut fresh = Vec::with_capacity(users.len());
            for user in users {
                if !is_member(tx.conn, group, user)? {
                    fresh.push(user);
                }
            }
            users = fresh;
            if users.is_empty() {
                return Ok(ChangeOutcome::NothingToChange);
            }
            let mut inserted = 0u32;
            for &user in &users {
                inserted += u32::from(join(tx, group, user)?);
            }
            tx.conn
                .prepare_cached("UPDATE IMGroup SET userCnt = userCnt + ?2 WHERE id = ?1")?
                .execute((group, inserted))?;
        }
        MemberChange::Remove => {
            if users.is_empty() {
                return Ok(ChangeOutcome::NothingToChange);
            }
            let mut leave = tx.conn.prepare_cached(
                "UPDATE IMGroupMember SET status = 1 WHERE groupId = ?1 AND userId = ?2",
            )?;
            let mut hide = tx.conn.prepare_cached(
                "UPDATE IMRecentSession SET status = 1, updated = ?3 \
                 WHERE userId = ?1 AND peerId = ?2 AND type = 2 AND status = 0",
            )?;
            for &user in &users {
                leave.execute((group, user))?;
                hide.execute((user, group, tx.now))?;
            }
            tx.memo.borrow_mut().forget_sessions();
        }
    }
    let version: u32 = tx
        .conn
        .prepare_cached("UPDATE IMGroup SET version = version + 1 WHERE id = ?1 RETURNING version")?
        .query_row([group], |row| u32_at(row, 0))?;
    for &user in &users {
        unread::mark_group_read(tx, user, group)?;
    }
    let current = members(tx.conn, group)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(ChangeOutcome::Changed {
        current,
        changed: users,
        version,
    })
}

/// Current members; `None` if the group does not exist.
pub(super) fn group_members(
    conn: &Connection,
    group: GroupId,
) -> StorageResult<Option<Vec<GroupMember>>> {
    if !exists(conn, group)? {
        return Ok(None);
    }
    members(conn, group).map(Some)
}

/// Sets a member's push mute for the group.
pub(super) fn set_shield(
    tx: &Tx<'_>,
    user: UserId,
    group: GroupId,
    on: bool,
) -> StorageResult<ShieldOutcome> {
    if !exists(tx.conn, group)? {
        return Ok(ShieldOutcome::NoSuchGroup);
    }
    if !is_member(tx.conn, group, user)? {
        return Ok(ShieldOutcome::NotMember);
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheGroupSet (groupId, userId, settingType, value) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (groupId, userId, settingType) \
             DO UPDATE SET value = excluded.value",
        )?
        .execute((group, user, SETTING_PUSH, u32::from(on)))?;
    Ok(ShieldOutcome::Done)
}

/// Push mute per requested user (false when never set); `None` if no such group.
pub(super) fn shields(
    conn: &Connection,
    group: GroupId,
    users: &[UserId],
) -> StorageResult<Option<Vec<(UserId, bool)>>> {
    if !exists(conn, group)? {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT value FROM IMCacheGroupSet WHERE groupId = ?1 AND userId = ?2 AND settingType = ?3",
    )?;
    let mut out = Vec::with_capacity(users.len());
    for &user in users {
        let v = stmt
            .query_row((group, user, SETTING_PUSH), |row| u32_at(row, 0))
            .optional()?;
        out.push((user, v.is_some_and(|v| v != 0)));
    }
    Ok(Some(out))
}
