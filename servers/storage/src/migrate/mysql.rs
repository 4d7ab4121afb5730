//! The MySQL/MariaDB side of a migration. A source is only read (an original deployment is
//! left exactly as it was); a destination is migrated with `mysql::migrate` (the tables of
//! `mysql::schema`, the schema version, the unique keys), plus our progress table.
//!
//! Sessions run with `STRICT_ALL_TABLES` (a value that does not fit fails instead of being
//! truncated, so the copy never changes data silently) and `NO_AUTO_VALUE_ON_ZERO` (an
//! explicit id 0 is kept, not replaced by a new auto-increment value).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Executor, MySql, MySqlPool, Row as _};

use super::sqlite::{join_ids, parse_ids};
use super::tables::{Checksum, Kind, Row, TableSpec, Value, row_key};
use super::{Floors, MigrateError, MigrateResult, Progress, UniqueKeyState};
use crate::mysql::content;
use crate::mysql::migrate::{KeyState, MigrationReport, migrate};
use crate::mysql::pool::redact;

/// Our table in a MySQL destination (see [`Progress`]).
const PROGRESS_DDL: &str = "CREATE TABLE IF NOT EXISTS `im_migrate_progress` (
  `tbl` varchar(64) NOT NULL,
  `source` varchar(512) NOT NULL,
  `last_id` bigint(20) NOT NULL,
  `copied` bigint(20) unsigned NOT NULL,
  `skipped` bigint(20) unsigned NOT NULL,
  `skipped_sum` char(32) NOT NULL,
  `skipped_ids` text NOT NULL,
  `updated` int(11) unsigned NOT NULL,
  PRIMARY KEY (`tbl`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const SQL_MODE: &str = "SET SESSION sql_mode = TRIM(BOTH ',' FROM \
     CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'))";

/// Connections: one writer at a time, plus the verification's reads.
const POOL_SIZE: u32 = 4;
/// How long to wait for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// MySQL's limit of placeholders in one statement.
const MAX_PLACEHOLDERS: usize = 65_535;

/// One MySQL database.
pub(crate) struct MysqlDb {
    pool: MySqlPool,
    shown: String,
    /// Columns found per table, looked up once (an older source schema may lack some).
    columns: Mutex<HashMap<&'static str, HashSet<String>>>,
}

impl MysqlDb {
    /// Connects to a source (nothing is created or changed).
    pub async fn open_source(url: &str) -> MigrateResult<MysqlDb> {
        Ok(MysqlDb {
            pool: connect(url).await?,
            shown: redact(url),
            columns: Mutex::new(HashMap::new()),
        })
    }

    /// Connects to a destination and migrates it.
    pub async fn open_destination(url: &str) -> MigrateResult<(MysqlDb, MigrationReport)> {
        let db = MysqlDb::open_source(url).await?;
        let report = migrate(&db.pool).await?;
        sqlx::raw_sql(AssertSqlSafe(PROGRESS_DDL))
            .execute(&db.pool)
            .await
            .map_err(db.fail("im_migrate_progress"))?;
        Ok((db, report))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn fail(&self, what: &str) -> impl Fn(sqlx::Error) -> MigrateError + use<> {
        let context = format!("{}: {what}", self.shown);
        move |e| MigrateError::Database(format!("{context}: {e}"))
    }

    pub async fn exists(&self, t: &TableSpec) -> MigrateResult<bool> {
        Ok(!self.present_columns(t).await?.is_empty())
    }

    /// Columns of `t` the database has (empty: no such table).
    async fn present_columns(&self, t: &TableSpec) -> MigrateResult<HashSet<String>> {
        if let Ok(cache) = self.columns.lock()
            && let Some(found) = cache.get(t.name)
        {
            return Ok(found.clone());
        }
        let rows = sqlx::query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
        )
        .bind(t.mysql)
        .fetch_all(&self.pool)
        .await
        .map_err(self.fail(t.mysql))?;
        let mut found = HashSet::new();
        for row in rows {
            let name: String = row.try_get_unchecked(0).map_err(self.fail(t.mysql))?;
            found.insert(name);
        }
        if let Ok(mut cache) = self.columns.lock() {
            cache.insert(t.name, found.clone());
        }
        Ok(found)
    }

    /// Columns of `t` the database lacks (read as 0 or '').
    pub async fn missing_columns(&self, t: &TableSpec) -> MigrateResult<Vec<&'static str>> {
        let found = self.present_columns(t).await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        Ok(t.columns
            .iter()
            .filter(|c| !found.contains(c.name))
            .map(|c| c.name)
            .collect())
    }

    pub async fn count(&self, t: &TableSpec) -> MigrateResult<u64> {
        let n: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM `{}`", t.mysql)))
                .fetch_one(&self.pool)
                .await
                .map_err(self.fail(t.mysql))?;
        Ok(n.max(0) as u64)
    }

    pub async fn read_batch(
        &self,
        t: &TableSpec,
        after: i64,
        limit: usize,
    ) -> MigrateResult<Vec<Row>> {
        let found = self.present_columns(t).await?;
        let select: Vec<String> = t
            .columns
            .iter()
            .map(|c| match (found.contains(c.name), c.kind) {
                (true, Kind::Int) => format!("CAST(`{}` AS SIGNED)", c.name),
                (true, _) => format!("`{}`", c.name),
                (false, Kind::Int) => "0".to_owned(),
                (false, _) => "''".to_owned(),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM `{}` WHERE `{key}` > ? ORDER BY `{key}` LIMIT ?",
            select.join(", "),
            t.mysql,
            key = t.key()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(u64::try_from(limit).unwrap_or(u64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.fail(t.mysql))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(decode_row(row, t).map_err(|why| {
                MigrateError::Database(format!("{}: {}: {why}", self.shown, t.mysql))
            })?);
        }
        Ok(out)
    }

    /// Writes `rows` and the table's new progress in one transaction.
    pub async fn write_batch(
        &self,
        t: &TableSpec,
        rows: Vec<Row>,
        prev: &Progress,
        source: &str,
    ) -> MigrateResult<Progress> {
        let fail = self.fail(t.mysql);
        let mut tx = self.pool.begin().await.map_err(&fail)?;
        let per_statement = (MAX_PLACEHOLDERS / t.columns.len()).max(1);
        for chunk in rows.chunks(per_statement) {
            let mut query = sqlx::query(AssertSqlSafe(upsert_sql(t, chunk.len())));
            for row in chunk {
                for (value, column) in row.iter().zip(t.columns) {
                    query = bind(query, value, column.kind).map_err(|why| {
                        MigrateError::Database(format!(
                            "{}: {} {} {}, column {}: {why}",
                            self.shown,
                            t.mysql,
                            t.key(),
                            row_key(row),
                            column.name
                        ))
                    })?;
                }
            }
            query.execute(&mut *tx).await.map_err(&fail)?;
        }
        let mut skipped = Vec::new();
        if t.unique_key
            && let (Some(first), Some(last)) = (rows.first(), rows.last())
        {
            let sql = format!(
                "SELECT CAST(`{key}` AS SIGNED) FROM `{}` WHERE `{key}` >= ? AND `{key}` <= ?",
                t.mysql,
                key = t.key()
            );
            let present: HashSet<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(row_key(first))
                .bind(row_key(last))
                .fetch_all(&mut *tx)
                .await
                .map_err(&fail)?
                .into_iter()
                .collect();
            skipped = rows
                .iter()
                .map(row_key)
                .filter(|k| !present.contains(k))
                .collect();
        }
        let next = prev.advance(&rows, &skipped);
        save_progress(&mut *tx, &next, source)
            .await
            .map_err(self.fail("im_migrate_progress"))?;
        tx.commit().await.map_err(&fail)?;
        Ok(next)
    }

    pub async fn load_progress(&self) -> MigrateResult<Vec<(String, Progress)>> {
        let rows = sqlx::query(
            "SELECT tbl, source, last_id, copied, skipped, skipped_sum, skipped_ids \
             FROM im_migrate_progress ORDER BY tbl",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.fail("im_migrate_progress"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |e: sqlx::Error| {
                MigrateError::Database(format!("{}: im_migrate_progress: {e}", self.shown))
            };
            let sum: String = row.try_get_unchecked(5).map_err(get)?;
            let ids: String = row.try_get_unchecked(6).map_err(get)?;
            out.push((
                row.try_get_unchecked(1).map_err(get)?,
                Progress {
                    table: row.try_get_unchecked(0).map_err(get)?,
                    last_id: row.try_get_unchecked(2).map_err(get)?,
                    copied: row.try_get_unchecked(3).map_err(get)?,
                    skipped: Checksum {
                        rows: row.try_get_unchecked(4).map_err(get)?,
                        sum: Checksum::parse_sum(&sum).unwrap_or(0),
                    },
                    skipped_ids: parse_ids(&ids),
                },
            ));
        }
        Ok(out)
    }

    pub async fn reset_progress(&self) -> MigrateResult<()> {
        sqlx::query("DELETE FROM im_migrate_progress")
            .execute(&self.pool)
            .await
            .map_err(self.fail("im_migrate_progress"))?;
        Ok(())
    }

    pub async fn floors(&self) -> MigrateResult<Floors> {
        let mut floors = Floors::default();
        for n in 0..8 {
            for (table, column, map) in [
                ("IMMessage", "relateId", &mut floors.relations),
                ("IMGroupMessage", "groupId", &mut floors.groups),
            ] {
                let sql = format!(
                    "SELECT CAST({column} AS SIGNED), CAST(MAX(msgId) AS SIGNED) \
                     FROM {table}_{n} GROUP BY {column}"
                );
                let rows: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(self.fail(table))?;
                for (id, max) in rows {
                    let (Ok(id), Ok(max)) = (u32::try_from(id), u32::try_from(max)) else {
                        continue;
                    };
                    let floor = map.entry(id).or_insert(0);
                    *floor = (*floor).max(max);
                }
            }
        }
        Ok(floors)
    }
}

async fn connect(url: &str) -> MigrateResult<MySqlPool> {
    let options = MySqlConnectOptions::from_str(url)
        .map_err(|e| MigrateError::Url(format!("{}: {e}", redact(url))))?
        .charset("utf8mb4");
    MySqlPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(SQL_MODE).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| {
            let hint = match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42000") => {
                    "; create it first: CREATE DATABASE <name> CHARACTER SET utf8mb4"
                }
                _ => "",
            };
            MigrateError::Database(format!("cannot connect to {}: {e}{hint}", redact(url)))
        })
}

