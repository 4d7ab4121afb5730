//! Messages: storing (FLOWS.md 6 step 3, 12.6 step 2) and reading back (FLOWS.md 9).
//!
//! Ids come from `IMCacheMsgId` (per user pair, i.e. per `IMRelationShip` row) and
//! `IMCacheGroupCounter` (per group), updated in the same transaction as the message row. A
//! missing counter row (a database copied from MySQL without its Redis counters) resumes
//! above the highest stored id, so ids are never reused (WEAKNESSES 24).

use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::{StorageError, StorageResult};
use crate::types::{
    AudioRef, GroupId, MessageContent, MsgId, MsgType, NewContent, NewMessage, RequestId,
    SessionType, StoreOutcome, StoredMessage, Timestamp, UserId,
};

use super::row::{bytes_at, u32_at};
use super::sessions::touch_session;
use super::writer::Tx;

/// Messages per request of [`by_ids`] (FLOWS.md 9).
const BY_IDS_CAP: usize = 100;

/// One SQL text per shard table (`<table>_0` .. `<table>_7`), built at compile time.
macro_rules! shards {
    ($before:literal, $table:literal, $after:literal) => {
        [
            concat!($before, $table, "_0", $after),
            concat!($before, $table, "_1", $after),
            concat!($before, $table, "_2", $after),
            concat!($before, $table, "_3", $after),
            concat!($before, $table, "_4", $after),
            concat!($before, $table, "_5", $after),
            concat!($before, $table, "_6", $after),
            concat!($before, $table, "_7", $after),
        ]
    };
}

const SINGLE_INSERT: [&str; 8] = shards!(
    "INSERT INTO ",
    "IMMessage",
    " (relateId, fromId, toId, msgId, content, type, status, created, updated) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)"
);
const SINGLE_MAX_ID: [&str; 8] = shards!(
    "SELECT MAX(msgId) FROM ",
    "IMMessage",
    " WHERE relateId = ?1"
);
/// Newest first by message id: the shard's only index, `(relateId, status, msgId, created)`,
/// yields the rows in that order, so a page reads `count` rows. The original's
/// `ORDER BY created DESC, id DESC` made SQLite read and sort the whole conversation up to
/// `msgId` for every page and every "last message" (116 ms for the newest 20 of 200,000
/// messages, 0.07 ms by id). It is the same order unless a message's `created` is older
/// than an earlier one's (two msg_servers whose clocks differ, a clock set back), and then
/// the id order is the one `msg_id_begin` pages by: no message is skipped or repeated.
const SINGLE_HISTORY: [&str; 8] = shards!(
    "SELECT msgId, fromId, created, type, content, id FROM ",
    "IMMessage",
    " WHERE relateId = ?1 AND status = 0 AND msgId <= ?2 ORDER BY msgId DESC LIMIT ?3"
);
const SINGLE_BY_ID: [&str; 8] = shards!(
    "SELECT msgId, fromId, created, type, content, id FROM ",
    "IMMessage",
    " WHERE relateId = ?1 AND status = 0 AND msgId = ?2"
);
const GROUP_INSERT: [&str; 8] = shards!(
    "INSERT INTO ",
    "IMGroupMessage",
    " (groupId, userId, msgId, content, type, status, updated, created) \
     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)"
);
const GROUP_MAX_ID: [&str; 8] = shards!(
    "SELECT MAX(msgId) FROM ",
    "IMGroupMessage",
    " WHERE groupId = ?1"
);
const GROUP_HISTORY: [&str; 8] = shards!(
    "SELECT msgId, userId, created, type, content, id FROM ",
    "IMGroupMessage",
    " WHERE groupId = ?1 AND status = 0 AND msgId <= ?2 AND created >= ?3 \
     ORDER BY created DESC, id DESC LIMIT ?4"
);
const GROUP_BY_ID: [&str; 8] = shards!(
    "SELECT msgId, userId, created, type, content, id FROM ",
    "IMGroupMessage",
    " WHERE groupId = ?1 AND status = 0 AND msgId = ?2 AND created >= ?3"
);

