//! Unread counts (FLOWS.md 7): `unread_<U>` (peer -> count) for single chats; for groups the
//! group's message count minus the user's read mark. Group membership for this list comes
//! from `IMGroupMember`, as in the original.

use std::collections::HashMap;

use super::rows::{col_u32, placeholders, sql, unique_sorted};
use super::{Inner, messages};
use crate::error::StorageResult;
use crate::redis_cache::{Pool, decode};
use crate::types::{SessionType, UnreadSummary, UserId};

/// Most users per `IN` list.
const CHUNK: usize = 500;

/// Groups `users` are active members of: user -> group ids (newest membership first).
async fn groups_of(inner: &Inner, users: &[UserId]) -> StorageResult<HashMap<UserId, Vec<u32>>> {
    let mut out: HashMap<UserId, Vec<u32>> = HashMap::new();
    for chunk in users.chunks(CHUNK) {
        let text = format!(
            "SELECT userId, groupId FROM IMGroupMember WHERE userId IN ({}) AND status = 0 \
             ORDER BY updated DESC, id DESC",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for u in chunk {
            q = q.bind(u);
        }
        for row in q.fetch_all(inner.pools.primary()).await? {
            let groups = out.entry(col_u32(&row, 0)?).or_default();
            let g = col_u32(&row, 1)?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(out)
}

/// Unread count of each (user, group): count - mark when positive.
async fn group_unread(inner: &Inner, pairs: &[(UserId, u32)]) -> StorageResult<Vec<u32>> {
    let keys = inner.cache.keys();
    let mut cmds = Vec::with_capacity(pairs.len() * 2);
    for &(u, g) in pairs {
        cmds.push(
            redis::cmd("HGET")
                .arg(keys.group_count(g))
                .arg("count")
                .to_owned(),
        );
        cmds.push(
            redis::cmd("HGET")
                .arg(keys.user_group(u, g))
                .arg("count")
                .to_owned(),
        );
    }
    let values = inner.cache.run(Pool::Unread, cmds).await?;
    let mut out = Vec::with_capacity(pairs.len());
    let mut it = values.into_iter();
    while let (Some(total), Some(mark)) = (it.next(), it.next()) {
        let total: Option<i64> = decode(total, "group count")?;
        let mark: Option<i64> = decode(mark, "user group mark")?;
        let unread = total.unwrap_or(0) - mark.unwrap_or(0);
        out.push(u32::try_from(unread.max(0)).unwrap_or(u32::MAX));
    }
    Ok(out)
}

fn parse_counts(hash: HashMap<String, String>) -> Vec<(u32, u32)> {
    let mut list: Vec<(u32, u32)> = hash
        .into_iter()
        .filter_map(|(peer, count)| {
            let count: i64 = count.trim().parse().ok()?;
            Some((peer.trim().parse().ok()?, u32::try_from(count).ok()?))
        })
        .filter(|&(_, count)| count > 0)
        .collect();
    list.sort_unstable();
    list
}

/// Sessions with unread messages: single ones first, then groups.
pub async fn unread(inner: &Inner, user: UserId) -> StorageResult<Vec<UnreadSummary>> {
    let pool = inner.pools.primary();
    let hash: HashMap<String, String> = inner
        .cache
        .query(
            Pool::Unread,
            redis::cmd("HGETALL").arg(inner.cache.keys().unread(user)),
        )
        .await?;
    let mut out = Vec::new();
    for (peer, count) in parse_counts(hash) {
        if let Some(last) = messages::last_single(pool, user, peer).await? {
            out.push(UnreadSummary {
                peer_id: peer,
                session_type: SessionType::Single,
                count,
                last,
            });
        }
    }
    let groups = groups_of(inner, &[user])
        .await?
        .remove(&user)
        .unwrap_or_default();
    let pairs: Vec<(UserId, u32)> = groups.iter().map(|&g| (user, g)).collect();
    let counts = group_unread(inner, &pairs).await?;
    for (&group, count) in groups.iter().zip(counts) {
        if count == 0 {
            continue;
        }
        if let Some(last) = messages::last_group(pool, group).await? {
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

/// Total unread per user (single + group), for push badges.
pub async fn totals(inner: &Inner, users: &[UserId]) -> StorageResult<Vec<(UserId, u32)>> {
    let distinct = unique_sorted(users);
    if distinct.is_empty() {
        return Ok(Vec::new());
    }
    let keys = inner.cache.keys();
    let cmds = distinct
        .iter()
        .map(|&u| redis::cmd("HGETALL").arg(keys.unread(u)).to_owned())
        .collect();
    let values = inner.cache.run(Pool::Unread, cmds).await?;
    let mut total: HashMap<UserId, u64> = HashMap::new();
    for (&u, v) in distinct.iter().zip(values) {
        let hash: HashMap<String, String> = decode(v, "unread hash")?;
        let sum: u64 = parse_counts(hash).iter().map(|&(_, c)| u64::from(c)).sum();
        total.insert(u, sum);
    }
    let groups = groups_of(inner, &distinct).await?;
    let pairs: Vec<(UserId, u32)> = groups
        .iter()
        .flat_map(|(&u, gs)| gs.iter().map(move |&g| (u, g)))
        .collect();
    for (&(u, _), count) in pairs.iter().zip(group_unread(inner, &pairs).await?) {
        *total.entry(u).or_default() += u64::from(count);
    }
    Ok(users
        .iter()
        .map(|u| {
            let t = total.get(u).copied().unwrap_or(0);
            (*u, u32::try_from(t).unwrap_or(u32::MAX))
        })
        .collect())
}
