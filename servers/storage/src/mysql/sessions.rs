//! `IMRecentSession`: each user's conversation list (FLOWS.md 8).
//!
//! One row per (userId, peerId, type): kept so by locking reads before inserting (and by the
//! unique key where the migration could add it). Where old data holds duplicates, the newest
//! row is the one updated (the original's getSessionId also picks the newest).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::MySqlConnection;

use super::rows::{TextInserts, col_u8, col_u32, now, push_int_list, sql};
use super::{Inner, members, messages};
use crate::error::StorageResult;
use crate::types::{SessionSummary, SessionType, Timestamp, UserId};

/// Most sessions per statement. MariaDB's range optimizer costs grow faster than linearly
/// with the number of OR'ed key conditions (measured: 100 conditions 1.3 ms, 500 about 30 ms),
/// so lookups go in chunks of this size.
const ROWS_PER_UPSERT: usize = 100;

/// Most row ids per `UPDATE ... WHERE id IN (...)`.
const ROWS_PER_UPDATE: usize = 1_000;

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

/// A session's key: (userId, peerId, type).
pub type SessionKey = (u32, u32, u8);

/// Touches sessions (sorted by key, for a stable lock order): existing rows get
/// `updated = GREATEST(updated, time)` and, with `reactivate`, status 0; missing rows are
/// inserted active. Returns the (key, row id) pairs it looked up, for `known_ids`.
///
/// `known_ids` maps keys to row ids seen before (the writer remembers them: session rows are
/// never deleted, so an id stays valid). Those rows are updated by primary key, in one
/// statement per distinct time; if a remembered row is gone after all, its chunk takes the
/// general path. The general path is a locking read of the rows, then UPDATEs by primary key
/// (grouped by time, only where something changes) and one INSERT for the missing ones. The
/// locking read also locks the gaps where missing rows go, so no other transaction can insert
/// the same session meanwhile: this keeps sessions unique with or without the unique key.
/// (`INSERT ... ON DUPLICATE KEY UPDATE` would be shorter, but on a secondary unique key
/// InnoDB first inserts and rolls back each conflicting row, is several times slower, and
/// burns an auto-increment id per conflicting row.)
pub async fn upsert(
    conn: &mut MySqlConnection,
    rows: &[Touch],
    reactivate: bool,
    known_ids: Option<&HashMap<SessionKey, u32>>,
) -> StorageResult<Vec<(SessionKey, u32)>> {
    let mut text = TextInserts::default();
    let planned = plan_known(&mut text, rows, reactivate, known_ids);
    let matched = text.execute(conn).await?;
    upsert_rest(conn, planned, &matched, reactivate).await
}

/// The first half of [`upsert`]: the UPDATEs of rows whose id is known, appended to `text`
/// (so that a caller can send them with other statements in one round trip).
pub fn plan_known(
    text: &mut TextInserts,
    rows: &[Touch],
    reactivate: bool,
    known_ids: Option<&HashMap<SessionKey, u32>>,
) -> PlannedTouches {
    let set = set_clause(reactivate);
    let mut planned = PlannedTouches::default();
    let mut by_time: BTreeMap<Timestamp, Vec<(u32, Touch)>> = BTreeMap::new();
    for t in rows {
        match known_ids.and_then(|k| k.get(&(t.user, t.peer, t.kind))) {
            Some(&id) => by_time.entry(t.time).or_default().push((id, *t)),
            None => planned.general.push(*t),
        }
    }
    for (time, list) in by_time {
        for chunk in list.chunks(ROWS_PER_UPDATE) {
            let index = text.statement(&update_text(set, time, chunk.iter().map(|(id, _)| id)));
            planned
                .by_id
                .push((index, chunk.iter().map(|(_, t)| *t).collect()));
        }
    }
    planned
}

/// The SET clause of a touch, up to the time (which the caller writes, then `)`).
fn set_clause(reactivate: bool) -> &'static str {
    if reactivate {
        "status = 0, updated = GREATEST(updated, "
    } else {
        "updated = GREATEST(updated, "
    }
}

/// What [`plan_known`] planned.
#[derive(Debug, Default)]
pub struct PlannedTouches {
    /// Statement index of each UPDATE by id, with its touches.
    by_id: Vec<(usize, Vec<Touch>)>,
    /// Touches without a known id.
    general: Vec<Touch>,
}

