//! The SQLite side of a migration. A source is opened read-only; a destination is opened the
//! way the store opens its writer (pragmas, then every missing migration step of
//! `sqlite::schema`), plus our progress table. Every call runs on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior};

use super::tables::{Checksum, Kind, Row, TableSpec, Value, row_key};
use super::{Floors, MigrateError, MigrateResult, Progress};
use crate::config::SqliteConfig;
use crate::sqlite::schema;

/// Our table in a SQLite destination: one row per copied table (see [`Progress`]).
const PROGRESS_DDL: &str = "CREATE TABLE IF NOT EXISTS im_migrate_progress (
    tbl TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    copied INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    skipped_sum TEXT NOT NULL,
    skipped_ids TEXT NOT NULL,
    updated INTEGER NOT NULL
)";

/// One SQLite file.
pub(crate) struct SqliteDb {
    conn: Arc<Mutex<Option<Connection>>>,
    path: PathBuf,
}

impl SqliteDb {
    /// Opens an existing file read-only.
    pub async fn open_source(path: &Path) -> MigrateResult<SqliteDb> {
        if !path.is_file() {
            return Err(MigrateError::Source(format!(
                "{}: no such SQLite file",
                path.display()
            )));
        }
        let config = SqliteConfig {
            path: path.to_owned(),
            ..SqliteConfig::default()
        };
        let conn = blocking(move || Ok(schema::open_reader(&config)?)).await?;
        Ok(SqliteDb::new(conn, path))
    }

    /// Opens (creating and migrating) a destination file.
    pub async fn open_destination(path: &Path) -> MigrateResult<SqliteDb> {
        let config = SqliteConfig {
            path: path.to_owned(),
            ..SqliteConfig::default()
        };
        let shown = path.display().to_string();
        let conn = blocking(move || {
            let conn = schema::open_writer(&config)?;
            conn.execute_batch(PROGRESS_DDL)
                .map_err(|e| MigrateError::Database(format!("{shown}: {e}")))?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteDb::new(conn, path))
    }

    fn new(conn: Connection, path: &Path) -> SqliteDb {
        SqliteDb {
            conn: Arc::new(Mutex::new(Some(conn))),
            path: path.to_owned(),
        }
    }

    /// Runs `f` on the connection, on a blocking thread.
    pub(super) async fn run<T, F>(&self, f: F) -> MigrateResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> MigrateResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = self.path.display().to_string();
        blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| MigrateError::Database(format!("{path}: connection poisoned")))?;
            let conn = guard
                .as_mut()
                .ok_or_else(|| MigrateError::Database(format!("{path}: closed")))?;
            f(conn, &path)
        })
        .await
    }

    /// Closes the connection (a destination checkpoints its WAL on the way).
    pub async fn close(&self) {
        let conn = Arc::clone(&self.conn);
        let _ = blocking(move || {
            if let Ok(mut guard) = conn.lock() {
                guard.take();
            }
            Ok(())
        })
        .await;
    }

    pub async fn exists(&self, t: &TableSpec) -> MigrateResult<bool> {
        let name = t.name;
        self.run(move |conn, path| {
            conn.query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(db_error(path, name))
        })
        .await
    }

    pub async fn count(&self, t: &TableSpec) -> MigrateResult<u64> {
        let name = t.name;
        self.run(move |conn, path| {
            conn.query_row(&format!("SELECT COUNT(*) FROM \"{name}\""), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(db_error(path, name))
        })
        .await
    }

    pub async fn read_batch(
        &self,
        t: &TableSpec,
        after: i64,
        limit: usize,
    ) -> MigrateResult<Vec<Row>> {
        let t = *t;
        self.run(move |conn, path| read_batch(conn, path, &t, after, limit))
            .await
    }

    /// Writes `rows` and the table's new progress in one transaction; returns the progress.
    pub async fn write_batch(
        &self,
        t: &TableSpec,
        rows: Vec<Row>,
        prev: &Progress,
        source: &str,
    ) -> MigrateResult<Progress> {
        let (t, prev, source) = (*t, prev.clone(), source.to_owned());
        self.run(move |conn, path| {
            let fail = db_error(path, t.name);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&fail)?;
            let mut skipped = Vec::new();
            {
                let mut stmt = tx.prepare_cached(&upsert_sql(&t)).map_err(&fail)?;
                for row in &rows {
                    let changed = stmt
                        .execute(rusqlite::params_from_iter(row.iter().map(Bind)))
                        .map_err(|e| {
                            MigrateError::Database(format!(
                                "{path}: {} {} {}: {e}",
                                t.name,
                                t.key(),
                                row_key(row)
                            ))
                        })?;
                    // 0: the catch-all DO NOTHING, i.e. a unique key other than the
                    // primary key already holds these values.
                    if changed == 0 {
                        skipped.push(row_key(row));
                    }
                }
            }
            let next = prev.advance(&rows, &skipped);
            save_progress(&tx, &next, &source).map_err(&fail)?;
            tx.commit().map_err(&fail)?;
            Ok(next)
        })
        .await
    }

    pub async fn load_progress(&self) -> MigrateResult<Vec<(String, Progress)>> {
        self.run(|conn, path| {
            let fail = db_error(path, "im_migrate_progress");
            let mut stmt = conn
                .prepare(
                    "SELECT tbl, source, last_id, copied, skipped, skipped_sum, skipped_ids \
                     FROM im_migrate_progress ORDER BY tbl",
                )
                .map_err(&fail)?;
            let rows = stmt
                .query_map([], |r| {
                    let sum: String = r.get(5)?;
                    let ids: String = r.get(6)?;
                    Ok((
                        r.get::<_, String>(1)?,
                        Progress {
                            table: r.get(0)?,
                            last_id: r.get(2)?,
                            copied: r.get::<_, i64>(3)?.max(0) as u64,
                            skipped: Checksum {
                                rows: r.get::<_, i64>(4)?.max(0) as u64,
                                sum: Checksum::parse_sum(&sum).unwrap_or(0),
                            },
                            skipped_ids: parse_ids(&ids),
                        },
                    ))
                })
                .map_err(&fail)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&fail)
        })
        .await
    }

    pub async fn reset_progress(&self) -> MigrateResult<()> {
        self.run(|conn, path| {
            conn.execute("DELETE FROM im_migrate_progress", [])
                .map(|_| ())
                .map_err(db_error(path, "im_migrate_progress"))
        })
        .await
    }

    pub async fn floors(&self) -> MigrateResult<Floors> {
        self.run(|conn, path| {
            let mut floors = Floors::default();
            for n in 0..8 {
                for (table, column, map) in [
                    ("IMMessage", "relateId", &mut floors.relations),
                    ("IMGroupMessage", "groupId", &mut floors.groups),
                ] {
                    let sql =
                        format!("SELECT {column}, MAX(msgId) FROM {table}_{n} GROUP BY {column}");
                    let fail = db_error(path, table);
                    let mut stmt = conn.prepare(&sql).map_err(&fail)?;
                    let pairs = stmt
                        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                        .map_err(&fail)?;
                    for pair in pairs {
                        let (id, max) = pair.map_err(&fail)?;
                        let (Ok(id), Ok(max)) = (u32::try_from(id), u32::try_from(max)) else {
                            continue;
                        };
                        let floor = map.entry(id).or_insert(0);
                        *floor = (*floor).max(max);
                    }
                }
            }
            Ok(floors)
        })
        .await
    }
}

