//! `imctl migrate`: create a schema, copy a whole deployment between backends (SQLite <->
//! MySQL/MariaDB, with the Redis or embedded cache data), and import an original TeamTalk
//! deployment.
//!
//! * A database is named by a URL ([`DbUrl`]): a file path or `sqlite://path` for SQLite,
//!   `mysql://user:password@host:port/db` (or `mariadb://`) for MySQL/MariaDB.
//! * [`schema_up`] runs the backend's own migrations (the DDL lives only in
//!   `sqlite::schema` and `mysql::schema`/`mysql::migrate`).
//! * [`copy`] copies every table of [`tables::TABLES`] in primary-key order, in batches; each
//!   batch is one destination transaction together with the table's progress row in
//!   `im_migrate_progress` (a table of ours in the destination), so a copy that was killed
//!   continues where it stopped when run again. Then the cache data (unread counters, id
//!   sequences, group counters and read marks, device tokens, group settings; group member
//!   hashes rebuilt for a Redis destination) and, unless turned off, a verification: per
//!   table a full read of both sides comparing row counts and checksums over a canonical
//!   encoding of every row ([`tables::row_hash`]), and per cache category its entries.
//!
//! Decisions:
//! * **Rows already in the destination are replaced** by the source's row with the same
//!   primary key (SQLite `ON CONFLICT(id) DO UPDATE`, MySQL `ON DUPLICATE KEY UPDATE` guarded
//!   by the id), so re-running a copy, or `--restart`, converges on the source.
//! * **Rows that break a destination unique key** (duplicate relations, sessions or members,
//!   which the original schema allows, WEAKNESSES 26) are skipped, counted and listed; the
//!   first row (lowest id) wins. Verification subtracts exactly the skipped rows.
//! * **Our own tables:** the argon2id hashes (`IMUserArgon2` / `im_user_argon2`) are copied
//!   like the TeamTalk tables (legacy `IMUser.password` values are copied unchanged, so both
//!   kinds keep working). Not copied: the schema version tables (`IMSchemaVersion`,
//!   `im_schema_version`: the destination's migration writes its own), the store-request
//!   de-duplication tables (`IMRequestDedup`, `im_store_request`: only meaningful for retries
//!   within minutes), the Redis watermarks (`total_user_update`, `last_update_group`:
//!   recomputed) and the `sync` pool (unused by the original).
//! * **Cache data** is read whole into memory (a few hundred bytes per user and group), then
//!   written: a SQLite destination's `IMCache*` tables are replaced in one transaction; in a
//!   Redis destination each key written is replaced whole and no other key is touched.
//!   Standalone Redis only (not Redis Cluster).
//! * The destination should not be in use by a server during the copy.
//! * **Id sequences are never lowered below the stored messages:** each copied sequence is
//!   raised to the highest id stored for its conversation (WEAKNESSES 24).
//! * The source is only read, never migrated. It should be quiet during the copy (stop the
//!   servers, or copy again afterwards: rows with ids past the recorded progress are picked
//!   up, changed older rows show up in the verification).

mod cache;
mod copy;
mod mysql;
mod redis_side;
mod sqlite;
pub mod tables;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::config::RedisConfig;
use crate::error::StorageError;
use tables::{Checksum, Row, TableSpec};

pub use cache::{CacheData, CacheReport, CategoryReport};
pub use copy::{CopyReport, TableReport, copy};

/// Why a migration step failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// A URL that names no supported database.
    #[error("{0}")]
    Url(String),
    /// Opening or migrating a database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A read or write failed; the message names the database, table and row.
    #[error("{0}")]
    Database(String),
    /// Redis failed.
    #[error("redis: {0}")]
    Cache(String),
    /// The destination holds the progress of a copy from another source.
    #[error(
        "the destination holds an unfinished or finished copy from {recorded}, not from \
         {requested}; use another destination, or --restart to copy anew over it"
    )]
    OtherSource {
        /// Source recorded in the destination.
        recorded: String,
        /// Source of this run.
        requested: String,
    },
    /// The source is not what the command needs (e.g. import-teamtalk from SQLite).
    #[error("{0}")]
    Source(String),
    /// The copy stopped after [`CopyOptions::stop_after_batches`] batches (a simulated
    /// interruption).
    #[error("stopped after {0} batches, as asked")]
    Stopped(u64),
}

