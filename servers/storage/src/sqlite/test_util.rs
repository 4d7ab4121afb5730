//! Helpers of the SQLite backend's unit tests.

use rusqlite::Connection;

use crate::config::SqliteConfig;
use crate::sqlite::schema::open_writer;

/// The query plan of `sql` (every parameter bound to 0), one detail line per step.
pub(super) fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let zeros = std::iter::repeat_n(0i64, stmt.parameter_count());
    stmt.query_map(rusqlite::params_from_iter(zeros), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A new database in a temporary directory and its writer connection.
pub(super) fn fresh_writer() -> (tempfile::TempDir, SqliteConfig, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("t.db"),
        ..SqliteConfig::default()
    };
    let conn = open_writer(&config).unwrap();
    (dir, config, conn)
}
