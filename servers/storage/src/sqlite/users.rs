//! Accounts as db_proxy uses them: login credentials, user info and sync, departments,
//! signature and push shield (STORAGE.md 4.1, FLOWS.md 10 and 15.5).

use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::StorageResult;
use crate::types::{Credentials, Department, Timestamp, User, UserId};

use super::row::{text_at, u8_at, u32_at};
use super::writer::Tx;

/// The `IMUser` columns of [`User`], in [`user_from_row`] order.
macro_rules! user_cols {
    () => {
        "id, sex, name, domain, nick, phone, email, avatar, departId, status, sign_info, \
         push_shield_status, created, updated"
    };
}
pub(super) use user_cols;

/// Decodes a row selected with [`user_cols`].
pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: u32_at(row, 0)?,
        sex: u8_at(row, 1)?,
        name: text_at(row, 2)?,
        domain: text_at(row, 3)?,
        nick: text_at(row, 4)?,
        phone: text_at(row, 5)?,
        email: text_at(row, 6)?,
        avatar: text_at(row, 7)?,
        depart_id: u32_at(row, 8)?,
        status: u8_at(row, 9)?,
        sign_info: text_at(row, 10)?,
        push_shield: u32_at(row, 11)? != 0,
        created: u32_at(row, 12)?,
        updated: u32_at(row, 13)?,
    })
}

/// Password data by login name: any status, the active row with the lowest id first; with
/// the user's row, so that a login is one query.
pub(super) fn credentials(conn: &Connection, name: &str) -> StorageResult<Option<Credentials>> {
    // `user_cols` (0..=13), then password, salt and the argon2id hash.
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        user_cols!(),
        ", password, salt, (SELECT phc FROM IMUserArgon2 WHERE userId = IMUser.id) \
         FROM IMUser WHERE name = ?1 ORDER BY (COALESCE(status, 0) != 0), id LIMIT 1"
    ))?;
    let creds = stmt
        .query_row([name], |row| {
            Ok(Credentials {
                user: user_from_row(row)?,
                legacy_hash: text_at(row, 14)?,
                salt: text_at(row, 15)?,
                argon2: row.get::<_, Option<String>>(16)?,
            })
        })
        .optional()?;
    Ok(creds)
}

/// Stores or replaces a user's argon2id hash.
pub(super) fn set_argon2(tx: &Tx<'_>, user: UserId, phc: &str) -> StorageResult<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMUserArgon2 (userId, phc, updated) VALUES (?1, ?2, ?3) \
             ON CONFLICT (userId) DO UPDATE SET phc = excluded.phc, updated = excluded.updated",
        )?
        .execute((user, phc, tx.now))?;
    Ok(())
}

/// Users by id (any status); unknown ids skipped, duplicates answered once.
pub(super) fn users_by_ids(conn: &Connection, ids: &[UserId]) -> StorageResult<Vec<User>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        user_cols!(),
        " FROM IMUser WHERE id = ?1"
    ))?;
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(user) = stmt.query_row([id], user_from_row).optional()? {
            users.push(user);
        }
    }
    Ok(users)
}

/// FLOWS.md 10: `since == 0` -> everyone but status 3; else `updated >= since`, any status.
pub(super) fn changed_users(conn: &Connection, since: Timestamp) -> StorageResult<Vec<User>> {
    let users = if since == 0 {
        conn.prepare_cached(concat!(
            "SELECT ",
            user_cols!(),
            " FROM IMUser WHERE COALESCE(status, 0) != 3 ORDER BY id"
        ))?
        .query_map([], user_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?
    } else {
        let mut users = conn
            .prepare_cached(CHANGED_SINCE)?
            .query_map([since], user_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        users.sort_unstable_by_key(|u| u.id);
        users
    };
    Ok(users)
}

/// Users changed since `?1`, for every client's buddy sync at login. Without an `ORDER BY`
/// (the caller sorts the few rows): with `ORDER BY id` SQLite's planner scanned the whole
/// table in id order rather than sort a range of `idx_IMUser_updated`, 16.8 ms against 3.2 ms
/// with 102,000 users of which 2,020 changed, and a full scan even when none had.
const CHANGED_SINCE: &str = concat!("SELECT ", user_cols!(), " FROM IMUser WHERE updated >= ?1");

/// The `IMDepart` columns of [`Department`].
macro_rules! dept_cols {
    () => {
        "id, departName, priority, parentId, status, created, updated"
    };
}
pub(super) use dept_cols;

/// Decodes a row selected with [`dept_cols`].
pub(super) fn dept_from_row(row: &Row<'_>) -> rusqlite::Result<Department> {
    Ok(Department {
        id: u32_at(row, 0)?,
        name: text_at(row, 1)?,
        priority: u32_at(row, 2)?,
        parent_id: u32_at(row, 3)?,
        status: u8_at(row, 4)?,
        created: u32_at(row, 5)?,
        updated: u32_at(row, 6)?,
    })
}

/// Departments with `updated > since`, status 0 or 1.
pub(super) fn changed_departments(
    conn: &Connection,
    since: Timestamp,
) -> StorageResult<Vec<Department>> {
    let depts = conn
        .prepare_cached(concat!(
            "SELECT ",
            dept_cols!(),
            " FROM IMDepart WHERE updated > ?1 AND status IN (0, 1) ORDER BY id"
        ))?
        .query_map([since], dept_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(depts)
}

/// Signature + `updated`; `false` for an unknown user.
pub(super) fn set_sign_info(tx: &Tx<'_>, user: UserId, sign: &str) -> StorageResult<bool> {
    let n = tx
        .conn
        .prepare_cached("UPDATE IMUser SET sign_info = ?2, updated = ?3 WHERE id = ?1")?
        .execute((user, sign, tx.now))?;
    Ok(n > 0)
}

/// `push_shield_status` + `updated`; `false` for an unknown user.
pub(super) fn set_push_shield(tx: &Tx<'_>, user: UserId, on: bool) -> StorageResult<bool> {
    let n = tx
        .conn
        .prepare_cached("UPDATE IMUser SET push_shield_status = ?2, updated = ?3 WHERE id = ?1")?
        .execute((user, u32::from(on), tx.now))?;
    Ok(n > 0)
}

/// `push_shield_status`, `None` for an unknown user.
pub(super) fn push_shield(conn: &Connection, user: UserId) -> StorageResult<Option<bool>> {
    let v = conn
        .prepare_cached("SELECT push_shield_status FROM IMUser WHERE id = ?1")?
        .query_row([user], |row| u32_at(row, 0))
        .optional()?;
    Ok(v.map(|v| v != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::test_util::{fresh_writer, plan};

    /// The buddy sync reads the range of the `updated` index, not the whole table.
    #[test]
    fn changed_users_searches_the_updated_index() {
        let (_dir, _config, conn) = fresh_writer();
        let steps = plan(&conn, CHANGED_SINCE);
        assert_eq!(
            steps,
            ["SEARCH IMUser USING INDEX idx_IMUser_updated (updated>?)"],
            "{CHANGED_SINCE}"
        );
    }
}
