//! Administration (imctl): users, departments, discovery items (FLOWS.md 22). Groups are
//! listed by [`super::groups::list_groups`].

use rusqlite::{Connection, OptionalExtension};

use crate::error::{StorageError, StorageResult};
use crate::password;
use crate::types::{Department, DeptId, DiscoveryItem, NewUser, User, UserId, UserPatch};

use super::row::{text_at, u8_at, u32_at};
use super::users::{dept_cols, dept_from_row, user_cols, user_from_row};
use super::writer::Tx;

/// Another active (status != 3) user named `name`, other than `except`.
fn active_namesake(tx: &Tx<'_>, name: &str, except: UserId) -> StorageResult<Option<UserId>> {
    let id = tx
        .conn
        .prepare_cached(
            "SELECT id FROM IMUser WHERE name = ?1 AND COALESCE(status, 0) != 3 AND id != ?2 \
             ORDER BY id LIMIT 1",
        )?
        .query_row((name, except), |row| u32_at(row, 0))
        .optional()?;
    Ok(id)
}

/// Creates a user with a fresh salt and the original password format.
pub(super) fn add_user(tx: &Tx<'_>, user: &NewUser) -> StorageResult<UserId> {
    if user.name.is_empty() {
        return Err(StorageError::Invalid("user name is empty".into()));
    }
    if user.status != 3
        && let Some(other) = active_namesake(tx, &user.name, 0)?
    {
        return Err(StorageError::Conflict(format!(
            "an active user named {:?} exists (id {other})",
            user.name
        )));
    }
    let salt = password::new_salt();
    let hash = password::legacy_hash_plain(&user.password, &salt);
    tx.conn
        .prepare_cached(
            "INSERT INTO IMUser (sex, name, domain, nick, password, salt, phone, email, avatar, \
             departId, status, created, updated, push_shield_status, sign_info) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, 0, '')",
        )?
        .execute(rusqlite::params![
            user.sex,
            user.name,
            user.domain,
            user.nick,
            hash,
            salt,
            user.phone,
            user.email,
            user.avatar,
            user.depart_id,
            user.status,
            tx.now,
        ])?;
    Ok(tx.conn.last_insert_rowid() as UserId)
}

/// Applies a patch and bumps `updated`; `false` for an unknown user.
pub(super) fn update_user(tx: &Tx<'_>, id: UserId, patch: &UserPatch) -> StorageResult<bool> {
    let current = tx
        .conn
        .prepare_cached("SELECT name, salt FROM IMUser WHERE id = ?1")?
        .query_row([id], |row| Ok((text_at(row, 0)?, text_at(row, 1)?)))
        .optional()?;
    let Some((name, salt)) = current else {
        return Ok(false);
    };
    // Re-activating a user must not create a second active account with the same name.
    if let Some(status) = patch.status
        && status != 3
        && let Some(other) = active_namesake(tx, &name, id)?
    {
        return Err(StorageError::Conflict(format!(
            "an active user named {name:?} exists (id {other})"
        )));
    }
    let hash = patch
        .password
        .as_deref()
        .map(|plain| password::legacy_hash_plain(plain, &salt));
    tx.conn
        .prepare_cached(
            "UPDATE IMUser SET nick = COALESCE(?2, nick), sex = COALESCE(?3, sex), \
             domain = COALESCE(?4, domain), phone = COALESCE(?5, phone), \
             email = COALESCE(?6, email), avatar = COALESCE(?7, avatar), \
             departId = COALESCE(?8, departId), status = COALESCE(?9, status), \
             password = COALESCE(?10, password), updated = ?11 WHERE id = ?1",
        )?
        .execute(rusqlite::params![
            id,
            patch.nick,
            patch.sex,
            patch.domain,
            patch.phone,
            patch.email,
            patch.avatar,
            patch.depart_id,
            patch.status,
            hash,
            tx.now,
        ])?;
    Ok(true)
}

/// Users by id after `after_id`.
pub(super) fn list_users(
    conn: &Connection,
    after_id: UserId,
    limit: u32,
) -> StorageResult<Vec<User>> {
    let users = conn
        .prepare_cached(concat!(
            "SELECT ",
            user_cols!(),
            " FROM IMUser WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map((after_id, limit), user_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(users)
}

/// Creates a department (status 0).
pub(super) fn add_department(
    tx: &Tx<'_>,
    name: &str,
    parent_id: DeptId,
    priority: u32,
) -> StorageResult<DeptId> {
    if name.is_empty() {
        return Err(StorageError::Invalid("department name is empty".into()));
    }
    tx.conn
        .prepare_cached(
            "INSERT INTO IMDepart (departName, priority, parentId, status, created, updated) \
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
        )?
        .execute((name, priority, parent_id, tx.now))?;
    Ok(tx.conn.last_insert_rowid() as DeptId)
}

/// Every department by id.
pub(super) fn list_departments(conn: &Connection) -> StorageResult<Vec<Department>> {
    let depts = conn
        .prepare_cached(concat!(
            "SELECT ",
            dept_cols!(),
            " FROM IMDepart ORDER BY id"
        ))?
        .query_map([], dept_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(depts)
}

/// Visible discovery items, by priority (then id).
pub(super) fn discovery(conn: &Connection) -> StorageResult<Vec<DiscoveryItem>> {
    let items = conn
        .prepare_cached(
            "SELECT id, itemName, itemUrl, itemPriority, status FROM IMDiscovery \
             WHERE status = 0 ORDER BY itemPriority, id",
        )?
        .query_map([], |row| {
            Ok(DiscoveryItem {
                id: u32_at(row, 0)?,
                name: text_at(row, 1)?,
                url: text_at(row, 2)?,
                priority: u32_at(row, 3)?,
                status: u8_at(row, 4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(items)
}

/// Adds a visible discovery item.
pub(super) fn add_discovery(
    tx: &Tx<'_>,
    name: &str,
    url: &str,
    priority: u32,
) -> StorageResult<u32> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMDiscovery (itemName, itemUrl, itemPriority, status, created, updated) \
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
        )?
        .execute((name, url, priority, tx.now))?;
    Ok(tx.conn.last_insert_rowid() as u32)
}

/// Hides a discovery item; `false` if unknown.
pub(super) fn remove_discovery(tx: &Tx<'_>, id: u32) -> StorageResult<bool> {
    let n = tx
        .conn
        .prepare_cached("UPDATE IMDiscovery SET status = 1, updated = ?2 WHERE id = ?1")?
        .execute((id, tx.now))?;
    Ok(n > 0)
}