fn shard(id: u32) -> usize {
    (id % 8) as usize
}

// ---- relations -------------------------------------------------------------------------------

/// The relation (`IMRelationShip.id`) of a user pair, if the pair ever talked.
pub(super) fn relation(conn: &Connection, a: UserId, b: UserId) -> StorageResult<Option<u32>> {
    let (small, big) = (a.min(b), a.max(b));
    let id = conn
        .prepare_cached(
            "SELECT id FROM IMRelationShip WHERE smallId = ?1 AND bigId = ?2 \
             ORDER BY status, id LIMIT 1",
        )?
        .query_row((small, big), |row| u32_at(row, 0))
        .optional()?;
    Ok(id)
}

/// The relation of a pair, created (or reactivated) if needed; the unique index on
/// (smallId, bigId) keeps it single (WEAKNESSES 26).
fn relation_for_write(tx: &Tx<'_>, a: UserId, b: UserId) -> StorageResult<u32> {
    let pair = (a.min(b), a.max(b));
    if let Some(id) = tx.memo.borrow().relations.get(&pair) {
        return Ok(*id);
    }
    let found = tx
        .conn
        .prepare_cached("SELECT id, status FROM IMRelationShip WHERE smallId = ?1 AND bigId = ?2")?
        .query_row(pair, |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)))
        .optional()?;
    let id = match found {
        Some((id, 0)) => id,
        Some((id, _)) => {
            tx.conn
                .prepare_cached("UPDATE IMRelationShip SET status = 0, updated = ?2 WHERE id = ?1")?
                .execute((id, tx.now))?;
            id
        }
        None => {
            tx.conn
                .prepare_cached(
                    "INSERT INTO IMRelationShip (smallId, bigId, status, created, updated) \
                     VALUES (?1, ?2, 0, ?3, ?3)",
                )?
                .execute((pair.0, pair.1, tx.now))?;
            tx.conn.last_insert_rowid() as u32
        }
    };
    tx.memo.borrow_mut().relation(pair, id);
    Ok(id)
}

// ---- storing ---------------------------------------------------------------------------------

fn seen_request(tx: &Tx<'_>, req: RequestId) -> StorageResult<Option<MsgId>> {
    let id = tx
        .conn
        .prepare_cached("SELECT msgId FROM IMRequestDedup WHERE origin = ?1 AND seq = ?2")?
        .query_row((req.origin as i64, req.seq as i64), |row| u32_at(row, 0))
        .optional()?;
    Ok(id)
}

fn remember_request(tx: &Tx<'_>, req: RequestId, msg_id: MsgId) -> StorageResult<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMRequestDedup (origin, seq, msgId, created) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute((req.origin as i64, req.seq as i64, msg_id, tx.now))?;
    Ok(())
}