impl From<redis::RedisError> for MigrateError {
    fn from(e: redis::RedisError) -> Self {
        MigrateError::Cache(e.to_string())
    }
}

/// Result of a migration step.
pub type MigrateResult<T> = Result<T, MigrateError>;

/// A database named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A MySQL/MariaDB URL (`mysql://...`).
    Mysql(String),
}

impl DbUrl {
    /// `path`, `sqlite://path` (`sqlite:///abs/path`), `mysql://...` or `mariadb://...`.
    pub fn parse(url: &str) -> MigrateResult<DbUrl> {
        let url = url.trim();
        if url.is_empty() {
            return Err(MigrateError::Url(
                "empty database URL; expected a SQLite path, sqlite://path or \
                 mysql://user:password@host:3306/database"
                    .into(),
            ));
        }
        if let Some(rest) = url.strip_prefix("mariadb://") {
            return Ok(DbUrl::Mysql(format!("mysql://{rest}")));
        }
        if url.starts_with("mysql://") {
            return Ok(DbUrl::Mysql(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(MigrateError::Url(format!(
                    "{url:?}: no file path after sqlite://"
                )));
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(MigrateError::Url(format!(
                "{scheme}://: unsupported database; expected a SQLite path, sqlite://path, \
                 mysql://... or mariadb://..."
            )));
        }
        Ok(DbUrl::Sqlite(PathBuf::from(url)))
    }

    /// The URL for messages and reports (password hidden; SQLite paths made absolute).
    pub fn display(&self) -> String {
        match self {
            DbUrl::Sqlite(path) => {
                let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!("sqlite://{}", abs.display())
            }
            DbUrl::Mysql(url) => crate::mysql::pool::redact(url),
        }
    }

    /// `"sqlite"` or `"mysql"`.
    pub fn backend(&self) -> &'static str {
        match self {
            DbUrl::Sqlite(_) => "sqlite",
            DbUrl::Mysql(_) => "mysql",
        }
    }
}

/// What [`schema_up`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaReport {
    /// The database (password hidden).
    pub database: String,
    /// `sqlite` or `mysql`.
    pub backend: &'static str,
    /// Schema version after the migration.
    pub version: u32,
    /// MySQL: the unique keys we want (WEAKNESSES 26) and whether each is in force.
    pub unique_keys: Vec<UniqueKeyState>,
}

/// One wanted MySQL unique key after the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UniqueKeyState {
    /// Table.
    pub table: &'static str,
    /// Key name.
    pub key: &'static str,
    /// `present`, `added` or `duplicates` (not added: the table holds duplicate rows).
    pub state: &'static str,
    /// Duplicate groups found (listed in the server's warning log).
    pub duplicate_groups: usize,
}

/// Creates the schema of `url` (tables, indexes, our own tables) or migrates an older one.
pub async fn schema_up(url: &str) -> MigrateResult<SchemaReport> {
    let url = DbUrl::parse(url)?;
    match &url {
        DbUrl::Sqlite(path) => {
            let db = sqlite::SqliteDb::open_destination(path).await?;
            db.close().await;
            Ok(SchemaReport {
                database: url.display(),
                backend: url.backend(),
                version: crate::sqlite::schema::latest_version(),
                unique_keys: Vec::new(),
            })
        }
        DbUrl::Mysql(u) => {
            let (db, report) = mysql::MysqlDb::open_destination(u).await?;
            db.close().await;
            Ok(SchemaReport {
                database: url.display(),
                backend: url.backend(),
                version: crate::mysql::migrate::SCHEMA_VERSION,
                unique_keys: mysql::key_states(&report),
            })
        }
    }
}

