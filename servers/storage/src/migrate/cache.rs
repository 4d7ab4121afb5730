//! The cache data of a deployment, between the Redis keys of the MySQL mode (STORAGE.md 5,
//! original names) and the `IMCache*` tables of the SQLite mode (sqlite/schema.rs maps one to
//! the other).
//!
//! Group membership is not cache data in the SQLite mode (`IMGroupMember` is the truth), so
//! for a Redis destination the `group_member_<G>` hashes are rebuilt from the copied
//! `IMGroupMember` rows the way the MySQL store rebuilds a missing hash (active rows, join
//! time = the newest `updated`, only groups that have an `IMGroup` row). A Redis source's
//! hashes are only compared with `IMGroupMember` and the differing groups reported.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

use super::sqlite::{SqliteDb, db_error};
use super::tables::{self, Value};
use super::{Db, Floors, MigrateResult};

/// Group id -> member user id -> join time.
pub type Members = BTreeMap<u32, BTreeMap<u32, u32>>;

/// Every kind of cache data, normalized (sorted, one entry per key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheData {
    /// `unread_<U>` field `<peer>` = `IMCacheUnread`: (user, peer) -> unread count.
    pub unread: BTreeMap<(u32, u32), u32>,
    /// `msg_id_<relateId>` = `IMCacheMsgId`: relation -> last message id.
    pub msg_ids: BTreeMap<u32, u32>,
    /// `group_msg_id_<G>` and `<G>_im_group_msg` = `IMCacheGroupCounter`: group -> (last
    /// message id, messages ever sent).
    pub group_counters: BTreeMap<u32, (u32, u32)>,
    /// `<U>_<G>_im_user_group` = `IMCacheUserGroupRead`: (user, group) -> read mark.
    pub read_marks: BTreeMap<(u32, u32), u32>,
    /// `device_<U>` = `IMCacheDeviceToken`: user -> `ios:<t>`, `android:<t>`, a bare token or
    /// "".
    pub device_tokens: BTreeMap<u32, String>,
    /// `device_<token>` = `IMCacheTokenOwner`: token -> owner (0 = blanked, "" in Redis).
    pub token_owners: BTreeMap<String, u32>,
    /// `group_set_<G>` field `<U>_<type>` = `IMCacheGroupSet`: (group, user, type) -> value.
    pub group_settings: BTreeMap<(u32, u32, u32), u32>,
    /// `group_member_<G>` hashes (Redis only).
    pub group_members: Members,
    /// Entries that could not be parsed and were left out (reported).
    pub malformed: u64,
}

impl CacheData {
    /// Raises every copied id sequence to the highest id stored for its conversation, so
    /// ids are never reused (WEAKNESSES 24); returns how many were raised.
    pub fn raise_to_floors(&mut self, floors: &Floors) -> u64 {
        let mut raised = 0;
        for (relation, last) in self.msg_ids.iter_mut() {
            if let Some(&floor) = floors.relations.get(relation)
                && *last < floor
            {
                *last = floor;
                raised += 1;
            }
        }
        for (group, (last, _count)) in self.group_counters.iter_mut() {
            if let Some(&floor) = floors.groups.get(group)
                && *last < floor
            {
                *last = floor;
                raised += 1;
            }
        }
        raised
    }

    /// Per category: name, entries, digest of the entries.
    pub fn categories(&self) -> Vec<(&'static str, u64, u128)> {
        fn digest<K: std::fmt::Debug, V: std::fmt::Debug>(map: &BTreeMap<K, V>) -> u128 {
            let mut text = String::new();
            for (k, v) in map {
                text.push_str(&format!("{k:?}={v:?};"));
            }
            u128::from_be_bytes(md5::compute(text.as_bytes()).0)
        }
        let members: usize = self.group_members.values().map(BTreeMap::len).sum();
        vec![
            ("unread", self.unread.len() as u64, digest(&self.unread)),
            ("msg_ids", self.msg_ids.len() as u64, digest(&self.msg_ids)),
            (
                "group_counters",
                self.group_counters.len() as u64,
                digest(&self.group_counters),
            ),
            (
                "read_marks",
                self.read_marks.len() as u64,
                digest(&self.read_marks),
            ),
            (
                "device_tokens",
                self.device_tokens.len() as u64,
                digest(&self.device_tokens),
            ),
            (
                "token_owners",
                self.token_owners.len() as u64,
                digest(&self.token_owners),
            ),
            (
                "group_settings",
                self.group_settings.len() as u64,
                digest(&self.group_settings),
            ),
            ("group_members", members as u64, digest(&self.group_members)),
        ]
    }
}

