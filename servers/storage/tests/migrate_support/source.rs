//! A populated SQLite source file and report checks (im-storage's migration tests).

use std::path::{Path, PathBuf};

use im_storage::SqliteStore;
use im_storage::config::SqliteConfig;
use tempfile::TempDir;

use super::{World, populate};

/// The SQLite config of a file.
pub fn sqlite_config(path: &Path) -> SqliteConfig {
    SqliteConfig {
        path: path.to_owned(),
        ..SqliteConfig::default()
    }
}

/// A SQLite file `source.db` in `dir`, filled by [`populate`] plus rows the Store API does
/// not write (an admin account, a NULL column).
pub async fn source_file(dir: &TempDir, extra: u32) -> (PathBuf, World) {
    let path = dir.path().join("source.db");
    let store = SqliteStore::open(&sqlite_config(&path)).await.unwrap();
    let world = populate(&store, extra).await;
    store.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO IMAdmin (uname, pwd, status, created, updated) \
         VALUES ('admin', '21232f297a57a5a743894a0e4a801fc3', 0, 1, 2)",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE IMUser SET avatar = NULL WHERE id = ?1",
        [world.users[1]],
    )
    .unwrap();
    (path, world)
}

/// Every table (and the whole report) verified; checksums equal where nothing was skipped.
pub fn assert_verified(report: &im_storage::migrate::CopyReport) {
    assert_eq!(report.verified, Some(true), "{report:#?}");
    for t in &report.tables {
        assert_eq!(t.verified, Some(true), "{t:?}");
        if t.skipped == 0 {
            assert_eq!(t.source_checksum, t.dest_checksum, "{t:?}");
        }
    }
}