/// How [`copy`] runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Rows read and written per batch (one destination transaction each).
    pub batch: usize,
    /// Compare row counts and checksums of every table (and the cache data) at the end.
    pub verify: bool,
    /// Forget the destination's recorded progress and copy every table from the start
    /// (rows already there are replaced).
    pub restart: bool,
    /// Pause between batches, to go easy on a live source.
    pub pause: Duration,
    /// The source's Redis (MySQL source): its cache data is copied too.
    pub from_redis: Option<RedisConfig>,
    /// The destination's Redis (MySQL destination): receives the cache data and the group
    /// member hashes.
    pub to_redis: Option<RedisConfig>,
    /// Stop with [`MigrateError::Stopped`] after this many batches (simulates an
    /// interruption; tests).
    pub stop_after_batches: Option<u64>,
    /// Import of an original TeamTalk deployment: the source must be MySQL with the TeamTalk
    /// tables, and its Redis member hashes are compared with `IMGroupMember`.
    pub teamtalk_import: bool,
}

/// Rows per batch unless told otherwise: big enough that per-transaction costs (an fsync in
/// SQLite, a commit round trip in MySQL) are spread thin, small enough that one batch of
/// 4 KiB messages stays a few MiB.
pub const DEFAULT_BATCH: usize = 1000;

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            batch: DEFAULT_BATCH,
            verify: true,
            restart: false,
            pause: Duration::ZERO,
            from_redis: None,
            to_redis: None,
            stop_after_batches: None,
            teamtalk_import: false,
        }
    }
}

/// Told about the copy's progress (imctl draws progress bars from it). Every method has an
/// empty default.
pub trait CopyObserver: Send + Sync {
    /// Copying of `table` starts: `total` rows in the source, `done` copied by earlier runs.
    fn table_started(&self, _table: &str, _total: u64, _done: u64) {}
    /// `rows` more rows of `table` were written (or skipped).
    fn rows_copied(&self, _table: &str, _rows: u64) {}
    /// `table` is copied.
    fn table_finished(&self, _table: &str) {}
    /// A later phase starts (`"cache"`, `"verify"`), over `steps` steps.
    fn phase_started(&self, _phase: &str, _steps: u64) {}
    /// One step of the current phase is done (`what`: e.g. the table just verified).
    fn phase_step(&self, _what: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl CopyObserver for Quiet {}

/// A table's copy progress, kept in the destination's `im_migrate_progress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Table (SQLite name).
    pub table: String,
    /// Highest primary key copied (rows are copied in key order).
    pub last_id: i64,
    /// Rows written.
    pub copied: u64,
    /// Rows skipped because they break a destination unique key, and their checksum.
    pub skipped: Checksum,
    /// The first [`MAX_LISTED_SKIPS`] skipped ids.
    pub skipped_ids: Vec<i64>,
}

/// Most skipped ids remembered per table.
pub const MAX_LISTED_SKIPS: usize = 100;

impl Progress {
    /// Nothing of `table` copied yet.
    pub fn start(table: &str) -> Progress {
        Progress {
            table: table.to_owned(),
            last_id: i64::MIN,
            copied: 0,
            skipped: Checksum::default(),
            skipped_ids: Vec::new(),
        }
    }

    /// The progress after writing `rows` of which those with keys in `skipped` were not
    /// written.
    pub fn advance(&self, rows: &[Row], skipped: &[i64]) -> Progress {
        let mut next = self.clone();
        let skipped: HashSet<i64> = skipped.iter().copied().collect();
        for row in rows {
            let key = tables::row_key(row);
            next.last_id = next.last_id.max(key);
            if skipped.contains(&key) {
                next.skipped.add(row);
                if next.skipped_ids.len() < MAX_LISTED_SKIPS {
                    next.skipped_ids.push(key);
                }
            } else {
                next.copied += 1;
            }
        }
        next
    }
}

/// Highest stored message id per conversation: relation id -> msgId, group id -> msgId.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floors {
    /// Per `IMRelationShip.id`.
    pub relations: BTreeMap<u32, u32>,
    /// Per group.
    pub groups: BTreeMap<u32, u32>,
}