/// What the cache copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheReport {
    /// Where the data came from (`embedded`, `redis://...`).
    pub source: String,
    /// Where it went.
    pub destination: String,
    /// Per category: entries on each side and, after verification, whether they are equal.
    pub categories: Vec<CategoryReport>,
    /// Source entries that could not be parsed and were left out.
    pub malformed_entries: u64,
    /// Id sequences raised to the highest stored message id.
    pub raised_sequences: u64,
    /// Groups whose source Redis member hash differs from `IMGroupMember` (the copy uses
    /// `IMGroupMember`); at most [`super::MAX_LISTED_SKIPS`] listed.
    pub member_hash_mismatches: Vec<u32>,
}

/// One cache category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryReport {
    /// `unread`, `msg_ids`, `group_counters`, `read_marks`, `device_tokens`,
    /// `token_owners`, `group_settings`, `group_members`.
    pub name: &'static str,
    /// Entries written.
    pub source: u64,
    /// Entries read back from the destination (after verification).
    pub destination: Option<u64>,
    /// Whether what was read back equals what was written (after verification).
    pub equal: Option<bool>,
}

/// Groups whose member hash differs from `members` (hashes of groups with no active member
/// in the tables count too).
pub fn member_mismatches(hashes: &Members, members: &Members) -> Vec<u32> {
    let groups: BTreeSet<u32> = hashes.keys().chain(members.keys()).copied().collect();
    groups
        .into_iter()
        .filter(|g| hashes.get(g) != members.get(g))
        .take(super::MAX_LISTED_SKIPS)
        .collect()
}

/// Active members per existing group from the `IMGroup` and `IMGroupMember` tables of `db`
/// (status 0; join time = the newest `updated`), read in batches.
pub(super) async fn members_from_tables(db: &Db, batch: usize) -> MigrateResult<Members> {
    let mut groups = BTreeSet::new();
    if let Some(spec) = tables::table("IMGroup") {
        scan(db, spec, batch, |row| {
            if let Some(id) = int_at(row, 0) {
                groups.insert(id);
            }
        })
        .await?;
    }
    let mut members = Members::new();
    if let Some(spec) = tables::table("IMGroupMember") {
        // id, groupId, userId, status, created, updated
        scan(db, spec, batch, |row| {
            let (Some(group), Some(user), Some(0), Some(updated)) = (
                int_at(row, 1),
                int_at(row, 2),
                int_at(row, 3),
                int_at(row, 5),
            ) else {
                return;
            };
            if groups.contains(&group) {
                let joined = members.entry(group).or_default().entry(user).or_insert(0);
                *joined = (*joined).max(updated);
            }
        })
        .await?;
    }
    Ok(members)
}

async fn scan(
    db: &Db,
    spec: &tables::TableSpec,
    batch: usize,
    mut each: impl FnMut(&tables::Row),
) -> MigrateResult<()> {
    let mut after = i64::MIN;
    loop {
        let rows = db.read_batch(spec, after, batch).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = tables::row_key(last);
        rows.iter().for_each(&mut each);
    }
}

fn int_at(row: &tables::Row, i: usize) -> Option<u32> {
    match row.get(i) {
        Some(Value::Int(v)) => u32::try_from(*v).ok(),
        _ => None,
    }
}

/// Reads the `IMCache*` tables.
pub(super) async fn read_embedded(db: &SqliteDb) -> MigrateResult<CacheData> {
    db.run(|conn, path| {
        let fail = db_error(path, "IMCache*");
        let mut data = CacheData::default();
        let mut malformed = 0;
        let mut ints = |sql: &str, n: usize| -> rusqlite::Result<Vec<Vec<u32>>> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, i64>(i).map(|v| u32::try_from(v).ok()))
                    .collect::<rusqlite::Result<Vec<Option<u32>>>>()
            })?;
            let mut out = Vec::new();
            for row in rows {
                match row?.into_iter().collect::<Option<Vec<u32>>>() {
                    Some(values) => out.push(values),
                    None => malformed += 1,
                }
            }
            Ok(out)
        };
        for v in ints("SELECT userId, peerId, count FROM IMCacheUnread", 3).map_err(&fail)? {
            data.unread.insert((v[0], v[1]), v[2]);
        }
        for v in ints("SELECT relateId, msgId FROM IMCacheMsgId", 2).map_err(&fail)? {
            data.msg_ids.insert(v[0], v[1]);
        }
        let sql = "SELECT groupId, msgId, msgCount FROM IMCacheGroupCounter";
        for v in ints(sql, 3).map_err(&fail)? {
            data.group_counters.insert(v[0], (v[1], v[2]));
        }
        let sql = "SELECT userId, groupId, count FROM IMCacheUserGroupRead";
        for v in ints(sql, 3).map_err(&fail)? {
            data.read_marks.insert((v[0], v[1]), v[2]);
        }
        let sql = "SELECT groupId, userId, settingType, value FROM IMCacheGroupSet";
        for v in ints(sql, 4).map_err(&fail)? {
            data.group_settings.insert((v[0], v[1], v[2]), v[3]);
        }
        let mut stmt = conn
            .prepare("SELECT userId, value FROM IMCacheDeviceToken")
            .map_err(&fail)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(&fail)?;
        for row in rows {
            let (user, value) = row.map_err(&fail)?;
            match u32::try_from(user) {
                Ok(user) => {
                    data.device_tokens.insert(user, value);
                }
                Err(_) => malformed += 1,
            }
        }
        let mut stmt = conn
            .prepare("SELECT token, userId FROM IMCacheTokenOwner")
            .map_err(&fail)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(&fail)?;
        for row in rows {
            let (token, user) = row.map_err(&fail)?;
            match u32::try_from(user) {
                Ok(user) => {
                    data.token_owners.insert(token, user);
                }
                Err(_) => malformed += 1,
            }
        }
        data.malformed = malformed;
        Ok(data)
    })
    .await
}