fn decode_row(row: &MySqlRow, t: &TableSpec) -> Result<Row, String> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, column) in t.columns.iter().enumerate() {
        let at = |e: sqlx::Error| {
            let key = out_key(&out);
            format!("{} {key}, column {}: {e}", t.key(), column.name)
        };
        let value = match column.kind {
            Kind::Int => row
                .try_get_unchecked::<Option<i64>, _>(i)
                .map_err(at)?
                .map_or(Value::Null, Value::Int),
            Kind::Text => row
                .try_get_unchecked::<Option<String>, _>(i)
                .map_err(at)?
                .map_or(Value::Null, Value::Text),
            Kind::Bytes => row
                .try_get_unchecked::<Option<Vec<u8>>, _>(i)
                .map_err(at)?
                .map_or(Value::Null, |b| Value::Bytes(content::decode(b))),
        };
        out.push(value);
    }
    Ok(out)
}

fn out_key(row: &[Value]) -> i64 {
    row.first().and_then(Value::as_int).unwrap_or(0)
}

type MysqlQuery<'q> = Query<'q, MySql, MySqlArguments>;

/// Binds a value; content is stored the way the MySQL store stores it.
fn bind<'q>(query: MysqlQuery<'q>, value: &'q Value, kind: Kind) -> Result<MysqlQuery<'q>, String> {
    Ok(match value {
        Value::Null => query.bind(None::<i64>),
        Value::Int(v) => query.bind(*v),
        Value::Text(s) => query.bind(s.as_str()),
        Value::Bytes(b) if kind == Kind::Bytes => match content::encode(b) {
            Ok(stored) => query.bind(stored.into_owned()),
            Err(chars) => {
                return Err(format!(
                    "{chars} characters stored, the column holds {}",
                    content::MAX_CHARS
                ));
            }
        },
        Value::Bytes(b) => query.bind(b.as_slice()),
    })
}