/// An open database, either backend.
pub(crate) enum Db {
    Sqlite(sqlite::SqliteDb),
    Mysql(mysql::MysqlDb),
}

impl Db {
    async fn exists(&self, t: &TableSpec) -> MigrateResult<bool> {
        match self {
            Db::Sqlite(db) => db.exists(t).await,
            Db::Mysql(db) => db.exists(t).await,
        }
    }

    /// Columns of an existing table the database lacks (an older original schema).
    async fn missing_columns(&self, t: &TableSpec) -> MigrateResult<Vec<&'static str>> {
        match self {
            Db::Sqlite(_) => Ok(Vec::new()),
            Db::Mysql(db) => db.missing_columns(t).await,
        }
    }

    async fn count(&self, t: &TableSpec) -> MigrateResult<u64> {
        match self {
            Db::Sqlite(db) => db.count(t).await,
            Db::Mysql(db) => db.count(t).await,
        }
    }

    async fn read_batch(&self, t: &TableSpec, after: i64, limit: usize) -> MigrateResult<Vec<Row>> {
        match self {
            Db::Sqlite(db) => db.read_batch(t, after, limit).await,
            Db::Mysql(db) => db.read_batch(t, after, limit).await,
        }
    }

    async fn write_batch(
        &self,
        t: &TableSpec,
        rows: Vec<Row>,
        prev: &Progress,
        source: &str,
    ) -> MigrateResult<Progress> {
        match self {
            Db::Sqlite(db) => db.write_batch(t, rows, prev, source).await,
            Db::Mysql(db) => db.write_batch(t, rows, prev, source).await,
        }
    }

    async fn load_progress(&self) -> MigrateResult<Vec<(String, Progress)>> {
        match self {
            Db::Sqlite(db) => db.load_progress().await,
            Db::Mysql(db) => db.load_progress().await,
        }
    }

    async fn reset_progress(&self) -> MigrateResult<()> {
        match self {
            Db::Sqlite(db) => db.reset_progress().await,
            Db::Mysql(db) => db.reset_progress().await,
        }
    }

    async fn floors(&self) -> MigrateResult<Floors> {
        match self {
            Db::Sqlite(db) => db.floors().await,
            Db::Mysql(db) => db.floors().await,
        }
    }

    async fn close(&self) {
        match self {
            Db::Sqlite(db) => db.close().await,
            Db::Mysql(db) => db.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            DbUrl::parse("data/tt.db").unwrap(),
            DbUrl::Sqlite("data/tt.db".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite:///var/tt.db").unwrap(),
            DbUrl::Sqlite("/var/tt.db".into())
        );
        assert_eq!(
            DbUrl::parse("mariadb://u:p@h/db").unwrap(),
            DbUrl::Mysql("mysql://u:p@h/db".into())
        );
        assert_eq!(
            DbUrl::parse("mysql://u:secret@h:3306/db")
                .unwrap()
                .display(),
            "mysql://u:***@h:3306/db"
        );
        let err = DbUrl::parse("postgres://x").unwrap_err().to_string();
        assert!(
            err.contains("postgres://") && err.contains("mysql://"),
            "{err}"
        );
        assert!(DbUrl::parse(" ").is_err());
        assert!(DbUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn progress_counts_skips_apart() {
        let row = |id: i64| vec![tables::Value::Int(id), tables::Value::Int(7)];
        let p = Progress::start("t").advance(&[row(3), row(5), row(9)], &[5]);
        assert_eq!((p.last_id, p.copied, p.skipped.rows), (9, 2, 1));
        assert_eq!(p.skipped_ids, vec![5]);
        let mut only5 = Checksum::default();
        only5.add(&row(5));
        assert_eq!(p.skipped, only5);
    }
}
