//! Opening a database: create missing tables, record the schema version, add the unique
//! keys the original lacks (WEAKNESSES 26) wherever the existing data allows it, and the
//! plain indexes of [`INDEXES`].
//!
//! A unique key is added only when the table holds no duplicate rows for it; otherwise the
//! duplicates are listed (in the returned [`MigrationReport`] and in a warning) and the store
//! runs without that key, using locking reads instead, so that it never adds new duplicates.
//! The check is repeated at every start, so the key appears once an operator has cleaned the
//! data. Concurrent starts are serialized with `GET_LOCK`.

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, MySqlPool};

use super::rows::{col_str, col_u32, now};
use super::schema;
use crate::error::{StorageError, StorageResult};

/// The schema version this build writes. 1 = the original tables plus ours
/// (`im_schema_version`, `im_store_request`, `im_user_argon2`, `IMTransmitFile`).
pub const SCHEMA_VERSION: u32 = 1;

/// How long a starting process waits for another one's migration.
const LOCK_WAIT_SECS: u32 = 60;

/// An index we want: unique ([`RELATION_KEY`], [`SESSION_KEY`], [`MEMBER_KEY`]) or plain
/// ([`INDEXES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    /// Table.
    pub table: &'static str,
    /// Index name.
    pub name: &'static str,
    /// Columns, in index order.
    pub columns: &'static [&'static str],
}

/// `IMRelationShip (smallId, bigId)`: one relation per user pair.
pub const RELATION_KEY: IndexSpec = IndexSpec {
    table: "IMRelationShip",
    name: "uk_smallId_bigId",
    columns: &["smallId", "bigId"],
};

/// `IMRecentSession (userId, peerId, type)`: one session per conversation and owner.
pub const SESSION_KEY: IndexSpec = IndexSpec {
    table: "IMRecentSession",
    name: "uk_userId_peerId_type",
    columns: &["userId", "peerId", "type"],
};

/// `IMGroupMember (groupId, userId)`: one member row per group and user.
pub const MEMBER_KEY: IndexSpec = IndexSpec {
    table: "IMGroupMember",
    name: "uk_groupId_userId",
    columns: &["groupId", "userId"],
};

/// Rows sharing one value of a wanted unique key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRows {
    /// The key's column values.
    pub values: Vec<u32>,
    /// Primary keys of the rows holding them.
    pub ids: Vec<u32>,
}

/// What happened to one wanted unique key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// It was there already.
    Present,
    /// Added now.
    Added,
    /// Not added: the table holds duplicates (at most [`MAX_LISTED`] groups are listed).
    Duplicates(Vec<DuplicateRows>),
}

/// Most duplicate groups listed per key.
pub const MAX_LISTED: usize = 100;

/// The outcome of opening a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version before opening (0 for a database we had never opened).
    pub previous_version: u32,
    /// Each wanted unique key and its state.
    pub unique_keys: Vec<(IndexSpec, KeyState)>,
}

impl MigrationReport {
    /// Whether `key` is in force (present or added).
    pub fn has(&self, key: IndexSpec) -> bool {
        self.unique_keys
            .iter()
            .any(|(k, state)| *k == key && !matches!(state, KeyState::Duplicates(_)))
    }
}

/// Creates the tables, records the version and adds the unique keys.
pub async fn migrate(pool: &MySqlPool) -> StorageResult<MigrationReport> {
    let mut conn = pool.acquire().await.map_err(open_error)?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('im_storage_migrate', ?)")
        .bind(LOCK_WAIT_SECS)
        .fetch_one(&mut *conn)
        .await
        .map_err(open_error)?;
    if locked != Some(1) {
        return Err(StorageError::Open(format!(
            "another process has been migrating this database for more than {LOCK_WAIT_SECS} s"
        )));
    }
    let result = migrate_locked(&mut conn).await;
    let released = sqlx::query("DO RELEASE_LOCK('im_storage_migrate')")
        .execute(&mut *conn)
        .await;
    let report = result?;
    released.map_err(open_error)?;
    Ok(report)
}