/// Runs blocking SQLite work off the async threads.
async fn blocking<T, F>(f: F) -> MigrateResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> MigrateResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MigrateError::Database(format!("sqlite thread: {e}")))?
}

/// Maps a rusqlite error to one naming the file and table.
pub(super) fn db_error(path: &str, table: &str) -> impl Fn(rusqlite::Error) -> MigrateError {
    let context = format!("{path}: {table}");
    move |e| MigrateError::Database(format!("{context}: {e}"))
}

fn read_batch(
    conn: &Connection,
    path: &str,
    t: &TableSpec,
    after: i64,
    limit: usize,
) -> MigrateResult<Vec<Row>> {
    let fail = db_error(path, t.name);
    let columns = t
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM \"{}\" WHERE \"{key}\" > ?1 ORDER BY \"{key}\" LIMIT ?2",
        t.name,
        key = t.key()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(&fail)?;
    let mut rows = stmt
        .query((after, i64::try_from(limit).unwrap_or(i64::MAX)))
        .map_err(&fail)?;
    let mut out = Vec::with_capacity(limit.min(4096));
    while let Some(r) = rows.next().map_err(&fail)? {
        let mut row = Vec::with_capacity(t.columns.len());
        for (i, column) in t.columns.iter().enumerate() {
            let raw = r.get_ref(i).map_err(&fail)?;
            let value = read_value(raw, column.kind).map_err(|why| {
                let key = row.first().and_then(Value::as_int).unwrap_or(0);
                MigrateError::Database(format!(
                    "{path}: {} {} {key}, column {}: {why}",
                    t.name,
                    t.key(),
                    column.name
                ))
            })?;
            row.push(value);
        }
        out.push(row);
    }
    Ok(out)
}