/// The stored `content` bytes: the text, or the new `IMAudio` row's id as decimal text.
fn content_bytes(tx: &Tx<'_>, msg: &NewMessage) -> StorageResult<Vec<u8>> {
    match &msg.content {
        NewContent::Text(bytes) => Ok(bytes.clone()),
        NewContent::Audio {
            path,
            size,
            duration,
        } => {
            tx.conn
                .prepare_cached(
                    "INSERT INTO IMAudio (fromId, toId, path, size, duration, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute((msg.from_id, msg.to_id, path, size, duration, msg.created))?;
            Ok(tx.conn.last_insert_rowid().to_string().into_bytes())
        }
    }
}

/// Stores a single or group message; see [`crate::Store::store_message`].
pub(super) fn store(tx: &Tx<'_>, msg: &NewMessage) -> StorageResult<StoreOutcome> {
    if let Some(req) = msg.request_id
        && let Some(id) = seen_request(tx, req)?
    {
        return Ok(StoreOutcome::Duplicate(id));
    }
    let outcome = if msg.msg_type.is_group() {
        store_group(tx, msg)?
    } else {
        store_single(tx, msg)?
    };
    if let (Some(req), StoreOutcome::Stored(id)) = (msg.request_id, outcome) {
        remember_request(tx, req, id)?;
    }
    Ok(outcome)
}

/// Increments a counter row keyed by `key` (`update`), then reads it back (`select`); `None`
/// if there is no such row. Two statements rather than `UPDATE ... RETURNING`: SQLite buffers
/// RETURNING rows in a temporary b-tree, created and destroyed (with its page cache) for
/// every message.
fn bump_counter<T>(
    tx: &Tx<'_>,
    update: &str,
    select: &str,
    key: u32,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StorageResult<Option<T>> {
    if tx.conn.prepare_cached(update)?.execute([key])? == 0 {
        return Ok(None);
    }
    Ok(Some(
        tx.conn.prepare_cached(select)?.query_row([key], read)?,
    ))
}

fn store_single(tx: &Tx<'_>, msg: &NewMessage) -> StorageResult<StoreOutcome> {
    let (from, to) = (msg.from_id, msg.to_id);
    if from == to {
        return Err(StorageError::Invalid(format!(
            "user {from} cannot send a single message to itself"
        )));
    }
    let relate = relation_for_write(tx, from, to)?;
    let s = shard(relate);
    let next = bump_counter(
        tx,
        "UPDATE IMCacheMsgId SET msgId = msgId + 1 WHERE relateId = ?1",
        "SELECT msgId FROM IMCacheMsgId WHERE relateId = ?1",
        relate,
        |row| u32_at(row, 0),
    )?;
    let msg_id = match next {
        Some(id) => id,
        None => {
            let max: u32 = tx
                .conn
                .prepare_cached(SINGLE_MAX_ID[s])?
                .query_row([relate], |row| u32_at(row, 0))?;
            tx.conn
                .prepare_cached("INSERT INTO IMCacheMsgId (relateId, msgId) VALUES (?1, ?2)")?
                .execute((relate, max + 1))?;
            max + 1
        }
    };
    let content = content_bytes(tx, msg)?;
    tx.conn.prepare_cached(SINGLE_INSERT[s])?.execute((
        relate,
        from,
        to,
        msg_id,
        content,
        msg.msg_type.as_u32(),
        msg.created,
    ))?;
    touch_session(tx, from, to, SessionType::Single)?;
    touch_session(tx, to, from, SessionType::Single)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheUnread (userId, peerId, count) VALUES (?1, ?2, 1) \
             ON CONFLICT (userId, peerId) DO UPDATE SET count = count + 1",
        )?
        .execute((to, from))?;
    Ok(StoreOutcome::Stored(msg_id))
}

fn store_group(tx: &Tx<'_>, msg: &NewMessage) -> StorageResult<StoreOutcome> {
    let (from, group) = (msg.from_id, msg.to_id);
    let member = tx
        .conn
        .prepare_cached(
            "SELECT m.status FROM IMGroup g LEFT JOIN IMGroupMember m \
             ON m.groupId = g.id AND m.userId = ?2 WHERE g.id = ?1",
        )?
        .query_row((group, from), |row| row.get::<_, Option<i64>>(0))
        .optional()?;
    match member {
        None => return Ok(StoreOutcome::NoSuchGroup),
        Some(Some(0)) => {}
        Some(_) => return Ok(StoreOutcome::NotMember),
    }
    let s = shard(group);
    let next = bump_counter(
        tx,
        "UPDATE IMCacheGroupCounter SET msgId = msgId + 1, msgCount = msgCount + 1 \
         WHERE groupId = ?1",
        "SELECT msgId, msgCount FROM IMCacheGroupCounter WHERE groupId = ?1",
        group,
        |row| Ok((u32_at(row, 0)?, u32_at(row, 1)?)),
    )?;
    let (msg_id, count) = match next {
        Some(v) => v,
        None => {
            let max: u32 = tx
                .conn
                .prepare_cached(GROUP_MAX_ID[s])?
                .query_row([group], |row| u32_at(row, 0))?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO IMCacheGroupCounter (groupId, msgId, msgCount) VALUES (?1, ?2, ?2)",
                )?
                .execute((group, max + 1))?;
            // The members' read marks were lost with the counter: count what was stored
            // before as read rather than flooding everyone with old unread messages.
            tx.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO IMCacheUserGroupRead (userId, groupId, count) \
                     SELECT userId, groupId, ?2 FROM IMGroupMember WHERE groupId = ?1 AND status = 0",
                )?
                .execute((group, max))?;
            (max + 1, max + 1)
        }
    };
    let content = content_bytes(tx, msg)?;
    tx.conn.prepare_cached(GROUP_INSERT[s])?.execute((
        group,
        from,
        msg_id,
        content,
        msg.msg_type.as_u32(),
        msg.created,
    ))?;
    tx.conn
        .prepare_cached("UPDATE IMGroup SET lastChated = ?2 WHERE id = ?1")?
        .execute((group, tx.now))?;
    touch_session(tx, from, group, SessionType::Group)?;
    // The sender has read everything up to its own message.
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheUserGroupRead (userId, groupId, count) VALUES (?1, ?2, ?3) \
             ON CONFLICT (userId, groupId) DO UPDATE SET count = excluded.count",
        )?
        .execute((from, group, count))?;
    Ok(StoreOutcome::Stored(msg_id))
}