/// A multi-row `INSERT ... ON DUPLICATE KEY UPDATE` that replaces a row with the same primary
/// key and leaves alone a row that only shares another unique key (the `IF` on the key).
fn upsert_sql(t: &TableSpec, rows: usize) -> String {
    let names: Vec<String> = t.columns.iter().map(|c| format!("`{}`", c.name)).collect();
    let one = format!("({})", vec!["?"; names.len()].join(","));
    let key = format!("`{}`", t.key());
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = IF({key} = VALUES({key}), VALUES({n}), {n})"))
        .collect();
    format!(
        "INSERT INTO `{}` ({}) VALUES {} ON DUPLICATE KEY UPDATE {}",
        t.mysql,
        names.join(","),
        vec![one; rows].join(","),
        updates.join(", ")
    )
}

async fn save_progress<'c, E>(conn: E, p: &Progress, source: &str) -> Result<(), sqlx::Error>
where
    E: Executor<'c, Database = MySql>,
{
    sqlx::query(
        "INSERT INTO im_migrate_progress \
         (tbl, source, last_id, copied, skipped, skipped_sum, skipped_ids, updated) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE source = VALUES(source), \
         last_id = VALUES(last_id), copied = VALUES(copied), skipped = VALUES(skipped), \
         skipped_sum = VALUES(skipped_sum), skipped_ids = VALUES(skipped_ids), \
         updated = VALUES(updated)",
    )
    .bind(&p.table)
    .bind(source)
    .bind(p.last_id)
    .bind(p.copied)
    .bind(p.skipped.rows)
    .bind(p.skipped.hex())
    .bind(join_ids(&p.skipped_ids))
    .bind(crate::sqlite::unix_now())
    .execute(conn)
    .await?;
    Ok(())
}