/// A stored value as the column's kind. Values SQLite's type affinity may have kept in
/// another storage class are converted when that is exact, refused otherwise (the copy
/// must not change data silently).
fn read_value(raw: ValueRef<'_>, kind: Kind) -> Result<Value, String> {
    Ok(match (raw, kind) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Integer(v), Kind::Int) => Value::Int(v),
        (ValueRef::Integer(v), Kind::Text) => Value::Text(v.to_string()),
        (ValueRef::Integer(v), Kind::Bytes) => Value::Bytes(v.to_string().into_bytes()),
        (ValueRef::Text(t) | ValueRef::Blob(t), Kind::Int) => {
            let text = std::str::from_utf8(t).unwrap_or_default();
            Value::Int(
                text.trim()
                    .parse()
                    .map_err(|_| format!("{:?} is not an integer", String::from_utf8_lossy(t)))?,
            )
        }
        (ValueRef::Text(t) | ValueRef::Blob(t), Kind::Text) => Value::Text(
            String::from_utf8(t.to_vec()).map_err(|_| "text that is not UTF-8".to_owned())?,
        ),
        (ValueRef::Text(t) | ValueRef::Blob(t), Kind::Bytes) => Value::Bytes(t.to_vec()),
        (ValueRef::Real(f), _) => return Err(format!("a real number ({f}) where none belongs")),
    })
}

/// Binds a [`Value`]: content as BLOB (what the store writes), text as TEXT.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// `INSERT ... ON CONFLICT(key) DO UPDATE ... ON CONFLICT DO NOTHING`: a row with the same
/// key is replaced; a row that breaks another unique key is left out (and reported).
fn upsert_sql(t: &TableSpec) -> String {
    let names: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    format!(
        "INSERT INTO \"{}\" ({}) VALUES ({}) ON CONFLICT (\"{}\") DO UPDATE SET {} \
         ON CONFLICT DO NOTHING",
        t.name,
        names.join(", "),
        params.join(", "),
        t.key(),
        updates.join(", ")
    )
}

fn save_progress(conn: &Connection, p: &Progress, source: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO im_migrate_progress \
         (tbl, source, last_id, copied, skipped, skipped_sum, skipped_ids, updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (tbl) DO UPDATE SET \
         source = excluded.source, last_id = excluded.last_id, copied = excluded.copied, \
         skipped = excluded.skipped, skipped_sum = excluded.skipped_sum, \
         skipped_ids = excluded.skipped_ids, updated = excluded.updated",
    )?
    .execute((
        &p.table,
        source,
        p.last_id,
        i64::try_from(p.copied).unwrap_or(i64::MAX),
        i64::try_from(p.skipped.rows).unwrap_or(i64::MAX),
        p.skipped.hex(),
        join_ids(&p.skipped_ids),
        i64::from(crate::sqlite::unix_now()),
    ))?;
    Ok(())
}

/// `1,2,3`.
pub(super) fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Parses [`join_ids`] output.
pub(super) fn parse_ids(text: &str) -> Vec<i64> {
    text.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::tables::table;

    #[test]
    fn upsert_replaces_by_key_and_skips_other_conflicts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE IMRelationShip (id INTEGER PRIMARY KEY, smallId INTEGER NOT NULL, \
             bigId INTEGER NOT NULL, status INTEGER, created INTEGER, updated INTEGER); \
             CREATE UNIQUE INDEX uk ON IMRelationShip (smallId, bigId);",
        )
        .unwrap();
        let t = table("IMRelationShip").unwrap();
        let sql = upsert_sql(t);
        let row = |id: i64, s: i64, b: i64, status: Option<i64>| {
            vec![
                Value::Int(id),
                Value::Int(s),
                Value::Int(b),
                status.map_or(Value::Null, Value::Int),
                Value::Int(0),
                Value::Int(0),
            ]
        };
        let put = |r: Row| {
            conn.prepare_cached(&sql)
                .unwrap()
                .execute(rusqlite::params_from_iter(r.iter().map(Bind)))
                .unwrap()
        };
        assert_eq!(put(row(1, 1, 2, Some(0))), 1);
        assert_eq!(put(row(1, 1, 2, None)), 1, "same key: replaced");
        assert_eq!(put(row(2, 1, 2, Some(0))), 0, "duplicate pair: skipped");
        let rows = read_batch(&conn, "mem", t, 0, 10).unwrap();
        assert_eq!(rows, vec![row(1, 1, 2, None)]);
        assert_eq!(parse_ids(&join_ids(&[3, -1, 7])), vec![3, -1, 7]);
        assert!(parse_ids("").is_empty());
    }

    #[test]
    fn values_keep_their_kind() {
        assert_eq!(
            read_value(ValueRef::Text(b"12"), Kind::Int),
            Ok(Value::Int(12))
        );
        assert!(read_value(ValueRef::Text(b"x"), Kind::Int).is_err());
        assert!(read_value(ValueRef::Blob(&[0xff]), Kind::Text).is_err());
        assert_eq!(
            read_value(ValueRef::Text(b"ab"), Kind::Bytes),
            Ok(Value::Bytes(b"ab".to_vec()))
        );
        assert_eq!(read_value(ValueRef::Null, Kind::Text), Ok(Value::Null));
    }
}