// ---- reading ---------------------------------------------------------------------------------

/// A message row before its audio reference is resolved.
struct RawMessage {
    msg_id: MsgId,
    from_id: UserId,
    created: Timestamp,
    msg_type: MsgType,
    content: Vec<u8>,
    row_id: i64,
}

fn raw_single(row: &Row<'_>) -> rusqlite::Result<RawMessage> {
    raw(row, false)
}

fn raw_group(row: &Row<'_>) -> rusqlite::Result<RawMessage> {
    raw(row, true)
}

/// Decodes `msgId, from, created, type, content, id`. Unknown stored types read as text of the
/// table's kind (the group schema's default 2 included).
fn raw(row: &Row<'_>, group: bool) -> rusqlite::Result<RawMessage> {
    let ty = u32_at(row, 3)?;
    let msg_type = match (group, ty) {
        (false, 0x02) => MsgType::SingleAudio,
        (false, _) => MsgType::SingleText,
        (true, 0x12) => MsgType::GroupAudio,
        (true, _) => MsgType::GroupText,
    };
    Ok(RawMessage {
        msg_id: u32_at(row, 0)?,
        from_id: u32_at(row, 1)?,
        created: u32_at(row, 2)?,
        msg_type,
        content: bytes_at(row, 4)?,
        row_id: row.get(5)?,
    })
}

/// Resolves voice messages to their `IMAudio` row. A missing row (or unparsable content)
/// gives a reference with an empty path, which db_proxy treats as a failed download.
fn finish(conn: &Connection, raw: RawMessage) -> StorageResult<StoredMessage> {
    let content = if raw.msg_type.is_audio() {
        let id = std::str::from_utf8(&raw.content)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let found = conn
            .prepare_cached("SELECT path, size, duration FROM IMAudio WHERE id = ?1")?
            .query_row([id], |row| {
                Ok(AudioRef {
                    id,
                    path: super::row::text_at(row, 0)?,
                    size: u32_at(row, 1)?,
                    duration: u32_at(row, 2)?,
                })
            })
            .optional()?;
        MessageContent::Audio(found.unwrap_or(AudioRef {
            id,
            path: String::new(),
            size: 0,
            duration: 0,
        }))
    } else {
        MessageContent::Text(raw.content)
    };
    Ok(StoredMessage {
        msg_id: raw.msg_id,
        from_id: raw.from_id,
        created: raw.created,
        msg_type: raw.msg_type,
        content,
    })
}

fn finish_all(conn: &Connection, raws: Vec<RawMessage>) -> StorageResult<Vec<StoredMessage>> {
    raws.into_iter().map(|r| finish(conn, r)).collect()
}

