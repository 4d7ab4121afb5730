//! Accounts, departments and discovery links (FLOWS.md 10, STORAGE.md 4.1), plus the admin
//! operations imctl uses.

use std::sync::LazyLock;

use sqlx::mysql::MySqlRow;

use super::Inner;
use super::rows::{col_str, col_u8, col_u32, now, placeholders, sql, unique_sorted};
use crate::error::{StorageError, StorageResult};
use crate::password::{legacy_hash_plain, new_salt};
use crate::redis_cache::Pool;
use crate::types::{
    Credentials, Department, DeptId, DiscoveryItem, NewUser, Timestamp, User, UserId, UserPatch,
};

/// Most ids per `IN` list.
const CHUNK: usize = 500;
/// Id lists up to this long are queried with a statement kept prepared per length.
const PERSISTENT_IDS: usize = 8;

const USER_COLS: &str = "id, sex, name, domain, nick, phone, email, avatar, departId, status, \
                         sign_info, push_shield_status, created, updated";

fn user_row(row: &MySqlRow) -> StorageResult<User> {
    Ok(User {
        id: col_u32(row, 0)?,
        sex: col_u8(row, 1)?,
        name: col_str(row, 2)?,
        domain: col_str(row, 3)?,
        nick: col_str(row, 4)?,
        phone: col_str(row, 5)?,
        email: col_str(row, 6)?,
        avatar: col_str(row, 7)?,
        depart_id: col_u32(row, 8)?,
        status: col_u8(row, 9)?,
        sign_info: col_str(row, 10)?,
        push_shield: col_u32(row, 11)? != 0,
        created: col_u32(row, 12)?,
        updated: col_u32(row, 13)?,
    })
}

fn users(rows: &[MySqlRow]) -> StorageResult<Vec<User>> {
    rows.iter().map(user_row).collect()
}

/// Password data by login name: the active row with the lowest id, else the lowest id; with
/// the user's row, so that a login is one query.
///
/// Names are not unique in the original schema (`idx_name` is a plain index), so every row of
/// the name is read and the choice is made here: the same statement with `ORDER BY (status
/// <=> 0) DESC, id LIMIT 1` and the argon2id hash as a dependent subquery cost mysqld 116 µs
/// per login against 82 µs for this join (5,000 logins, one session), and mysqld was the
/// largest CPU user of a login storm.
pub async fn credentials(inner: &Inner, name: &str) -> StorageResult<Option<Credentials>> {
    // [`USER_COLS`] (0..=13), then password, salt and the argon2id hash (NULL without a row).
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let cols: Vec<String> = USER_COLS
            .split(',')
            .map(|c| format!("u.{}", c.trim()))
            .collect();
        format!(
            "SELECT {}, u.password, u.salt, a.phc \
             FROM IMUser u LEFT JOIN im_user_argon2 a ON a.userId = u.id WHERE u.name = ?",
            cols.join(", ")
        )
    });
    // Primary: a login right after an admin created the user or changed the password.
    let rows = sqlx::query(SQL.as_str())
        .bind(name)
        .fetch_all(inner.pools.primary())
        .await?;
    let mut best: Option<Credentials> = None;
    for row in &rows {
        let argon2 = col_str(row, 16)?;
        let cred = Credentials {
            user: user_row(row)?,
            legacy_hash: col_str(row, 14)?,
            salt: col_str(row, 15)?,
            argon2: (!argon2.is_empty()).then_some(argon2),
        };
        let rank = |c: &Credentials| (c.user.status != 0, c.user.id);
        if best.as_ref().is_none_or(|b| rank(&cred) < rank(b)) {
            best = Some(cred);
        }
    }
    Ok(best)
}

/// Stores a user's argon2id hash.
pub async fn set_argon2(inner: &Inner, user: UserId, phc: &str) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO im_user_argon2 (userId, phc, updated) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE phc = VALUES(phc), updated = VALUES(updated)",
    )
    .bind(user)
    .bind(phc)
    .bind(now())
    .execute(inner.pools.primary())
    .await?;
    Ok(())
}

