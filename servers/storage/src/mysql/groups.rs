//! Groups (FLOWS.md 12): lists, info, create, member changes, push mute.
//!
//! MySQL is the truth for membership; the Redis hash `group_member_<G>` is rewritten from the
//! committed rows after every change (and rebuilt when missing, [`super::members`]). A member
//! change locks the group row (`SELECT ... FOR UPDATE`), which serializes changes of one group
//! across processes and keeps member rows unique even without the unique key.

use std::collections::{BTreeMap, HashSet};

use sqlx::MySqlConnection;
use sqlx::mysql::MySqlRow;

use super::rows::{col_str, col_u8, col_u32, now, placeholders, sql, unique_sorted};
use super::{Inner, members, store_batch};
use crate::error::{StorageError, StorageResult};
use crate::redis_cache::{Keys, Pool, decode};
use crate::types::{
    ChangeOutcome, Group, GroupId, GroupKind, GroupMember, MemberChange, NewGroup, ShieldOutcome,
    UserId,
};

/// Most ids per `IN` list.
const CHUNK: usize = 500;

/// Longest group name and avatar URL (`varchar(256)`).
const MAX_NAME_CHARS: usize = 256;

const GROUP_COLS: &str =
    "id, name, avatar, creator, type, version, status, lastChated, created, updated";

fn group_row(row: &MySqlRow) -> StorageResult<Group> {
    Ok(Group {
        id: col_u32(row, 0)?,
        name: col_str(row, 1)?,
        avatar: col_str(row, 2)?,
        creator: col_u32(row, 3)?,
        kind: GroupKind::from_u32(col_u32(row, 4)?).unwrap_or(GroupKind::Normal),
        version: col_u32(row, 5)?,
        status: col_u8(row, 6)?,
        last_chated: col_u32(row, 7)?,
        created: col_u32(row, 8)?,
        updated: col_u32(row, 9)?,
        members: Vec::new(),
    })
}

/// Normal groups `user` is an active member of, with versions, newest first.
pub async fn normal_groups(inner: &Inner, user: UserId) -> StorageResult<Vec<(GroupId, u32)>> {
    // Primary: asked right after a member change.
    let rows = sqlx::query(
        "SELECT g.id, g.version FROM IMGroup g \
         WHERE g.type = 1 AND g.id IN \
           (SELECT m.groupId FROM IMGroupMember m WHERE m.userId = ? AND m.status = 0) \
         ORDER BY g.updated DESC, g.id DESC",
    )
    .bind(user)
    .fetch_all(inner.pools.primary())
    .await?;
    rows.iter()
        .map(|r| Ok((col_u32(r, 0)?, col_u32(r, 1)?)))
        .collect()
}

async fn with_members(inner: &Inner, mut list: Vec<Group>) -> StorageResult<Vec<Group>> {
    for g in &mut list {
        g.members = members::members(inner, g.id).await?.unwrap_or_default();
    }
    Ok(list)
}

/// Groups by id with members, newest first.
pub async fn groups(inner: &Inner, ids: &[GroupId]) -> StorageResult<Vec<Group>> {
    let ids = unique_sorted(ids);
    let mut list = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let text = format!(
            "SELECT {GROUP_COLS} FROM IMGroup WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for id in chunk {
            q = q.bind(id);
        }
        for row in q.fetch_all(inner.pools.primary()).await? {
            list.push(group_row(&row)?);
        }
    }
    list.sort_by(|a, b| b.updated.cmp(&a.updated).then(b.id.cmp(&a.id)));
    with_members(inner, list).await
}

/// Groups after `after_id`, by id, with members.
pub async fn list(inner: &Inner, after_id: GroupId, limit: u32) -> StorageResult<Vec<Group>> {
    let text = format!("SELECT {GROUP_COLS} FROM IMGroup WHERE id > ? ORDER BY id LIMIT ?");
    let rows = sqlx::query(sql(text))
        .bind(after_id)
        .bind(limit)
        .fetch_all(inner.pools.primary())
        .await?;
    let list = rows
        .iter()
        .map(group_row)
        .collect::<StorageResult<Vec<_>>>()?;
    with_members(inner, list).await
}

/// Active member rows of a locked group: user -> join time.
async fn locked_members(
    conn: &mut MySqlConnection,
    group: GroupId,
) -> StorageResult<BTreeMap<UserId, u32>> {
    let rows = sqlx::query(
        "SELECT userId, updated FROM IMGroupMember WHERE groupId = ? AND status = 0 FOR UPDATE",
    )
    .bind(group)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (u, joined) = (col_u32(&row, 0)?, col_u32(&row, 1)?);
        let e = out.entry(u).or_insert(joined);
        *e = (*e).max(joined);
    }
    Ok(out)
}