impl PlannedTouches {
    /// True if some touches have no known row id (they take the locking path).
    pub fn has_unknown(&self) -> bool {
        !self.general.is_empty()
    }
}

/// The second half of [`upsert`], once the planned UPDATEs ran (`matched`: rows matched per
/// statement of their text): the general path for unknown ids, and for the touches of an
/// UPDATE that matched fewer rows than it named.
pub async fn upsert_rest(
    conn: &mut MySqlConnection,
    planned: PlannedTouches,
    matched: &[u64],
    reactivate: bool,
) -> StorageResult<Vec<(SessionKey, u32)>> {
    let set = set_clause(reactivate);
    let mut general = planned.general;
    for (index, touches) in planned.by_id {
        if matched.get(index).copied().unwrap_or(0) < touches.len() as u64 {
            general.extend(touches);
        }
    }
    general.sort_by_key(|t| (t.user, t.peer, t.kind));
    let mut seen = Vec::new();
    for chunk in general.chunks(ROWS_PER_UPSERT) {
        let cond = vec!["(userId = ? AND peerId = ? AND type = ?)"; chunk.len()].join(" OR ");
        let text = format!(
            "SELECT id, userId, peerId, type, (status <=> 0), updated FROM IMRecentSession \
             WHERE {cond} FOR UPDATE"
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for t in chunk {
            q = q.bind(t.user).bind(t.peer).bind(t.kind);
        }
        // Key -> (id, active, updated) of the newest row (old data may hold several).
        let mut existing: HashMap<SessionKey, (u32, bool, u32)> = HashMap::new();
        for row in q.fetch_all(&mut *conn).await? {
            let key = (col_u32(&row, 1)?, col_u32(&row, 2)?, col_u8(&row, 3)?);
            let found = (col_u32(&row, 0)?, col_u32(&row, 4)? == 1, col_u32(&row, 5)?);
            let e = existing.entry(key).or_insert(found);
            if found.0 > e.0 {
                *e = found;
            }
        }
        let mut updates: BTreeMap<Timestamp, Vec<u32>> = BTreeMap::new();
        let mut inserts: Vec<&Touch> = Vec::new();
        for t in chunk {
            let key = (t.user, t.peer, t.kind);
            match existing.get(&key) {
                Some(&(id, active, updated)) => {
                    seen.push((key, id));
                    if updated < t.time || (reactivate && !active) {
                        updates.entry(t.time).or_default().push(id);
                    }
                }
                None => inserts.push(t),
            }
        }
        for (time, ids) in updates {
            update_by_ids(conn, set, time, &ids).await?;
        }
        if !inserts.is_empty() {
            let values = vec!["(?,?,?,0,?,?)"; inserts.len()].join(",");
            let text = format!(
                "INSERT INTO IMRecentSession (userId, peerId, type, status, created, updated) \
                 VALUES {values}"
            );
            let mut q = sqlx::query(sql(text)).persistent(false);
            for t in inserts {
                q = q
                    .bind(t.user)
                    .bind(t.peer)
                    .bind(t.kind)
                    .bind(t.time)
                    .bind(t.time);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(seen)
}

/// `UPDATE IMRecentSession SET {set}time) WHERE id IN (ids)` as SQL text: one round trip
/// where a prepared statement takes two (the values are integers; see [`TextInserts`]).
/// Returns the matched rows.
async fn update_by_ids(
    conn: &mut MySqlConnection,
    set: &str,
    time: Timestamp,
    ids: &[u32],
) -> StorageResult<u64> {
    let done = sqlx::raw_sql(sql(update_text(set, time, ids)))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// The text of a touch of the sessions `ids` (integers only).
fn update_text<T: std::fmt::Display>(
    set: &str,
    time: Timestamp,
    ids: impl IntoIterator<Item = T>,
) -> String {
    let mut text = format!("UPDATE IMRecentSession SET {set}{time}) WHERE id IN (");
    push_int_list(&mut text, ids);
    text.push(')');
    text
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
        upsert(&mut tx, chunk, false, None).await?;
        tx.commit().await?;
    }
    Ok(watermark)
}