/// The unique keys of a migration report, for [`super::SchemaReport`].
pub(crate) fn key_states(report: &MigrationReport) -> Vec<UniqueKeyState> {
    report
        .unique_keys
        .iter()
        .map(|(key, state)| UniqueKeyState {
            table: key.table,
            key: key.name,
            state: match state {
                KeyState::Present => "present",
                KeyState::Added => "added",
                KeyState::Duplicates(_) => "duplicates",
            },
            duplicate_groups: match state {
                KeyState::Duplicates(groups) => groups.len(),
                _ => 0,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::tables::table;

    #[test]
    fn upsert_guards_other_unique_keys() {
        let sql = upsert_sql(table("IMRelationShip").unwrap(), 2);
        assert!(sql.starts_with(
            "INSERT INTO `IMRelationShip` (`id`,`smallId`,`bigId`,`status`,`created`,`updated`) \
             VALUES (?,?,?,?,?,?),(?,?,?,?,?,?) ON DUPLICATE KEY UPDATE "
        ));
        assert!(sql.contains("`smallId` = IF(`id` = VALUES(`id`), VALUES(`smallId`), `smallId`)"));
        let sql = upsert_sql(table("IMUserArgon2").unwrap(), 1);
        assert!(sql.starts_with("INSERT INTO `im_user_argon2`"));
        assert!(sql.contains("`phc` = IF(`userId` = VALUES(`userId`)"));
    }
}