async fn migrate_locked(conn: &mut MySqlConnection) -> StorageResult<MigrationReport> {
    for statement in schema::create_statements() {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .map_err(open_error)?;
    }
    let previous_version = sqlx::query("SELECT version FROM im_schema_version WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(open_error)?
        .map(|row| col_u32(&row, 0))
        .transpose()?
        .unwrap_or(0);
    if previous_version > SCHEMA_VERSION {
        return Err(StorageError::Open(format!(
            "the database has schema version {previous_version}, newer than this build's \
             {SCHEMA_VERSION}; upgrade im-storage"
        )));
    }
    sqlx::query(
        "INSERT INTO im_schema_version (id, version, updated) VALUES (1, ?, ?) \
         ON DUPLICATE KEY UPDATE version = VALUES(version), updated = VALUES(updated)",
    )
    .bind(SCHEMA_VERSION)
    .bind(now())
    .execute(&mut *conn)
    .await
    .map_err(open_error)?;

    let mut unique_keys = Vec::new();
    for key in [RELATION_KEY, SESSION_KEY, MEMBER_KEY] {
        let state = ensure_unique_key(conn, key).await?;
        if let KeyState::Duplicates(groups) = &state {
            let first = groups.first().map(|g| (&g.values, &g.ids));
            tracing::warn!(
                table = key.table,
                key = key.name,
                columns = ?key.columns,
                groups = groups.len(),
                first = ?first,
                "duplicate rows: unique key not added; the store uses locking reads instead \
                 (remove the duplicates and restart to add the key)"
            );
        }
        unique_keys.push((key, state));
    }
    for index in INDEXES {
        ensure_index(conn, index).await?;
    }
    Ok(MigrationReport {
        previous_version,
        unique_keys,
    })
}

/// Plain indexes the original lacks, added at every open where missing. Harmless to original
/// servers sharing the database (they only keep them up to date).
pub const INDEXES: &[IndexSpec] = &[UPDATED_USERS_INDEX];

/// `IMUser (updated)`: every client's buddy sync at login asks for the users changed since
/// its last sync (`updated >= t`). The original answers most of these from an in-memory
/// "last change" time, which we do not keep (WEAKNESSES 32); without this index each of them
/// read the whole table.
pub const UPDATED_USERS_INDEX: IndexSpec = IndexSpec {
    table: "IMUser",
    name: "idx_updated",
    columns: &["updated"],
};

async fn index_exists(conn: &mut MySqlConnection, table: &str, name: &str) -> StorageResult<bool> {
    let present: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ? LIMIT 1",
    )
    .bind(table)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(open_error)?;
    Ok(present.is_some())
}

fn column_list(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn ensure_index(conn: &mut MySqlConnection, index: &IndexSpec) -> StorageResult<()> {
    if index_exists(conn, index.table, index.name).await? {
        return Ok(());
    }
    // Names are our constants, never input.
    let alter = format!(
        "ALTER TABLE `{}` ADD INDEX `{}` ({})",
        index.table,
        index.name,
        column_list(index.columns)
    );
    sqlx::raw_sql(AssertSqlSafe(alter))
        .execute(&mut *conn)
        .await
        .map_err(open_error)?;
    tracing::info!(table = index.table, index = index.name, "index added");
    Ok(())
}

async fn ensure_unique_key(conn: &mut MySqlConnection, key: IndexSpec) -> StorageResult<KeyState> {
    if index_exists(conn, key.table, key.name).await? {
        return Ok(KeyState::Present);
    }
    let duplicates = list_duplicates(conn, key).await?;
    if !duplicates.is_empty() {
        return Ok(KeyState::Duplicates(duplicates));
    }
    // Names are our constants, never input.
    let alter = format!(
        "ALTER TABLE `{}` ADD UNIQUE KEY `{}` ({})",
        key.table,
        key.name,
        column_list(key.columns)
    );
    match sqlx::raw_sql(AssertSqlSafe(alter))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(KeyState::Added),
        // A duplicate inserted meanwhile (by an original server sharing the database).
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Ok(KeyState::Duplicates(list_duplicates(conn, key).await?))
        }
        Err(e) => Err(open_error(e)),
    }
}

async fn list_duplicates(
    conn: &mut MySqlConnection,
    key: IndexSpec,
) -> StorageResult<Vec<DuplicateRows>> {
    let columns = column_list(key.columns);
    // NULLs never collide in a unique index, so rows with a NULL key column are no obstacle.
    let not_null = key
        .columns
        .iter()
        .map(|c| format!("`{c}` IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT {columns}, GROUP_CONCAT(`id` ORDER BY `id`) FROM `{}` WHERE {not_null} \
         GROUP BY {columns} HAVING COUNT(*) > 1 ORDER BY {columns} LIMIT {MAX_LISTED}",
        key.table
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(open_error)?;
    let n = key.columns.len();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(col_u32(&row, i)?);
        }
        let ids = col_str(&row, n)?
            .split(',')
            .filter_map(|id| id.trim().parse::<u32>().ok())
            .collect();
        out.push(DuplicateRows { values, ids });
    }
    Ok(out)
}

fn open_error(e: sqlx::Error) -> StorageError {
    StorageError::Open(format!("migrating the MySQL schema: {e}"))
}