/// The time `user` (re)joined `group`, if a current member.
pub(super) fn join_time(
    conn: &Connection,
    group: GroupId,
    user: UserId,
) -> StorageResult<Option<Timestamp>> {
    let t = conn
        .prepare_cached(
            "SELECT updated FROM IMGroupMember WHERE groupId = ?1 AND userId = ?2 AND status = 0",
        )?
        .query_row((group, user), |row| u32_at(row, 0))
        .optional()?;
    Ok(t)
}

/// History of one conversation, newest first; see [`crate::Store::history`].
pub(super) fn history(
    conn: &Connection,
    user: UserId,
    session_type: SessionType,
    peer: u32,
    msg_id_begin: MsgId,
    count: u32,
) -> StorageResult<Vec<StoredMessage>> {
    let upto = if msg_id_begin == 0 {
        MsgId::MAX
    } else {
        msg_id_begin
    };
    let raws = match session_type {
        SessionType::Single => {
            let Some(relate) = relation(conn, user, peer)? else {
                return Ok(Vec::new());
            };
            conn.prepare_cached(SINGLE_HISTORY[shard(relate)])?
                .query_map((relate, upto, count), raw_single)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        SessionType::Group => {
            let Some(joined) = join_time(conn, peer, user)? else {
                return Ok(Vec::new());
            };
            conn.prepare_cached(GROUP_HISTORY[shard(peer)])?
                .query_map((peer, upto, joined, count), raw_group)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    finish_all(conn, raws)
}

/// Messages by id, newest first, at most 100; see [`crate::Store::messages_by_ids`].
pub(super) fn by_ids(
    conn: &Connection,
    user: UserId,
    session_type: SessionType,
    peer: u32,
    ids: &[MsgId],
) -> StorageResult<Vec<StoredMessage>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut raws = Vec::new();
    match session_type {
        SessionType::Single => {
            let Some(relate) = relation(conn, user, peer)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(SINGLE_BY_ID[shard(relate)])?;
            for id in ids {
                for r in stmt.query_map((relate, id), raw_single)? {
                    raws.push(r?);
                }
            }
        }
        SessionType::Group => {
            let Some(joined) = join_time(conn, peer, user)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(GROUP_BY_ID[shard(peer)])?;
            for id in ids {
                for r in stmt.query_map((peer, id, joined), raw_group)? {
                    raws.push(r?);
                }
            }
        }
    }
    // The order of `history`: by id for single conversations (see SINGLE_HISTORY).
    match session_type {
        SessionType::Single => raws.sort_unstable_by_key(|r| std::cmp::Reverse(r.msg_id)),
        SessionType::Group => {
            raws.sort_unstable_by_key(|r| std::cmp::Reverse((r.created, r.row_id)));
        }
    }
    raws.truncate(BY_IDS_CAP);
    finish_all(conn, raws)
}

/// Newest message of a relation.
pub(super) fn last_single(conn: &Connection, relate: u32) -> StorageResult<Option<StoredMessage>> {
    let raw = conn
        .prepare_cached(SINGLE_HISTORY[shard(relate)])?
        .query_row((relate, MsgId::MAX, 1), raw_single)
        .optional()?;
    raw.map(|r| finish(conn, r)).transpose()
}

/// Newest message of a group (no visibility filter, as the original's session and unread
/// lists).
pub(super) fn last_group(
    conn: &Connection,
    group: GroupId,
) -> StorageResult<Option<StoredMessage>> {
    let raw = conn
        .prepare_cached(GROUP_HISTORY[shard(group)])?
        .query_row((group, MsgId::MAX, 0, 1), raw_group)
        .optional()?;
    raw.map(|r| finish(conn, r)).transpose()
}

/// Newest message of a conversation that `user` may read: single, the pair's newest; group,
/// the newest created at or after the user's join time (none for a non-member).
pub(super) fn last_visible(
    conn: &Connection,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<Option<StoredMessage>> {
    match session_type {
        SessionType::Single => match relation(conn, user, peer)? {
            Some(relate) => last_single(conn, relate),
            None => Ok(None),
        },
        SessionType::Group => {
            let Some(joined) = join_time(conn, peer, user)? else {
                return Ok(None);
            };
            let raw = conn
                .prepare_cached(GROUP_HISTORY[shard(peer)])?
                .query_row((peer, MsgId::MAX, joined, 1), raw_group)
                .optional()?;
            raw.map(|r| finish(conn, r)).transpose()
        }
    }
}

/// Id of the newest message; groups: 0 unless `user` is a member (WEAKNESSES 11).
pub(super) fn latest_id(
    conn: &Connection,
    user: UserId,
    session_type: SessionType,
    peer: u32,
) -> StorageResult<MsgId> {
    let last = match session_type {
        SessionType::Single => match relation(conn, user, peer)? {
            Some(relate) => last_single(conn, relate)?,
            None => None,
        },
        SessionType::Group => {
            if join_time(conn, peer, user)?.is_none() {
                return Ok(0);
            }
            last_group(conn, peer)?
        }
    };
    Ok(last.map_or(0, |m| m.msg_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::open_writer;
    use crate::sqlite::test_util::{fresh_writer, plan};

    fn indexes(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1")
            .unwrap();
        stmt.query_map([table], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Every read of a message shard searches one index, the one each shard still has
    /// (schema step 2 dropped the 1:1 shards' `(relateId, status, created)`, which no
    /// query used); a query that scanned a shard would read every message of every
    /// conversation in it, and one that sorted would read the whole conversation.
    #[test]
    fn every_shard_query_searches_an_index_that_exists() {
        let (_dir, _config, conn) = fresh_writer();
        for n in 0..8 {
            let single = format!("IMMessage_{n}");
            assert_eq!(
                indexes(&conn, &single),
                [format!("idx_IMMessage_{n}_relateId_status_msgId_created")]
            );
            let group = format!("IMGroupMessage_{n}");
            let group_indexes = indexes(&conn, &group);
            assert_eq!(group_indexes.len(), 2, "{group_indexes:?}");
            let queries = [
                (SINGLE_HISTORY[n], &single),
                (SINGLE_BY_ID[n], &single),
                (SINGLE_MAX_ID[n], &single),
                (GROUP_HISTORY[n], &group),
                (GROUP_BY_ID[n], &group),
                (GROUP_MAX_ID[n], &group),
            ];
            for (sql, table) in queries {
                let steps = plan(&conn, sql);
                let search = format!("SEARCH {table} USING ");
                assert!(
                    steps
                        .iter()
                        .any(|s| s.starts_with(&search) && s.contains("INDEX idx_")),
                    "{sql}: {steps:?}"
                );
                assert!(
                    !steps.iter().any(|s| s.starts_with("SCAN ")),
                    "{sql}: {steps:?}"
                );
                // A sort means reading every matching row before the first is returned.
                assert!(
                    !steps.iter().any(|s| s.contains("TEMP B-TREE")),
                    "{sql}: {steps:?}"
                );
            }
        }
    }

    /// A database created before step 2 loses the unused index when it is opened.
    #[test]
    fn step_two_drops_the_unused_index_of_an_older_database() {
        let (_dir, config, conn) = fresh_writer();
        // Back to what step 1 left: the index exists and step 2 is not recorded.
        for n in 0..8 {
            conn.execute_batch(&format!(
                "CREATE INDEX idx_IMMessage_{n}_relateId_status_created \
                 ON IMMessage_{n} (relateId, status, created);"
            ))
            .unwrap();
        }
        conn.execute("DELETE FROM IMSchemaVersion WHERE version = 2", [])
            .unwrap();
        assert_eq!(indexes(&conn, "IMMessage_5").len(), 2);
        drop(conn);
        let conn = open_writer(&config).unwrap();
        for n in 0..8 {
            assert_eq!(indexes(&conn, &format!("IMMessage_{n}")).len(), 1);
        }
        let step: u32 = conn
            .query_row("SELECT MAX(version) FROM IMSchemaVersion", [], |r| r.get(0))
            .unwrap();
        assert_eq!(step, 2);
    }
}