/// Users by id (replica).
pub async fn by_ids(inner: &Inner, ids: &[UserId]) -> StorageResult<Vec<User>> {
    let ids = unique_sorted(ids);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let text = format!(
            "SELECT {USER_COLS} FROM IMUser WHERE id IN ({})",
            placeholders(chunk.len())
        );
        // A statement per list length: short lists (a login asks for one user) keep theirs
        // prepared on the connection; a one-off prepare and close cost MariaDB more than
        // the query, and one round trip more.
        let mut q = sqlx::query(sql(text)).persistent(chunk.len() <= PERSISTENT_IDS);
        for id in chunk {
            q = q.bind(id);
        }
        out.extend(users(&q.fetch_all(inner.pools.replica()).await?)?);
    }
    Ok(out)
}

/// Incremental user sync (replica).
pub async fn changed(inner: &Inner, since: Timestamp) -> StorageResult<Vec<User>> {
    let rows = if since == 0 {
        let text =
            format!("SELECT {USER_COLS} FROM IMUser WHERE COALESCE(status, 0) <> 3 ORDER BY id");
        sqlx::query(sql(text))
            .fetch_all(inner.pools.replica())
            .await?
    } else {
        let text = format!("SELECT {USER_COLS} FROM IMUser WHERE updated >= ? ORDER BY id");
        sqlx::query(sql(text))
            .bind(since)
            .fetch_all(inner.pools.replica())
            .await?
    };
    users(&rows)
}

/// Users after `after_id`, by id (replica).
pub async fn list(inner: &Inner, after_id: UserId, limit: u32) -> StorageResult<Vec<User>> {
    let text = format!("SELECT {USER_COLS} FROM IMUser WHERE id > ? ORDER BY id LIMIT ?");
    let rows = sqlx::query(sql(text))
        .bind(after_id)
        .bind(limit)
        .fetch_all(inner.pools.replica())
        .await?;
    users(&rows)
}

/// Sets the signature; `false` if the user does not exist.
pub async fn set_sign_info(inner: &Inner, user: UserId, sign: &str) -> StorageResult<bool> {
    let t = now();
    let done = sqlx::query("UPDATE IMUser SET sign_info = ?, updated = ? WHERE id = ?")
        .bind(sign)
        .bind(t)
        .bind(user)
        .execute(inner.pools.primary())
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // The original's "last user change" marker; only original servers read it.
    let cmd = redis::cmd("SET")
        .arg(inner.cache.keys().total_user_update())
        .arg(t)
        .to_owned();
    if let Err(e) = inner.cache.query::<()>(Pool::Unread, &cmd).await {
        tracing::debug!(error = %e, "total_user_update not written");
    }
    Ok(true)
}