/// Replaces the `IMCache*` tables with `data`, in one transaction.
pub(super) async fn write_embedded(db: &SqliteDb, data: &CacheData) -> MigrateResult<()> {
    let data = data.clone();
    db.run(move |conn, path| {
        let fail = db_error(path, "IMCache*");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        write_tables(&tx, &data).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(())
    })
    .await
}

fn write_tables(conn: &Connection, d: &CacheData) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM IMCacheUnread; DELETE FROM IMCacheMsgId; DELETE FROM IMCacheGroupCounter; \
         DELETE FROM IMCacheUserGroupRead; DELETE FROM IMCacheDeviceToken; \
         DELETE FROM IMCacheTokenOwner; DELETE FROM IMCacheGroupSet;",
    )?;
    let mut stmt =
        conn.prepare("INSERT INTO IMCacheUnread (userId, peerId, count) VALUES (?1, ?2, ?3)")?;
    for (&(user, peer), &count) in &d.unread {
        stmt.execute((user, peer, count))?;
    }
    let mut stmt = conn.prepare("INSERT INTO IMCacheMsgId (relateId, msgId) VALUES (?1, ?2)")?;
    for (&relation, &last) in &d.msg_ids {
        stmt.execute((relation, last))?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO IMCacheGroupCounter (groupId, msgId, msgCount) VALUES (?1, ?2, ?3)",
    )?;
    for (&group, &(last, count)) in &d.group_counters {
        stmt.execute((group, last, count))?;
    }
    let mut stmt = conn
        .prepare("INSERT INTO IMCacheUserGroupRead (userId, groupId, count) VALUES (?1, ?2, ?3)")?;
    for (&(user, group), &count) in &d.read_marks {
        stmt.execute((user, group, count))?;
    }
    let mut stmt =
        conn.prepare("INSERT INTO IMCacheDeviceToken (userId, value) VALUES (?1, ?2)")?;
    for (&user, value) in &d.device_tokens {
        stmt.execute((user, value))?;
    }
    let mut stmt = conn.prepare("INSERT INTO IMCacheTokenOwner (token, userId) VALUES (?1, ?2)")?;
    for (token, &user) in &d.token_owners {
        stmt.execute((token, user))?;
    }
    let mut stmt = conn.prepare(
        "INSERT INTO IMCacheGroupSet (groupId, userId, settingType, value) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (&(group, user, kind), &value) in &d.group_settings {
        stmt.execute((group, user, kind, value))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_only_raise() {
        let mut d = CacheData::default();
        d.msg_ids.insert(1, 5);
        d.msg_ids.insert(2, 9);
        d.group_counters.insert(7, (3, 3));
        let floors = Floors {
            relations: BTreeMap::from([(1, 8), (2, 4), (3, 2)]),
            groups: BTreeMap::from([(7, 6)]),
        };
        assert_eq!(d.raise_to_floors(&floors), 2);
        assert_eq!(d.msg_ids, BTreeMap::from([(1, 8), (2, 9)]));
        assert_eq!(d.group_counters[&7], (6, 3));
    }

    #[test]
    fn categories_tell_differences() {
        let mut a = CacheData::default();
        a.unread.insert((1, 2), 3);
        let mut b = a.clone();
        assert_eq!(a.categories(), b.categories());
        b.unread.insert((1, 2), 4);
        assert_ne!(a.categories()[0], b.categories()[0]);
        assert_eq!(a.categories()[1], b.categories()[1]);
        let hashes = Members::from([(1, BTreeMap::from([(5, 10)])), (2, BTreeMap::new())]);
        let members = Members::from([(1, BTreeMap::from([(5, 10)])), (3, BTreeMap::new())]);
        assert_eq!(member_mismatches(&hashes, &members), vec![2, 3]);
    }
}