/// Makes `users` active members joined at `t`: reactivates their old rows (any status),
/// inserts rows for the others.
async fn activate(
    conn: &mut MySqlConnection,
    group: GroupId,
    users: &[UserId],
    t: u32,
) -> StorageResult<()> {
    let mut existing: HashSet<UserId> = HashSet::new();
    for chunk in users.chunks(CHUNK) {
        let text = format!(
            "SELECT DISTINCT userId FROM IMGroupMember WHERE groupId = ? AND userId IN ({}) FOR UPDATE",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false).bind(group);
        for u in chunk {
            q = q.bind(u);
        }
        for row in q.fetch_all(&mut *conn).await? {
            existing.insert(col_u32(&row, 0)?);
        }
    }
    let old: Vec<UserId> = users
        .iter()
        .copied()
        .filter(|u| existing.contains(u))
        .collect();
    for chunk in old.chunks(CHUNK) {
        let text = format!(
            "UPDATE IMGroupMember SET status = 0, updated = ? WHERE groupId = ? AND userId IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false).bind(t).bind(group);
        for u in chunk {
            q = q.bind(u);
        }
        q.execute(&mut *conn).await?;
    }
    let new: Vec<UserId> = users
        .iter()
        .copied()
        .filter(|u| !existing.contains(u))
        .collect();
    for chunk in new.chunks(CHUNK) {
        let values = vec!["(?,?,0,?,?)"; chunk.len()].join(",");
        let text = format!(
            "INSERT INTO IMGroupMember (groupId, userId, status, created, updated) VALUES {values}"
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for u in chunk {
            q = q.bind(group).bind(u).bind(t).bind(t);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Creates a group (FLOWS.md 12.3).
pub async fn create(inner: &Inner, group: NewGroup) -> StorageResult<GroupId> {
    if group.name.is_empty() {
        return Err(StorageError::Invalid("empty group name".into()));
    }
    if group.name.chars().count() > MAX_NAME_CHARS || group.avatar.chars().count() > MAX_NAME_CHARS
    {
        return Err(StorageError::Invalid(format!(
            "group name and avatar may have at most {MAX_NAME_CHARS} characters"
        )));
    }
    let users = unique_sorted(&group.members);
    if users.is_empty() {
        return Err(StorageError::Invalid("empty member list".into()));
    }
    let t = now();
    let mut tx = inner.pools.primary().begin().await?;
    let done = sqlx::query(
        "INSERT INTO IMGroup (name, avatar, creator, type, userCnt, status, version, lastChated, updated, created) \
         VALUES (?, ?, ?, ?, ?, 0, 1, 0, ?, ?)",
    )
    .bind(&group.name)
    .bind(&group.avatar)
    .bind(group.creator)
    .bind(group.kind as u8)
    .bind(u32::try_from(users.len()).unwrap_or(u32::MAX))
    .bind(t)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    let id = u32::try_from(done.last_insert_id())
        .map_err(|_| StorageError::Database("group id out of range".into()))?;
    // As the original: rows left by an earlier group with this id are not members.
    sqlx::query("DELETE FROM IMGroupMember WHERE groupId = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    activate(&mut tx, id, &users, t).await?;
    tx.commit().await?;

    let list: Vec<GroupMember> = users
        .iter()
        .map(|&u| GroupMember {
            user_id: u,
            joined: t,
        })
        .collect();
    members::write_hash(inner, id, &list).await?;
    let keys = inner.cache.keys();
    let cmds = vec![
        redis::cmd("SET")
            .arg(keys.group_msg_id(id))
            .arg(0)
            .to_owned(),
        redis::cmd("DEL").arg(keys.group_count(id)).to_owned(),
    ];
    inner.cache.run(Pool::Unread, cmds).await?;
    Ok(id)
}

/// Adds or removes members (FLOWS.md 12.4).
pub async fn change(
    inner: &Inner,
    requester: UserId,
    group: GroupId,
    change: MemberChange,
    users: &[UserId],
) -> StorageResult<ChangeOutcome> {
    let users = unique_sorted(users);
    let mut tx = inner.pools.primary().begin().await?;
    let row = sqlx::query("SELECT creator, type FROM IMGroup WHERE id = ? FOR UPDATE")
        .bind(group)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(ChangeOutcome::NoSuchGroup);
    };
    let creator = col_u32(&row, 0)?;
    let kind = GroupKind::from_u32(col_u32(&row, 1)?).unwrap_or(GroupKind::Normal);
    let mut current = locked_members(&mut tx, group).await?;
    let allowed = requester == 0
        || match (kind, change) {
            // The original lets anyone add to a temporary group (WEAKNESSES 11).
            (GroupKind::Temporary, MemberChange::Add) => current.contains_key(&requester),
            _ => requester == creator,
        };
    if !allowed {
        return Ok(ChangeOutcome::Denied);
    }
    if users.is_empty() {
        return Ok(ChangeOutcome::NothingToChange);
    }
    let t = now();
    let changed: Vec<UserId> = match change {
        MemberChange::Add => {
            let add: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| !current.contains_key(u))
                .collect();
            if add.is_empty() {
                return Ok(ChangeOutcome::NothingToChange);
            }
            activate(&mut tx, group, &add, t).await?;
            for &u in &add {
                current.insert(u, t);
            }
            add
        }
        MemberChange::Remove => {
            for chunk in users.chunks(CHUNK) {
                let list = placeholders(chunk.len());
                let text = format!(
                    "UPDATE IMGroupMember SET status = 1 WHERE groupId = ? AND userId IN ({list}) AND status = 0"
                );
                let mut q = sqlx::query(sql(text)).persistent(false).bind(group);
                for u in chunk {
                    q = q.bind(u);
                }
                q.execute(&mut *tx).await?;
                let text = format!(
                    "UPDATE IMRecentSession SET status = 1, updated = ? \
                     WHERE peerId = ? AND type = 2 AND status = 0 AND userId IN ({list})"
                );
                let mut q = sqlx::query(sql(text)).persistent(false).bind(t).bind(group);
                for u in chunk {
                    q = q.bind(u);
                }
                q.execute(&mut *tx).await?;
            }
            for u in &users {
                current.remove(u);
            }
            users.clone()
        }
    };
    // userCnt follows the real count (the original never decreased it, WEAKNESSES 33).
    sqlx::query("UPDATE IMGroup SET version = version + 1, userCnt = ? WHERE id = ?")
        .bind(u32::try_from(current.len()).unwrap_or(u32::MAX))
        .bind(group)
        .execute(&mut *tx)
        .await?;
    let version_row = sqlx::query("SELECT version FROM IMGroup WHERE id = ?")
        .bind(group)
        .fetch_one(&mut *tx)
        .await?;
    let version = col_u32(&version_row, 0)?;
    tx.commit().await?;

    let list: Vec<GroupMember> = current
        .iter()
        .map(|(&user_id, &joined)| GroupMember { user_id, joined })
        .collect();
    members::write_hash(inner, group, &list).await?;
    let cmds = changed
        .iter()
        .map(|&u| store_batch::clear_cmd(inner, u, crate::types::SessionType::Group, group))
        .collect();
    inner.cache.run(Pool::Unread, cmds).await?;
    Ok(ChangeOutcome::Changed {
        current: current.keys().copied().collect(),
        changed,
        version,
    })
}

/// Sets `user`'s push mute for `group`.
pub async fn set_shield(
    inner: &Inner,
    user: UserId,
    group: GroupId,
    on: bool,
) -> StorageResult<ShieldOutcome> {
    match members::membership(inner, group, user).await? {
        None => Ok(ShieldOutcome::NoSuchGroup),
        Some(None) => Ok(ShieldOutcome::NotMember),
        Some(Some(_)) => {
            let cmd = redis::cmd("HSET")
                .arg(inner.cache.keys().group_set(group))
                .arg(Keys::push_mute_field(user))
                .arg(u8::from(on))
                .to_owned();
            let _: i64 = inner.cache.query(Pool::GroupSet, &cmd).await?;
            Ok(ShieldOutcome::Done)
        }
    }
}

/// Push mute of each requested user, `None` if the group does not exist.
pub async fn shields(
    inner: &Inner,
    group: GroupId,
    users: &[UserId],
) -> StorageResult<Option<Vec<(UserId, bool)>>> {
    if members::members(inner, group).await?.is_none() {
        return Ok(None);
    }
    if users.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(inner.cache.keys().group_set(group));
    for &u in users {
        cmd.arg(Keys::push_mute_field(u));
    }
    let values: Vec<redis::Value> = inner.cache.query(Pool::GroupSet, &cmd).await?;
    let mut out = Vec::with_capacity(users.len());
    for (&u, v) in users.iter().zip(values) {
        let v: Option<String> = decode(v, "group setting")?;
        out.push((u, v.is_some_and(|s| s.trim() == "1")));
    }
    Ok(Some(out))
}