/// Sets `push_shield_status`; `false` if the user does not exist.
pub async fn set_push_shield(inner: &Inner, user: UserId, on: bool) -> StorageResult<bool> {
    let done = sqlx::query("UPDATE IMUser SET push_shield_status = ?, updated = ? WHERE id = ?")
        .bind(u8::from(on))
        .bind(now())
        .bind(user)
        .execute(inner.pools.primary())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// `push_shield_status` (primary: read right after a change).
pub async fn push_shield(inner: &Inner, user: UserId) -> StorageResult<Option<bool>> {
    let row = sqlx::query("SELECT push_shield_status FROM IMUser WHERE id = ?")
        .bind(user)
        .fetch_optional(inner.pools.primary())
        .await?;
    row.map(|r| Ok(col_u32(&r, 0)? != 0)).transpose()
}

fn check_len(what: &str, value: &str, max: usize) -> StorageResult<()> {
    let n = value.chars().count();
    if n > max {
        return Err(StorageError::Invalid(format!(
            "{what} has {n} characters; at most {max}"
        )));
    }
    Ok(())
}

fn check_profile(
    nick: Option<&str>,
    domain: Option<&str>,
    phone: Option<&str>,
    email: Option<&str>,
    avatar: Option<&str>,
) -> StorageResult<()> {
    for (what, value, max) in [
        ("nick", nick, 32),
        ("domain", domain, 32),
        ("phone", phone, 11),
        ("email", email, 64),
        ("avatar", avatar, 255),
    ] {
        if let Some(value) = value {
            check_len(what, value, max)?;
        }
    }
    Ok(())
}

/// Whether another user that has not left (status != 3) uses `name` (locking read: blocks a
/// concurrent insert of the same name until this transaction ends).
async fn name_taken(
    conn: &mut sqlx::MySqlConnection,
    name: &str,
    except: UserId,
) -> StorageResult<bool> {
    let row = sqlx::query(
        "SELECT id FROM IMUser WHERE name = ? AND id <> ? AND COALESCE(status, 0) <> 3 LIMIT 1 FOR UPDATE",
    )
    .bind(name)
    .bind(except)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// A bound value of a dynamic UPDATE.
enum Value {
    Text(String),
    Number(u32),
}

/// Creates a user.
pub async fn add(inner: &Inner, user: NewUser) -> StorageResult<UserId> {
    if user.name.is_empty() {
        return Err(StorageError::Invalid("empty user name".into()));
    }
    check_len("name", &user.name, 32)?;
    check_profile(
        Some(&user.nick),
        Some(&user.domain),
        Some(&user.phone),
        Some(&user.email),
        Some(&user.avatar),
    )?;
    let mut tx = inner.pools.primary().begin().await?;
    if user.status != 3 && name_taken(&mut tx, &user.name, 0).await? {
        return Err(StorageError::Conflict(format!(
            "an active user named {:?} exists",
            user.name
        )));
    }
    let salt = new_salt();
    let t = now();
    let done = sqlx::query(
        "INSERT INTO IMUser (sex, name, domain, nick, password, salt, phone, email, avatar, \
         departId, status, created, updated, push_shield_status, sign_info) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '')",
    )
    .bind(user.sex)
    .bind(&user.name)
    .bind(&user.domain)
    .bind(&user.nick)
    .bind(legacy_hash_plain(&user.password, &salt))
    .bind(&salt)
    .bind(&user.phone)
    .bind(&user.email)
    .bind(&user.avatar)
    .bind(user.depart_id)
    .bind(user.status)
    .bind(t)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    u32::try_from(done.last_insert_id())
        .map_err(|_| StorageError::Database("user id out of range".into()))
}

/// Applies a profile change; `false` if the user does not exist.
pub async fn update(inner: &Inner, id: UserId, patch: UserPatch) -> StorageResult<bool> {
    check_profile(
        patch.nick.as_deref(),
        patch.domain.as_deref(),
        patch.phone.as_deref(),
        patch.email.as_deref(),
        patch.avatar.as_deref(),
    )?;
    let mut tx = inner.pools.primary().begin().await?;
    let row = sqlx::query("SELECT name, salt, status FROM IMUser WHERE id = ? FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let (name, old_salt, old_status) = (col_str(&row, 0)?, col_str(&row, 1)?, col_u8(&row, 2)?);
    if let Some(status) = patch.status
        && status != 3
        && old_status == 3
        && name_taken(&mut tx, &name, id).await?
    {
        return Err(StorageError::Conflict(format!(
            "an active user named {name:?} exists; user {id} cannot be re-enabled"
        )));
    }
    // Column names are constants; values are bound in the same order.
    let mut sets: Vec<(&str, Value)> = Vec::new();
    for (col, v) in [
        ("nick = ?", patch.nick),
        ("domain = ?", patch.domain),
        ("phone = ?", patch.phone),
        ("email = ?", patch.email),
        ("avatar = ?", patch.avatar),
    ] {
        if let Some(v) = v {
            sets.push((col, Value::Text(v)));
        }
    }
    let password_changed = patch.password.is_some();
    if let Some(plain) = patch.password {
        let salt = if old_salt.is_empty() {
            new_salt()
        } else {
            old_salt
        };
        sets.push((
            "password = ?",
            Value::Text(legacy_hash_plain(&plain, &salt)),
        ));
        sets.push(("salt = ?", Value::Text(salt)));
    }
    for (col, v) in [
        ("sex = ?", patch.sex.map(u32::from)),
        ("departId = ?", patch.depart_id),
        ("status = ?", patch.status.map(u32::from)),
    ] {
        if let Some(v) = v {
            sets.push((col, Value::Number(v)));
        }
    }
    let columns: Vec<&str> = sets
        .iter()
        .map(|(c, _)| *c)
        .chain(["updated = ?"])
        .collect();
    let text = format!("UPDATE IMUser SET {} WHERE id = ?", columns.join(", "));
    let mut q = sqlx::query(sql(text)).persistent(false);
    for (_, v) in sets {
        q = match v {
            Value::Text(s) => q.bind(s),
            Value::Number(n) => q.bind(n),
        };
    }
    q.bind(now()).bind(id).execute(&mut *tx).await?;
    if password_changed {
        // An argon2 hash of the old password must not keep working.
        sqlx::query("DELETE FROM im_user_argon2 WHERE userId = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

fn department_row(row: &MySqlRow) -> StorageResult<Department> {
    Ok(Department {
        id: col_u32(row, 0)?,
        name: col_str(row, 1)?,
        priority: col_u32(row, 2)?,
        parent_id: col_u32(row, 3)?,
        status: col_u8(row, 4)?,
        created: col_u32(row, 5)?,
        updated: col_u32(row, 6)?,
    })
}

const DEPART_COLS: &str = "id, departName, priority, parentId, status, created, updated";

/// Departments with `updated > since`, status 0 or 1 (replica).
pub async fn changed_departments(
    inner: &Inner,
    since: Timestamp,
) -> StorageResult<Vec<Department>> {
    let text = format!(
        "SELECT {DEPART_COLS} FROM IMDepart WHERE updated > ? AND status IN (0, 1) ORDER BY id"
    );
    let rows = sqlx::query(sql(text))
        .bind(since)
        .fetch_all(inner.pools.replica())
        .await?;
    rows.iter().map(department_row).collect()
}

/// Every department (replica).
pub async fn departments(inner: &Inner) -> StorageResult<Vec<Department>> {
    let text = format!("SELECT {DEPART_COLS} FROM IMDepart ORDER BY id");
    let rows = sqlx::query(sql(text))
        .fetch_all(inner.pools.replica())
        .await?;
    rows.iter().map(department_row).collect()
}

/// Creates a department.
pub async fn add_department(
    inner: &Inner,
    name: &str,
    parent: DeptId,
    priority: u32,
) -> StorageResult<DeptId> {
    if name.is_empty() {
        return Err(StorageError::Invalid("empty department name".into()));
    }
    check_len("department name", name, 64)?;
    let t = now();
    let done = sqlx::query(
        "INSERT INTO IMDepart (departName, priority, parentId, status, created, updated) \
         VALUES (?, ?, ?, 0, ?, ?)",
    )
    .bind(name)
    .bind(priority)
    .bind(parent)
    .bind(t)
    .bind(t)
    .execute(inner.pools.primary())
    .await?;
    u32::try_from(done.last_insert_id())
        .map_err(|_| StorageError::Database("department id out of range".into()))
}

/// Visible discovery items by priority (replica).
pub async fn discovery(inner: &Inner) -> StorageResult<Vec<DiscoveryItem>> {
    let rows = sqlx::query(
        "SELECT id, itemName, itemUrl, itemPriority, status FROM IMDiscovery \
         WHERE status = 0 ORDER BY itemPriority, id",
    )
    .fetch_all(inner.pools.replica())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DiscoveryItem {
                id: col_u32(r, 0)?,
                name: col_str(r, 1)?,
                url: col_str(r, 2)?,
                priority: col_u32(r, 3)?,
                status: col_u8(r, 4)?,
            })
        })
        .collect()
}

/// Adds a discovery item.
pub async fn add_discovery(
    inner: &Inner,
    name: &str,
    url: &str,
    priority: u32,
) -> StorageResult<u32> {
    check_len("discovery name", name, 64)?;
    check_len("discovery URL", url, 64)?;
    let t = now();
    let done = sqlx::query(
        "INSERT INTO IMDiscovery (itemName, itemUrl, itemPriority, status, created, updated) \
         VALUES (?, ?, ?, 0, ?, ?)",
    )
    .bind(name)
    .bind(url)
    .bind(priority)
    .bind(t)
    .bind(t)
    .execute(inner.pools.primary())
    .await?;
    u32::try_from(done.last_insert_id())
        .map_err(|_| StorageError::Database("discovery id out of range".into()))
}

/// Hides a discovery item; `false` if unknown.
pub async fn remove_discovery(inner: &Inner, id: u32) -> StorageResult<bool> {
    // CLIENT_FOUND_ROWS is on: an already hidden item still counts as found.
    let done = sqlx::query("UPDATE IMDiscovery SET status = 1, updated = ? WHERE id = ?")
        .bind(now())
        .bind(id)
        .execute(inner.pools.primary())
        .await?;
    Ok(done.rows_affected() > 0)
}
