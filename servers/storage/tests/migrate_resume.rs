//! `imctl migrate` at the library level: a copy interrupted after some batches resumes and
//! verifies without duplicate rows (into SQLite and into MariaDB); the verification catches a
//! changed or missing row; content too long for MySQL is refused by name; and an ignored
//! throughput run. The MariaDB cases need `IM_TEST_MYSQL_URL` and `IM_TEST_REDIS_URL` (see
//! tests/migrate_support).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod migrate_support;

use std::time::Instant;

use im_storage::migrate::{CopyOptions, MigrateError, Quiet, copy, schema_up};
use migrate_support::{Env, assert_verified, source_file};
use tempfile::TempDir;

/// Interrupted after some batches, the same copy continues where it stopped and verifies,
/// without duplicate rows; `restart` copies everything again over it; another source is
/// refused.
async fn resumes(dest: &str, dir: &TempDir) {
    let (a, _) = source_file(dir, 200).await;
    let from = a.to_str().unwrap();
    let stop = CopyOptions {
        batch: 9,
        stop_after_batches: Some(12),
        ..CopyOptions::default()
    };
    match copy(from, dest, &stop, &Quiet).await {
        Err(MigrateError::Stopped(12)) => {}
        other => panic!("expected a stop, got {other:?}"),
    }
    let options = CopyOptions {
        batch: 9,
        ..CopyOptions::default()
    };
    let report = copy(from, dest, &options, &Quiet).await.unwrap();
    assert_verified(&report);
    let total: u64 = report.tables.iter().map(|t| t.source_rows).sum();
    let now: u64 = report.tables.iter().map(|t| t.copied_now).sum();
    let copied: u64 = report.tables.iter().map(|t| t.copied).sum();
    assert_eq!(copied, total, "every row once");
    assert!(
        now < total && now + 12 * 9 >= total,
        "the second run continued ({now} of {total})"
    );

    let again = copy(from, dest, &options, &Quiet).await.unwrap();
    assert_verified(&again);
    assert_eq!(again.rows_copied, 0, "nothing left to copy");
    let restart = CopyOptions {
        restart: true,
        ..options.clone()
    };
    let fresh = copy(from, dest, &restart, &Quiet).await.unwrap();
    assert_verified(&fresh);
    assert_eq!(fresh.rows_copied, total, "copied again over itself");

    let other_dir = tempfile::tempdir_in(dir.path()).unwrap();
    let (other, _) = source_file(&other_dir, 0).await;
    match copy(other.to_str().unwrap(), dest, &options, &Quiet).await {
        Err(MigrateError::OtherSource { recorded, .. }) => {
            assert!(recorded.ends_with("source.db"), "{recorded}")
        }
        other => panic!("expected OtherSource, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_copy_to_sqlite_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest.db");
    resumes(dest.to_str().unwrap(), &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_copy_to_mariadb_resumes() {
    let Some(env) = Env::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    resumes(&env.url, &dir).await;
}

/// The verification reads every row: a changed byte or a missing row in the destination
/// fails it (naming the tables), and `restart` repairs the copy by replacing rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_catches_changed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = source_file(&dir, 0).await;
    let dest = dir.path().join("dest.db");
    let (from, to) = (a.to_str().unwrap(), dest.to_str().unwrap());
    let options = CopyOptions::default();
    assert_verified(&copy(from, to, &options, &Quiet).await.unwrap());
    let conn = rusqlite::Connection::open(&dest).unwrap();
    conn.execute(
        "UPDATE IMMessage_1 SET content = X'6D302E31' WHERE id = (SELECT MIN(id) FROM IMMessage_1)",
        [],
    )
    .unwrap();
    conn.execute(
        "DELETE FROM IMUser WHERE id = (SELECT MAX(id) FROM IMUser)",
        [],
    )
    .unwrap();
    drop(conn);
    let report = copy(from, to, &options, &Quiet).await.unwrap();
    assert_eq!(report.verified, Some(false));
    let failed: Vec<_> = report
        .tables
        .iter()
        .filter(|t| t.verified != Some(true))
        .map(|t| (t.table, t.source_rows - t.dest_rows.unwrap()))
        .collect();
    assert_eq!(failed, vec![("IMUser", 1), ("IMMessage_1", 0)]);
    let restart = CopyOptions {
        restart: true,
        ..CopyOptions::default()
    };
    assert_verified(&copy(from, to, &restart, &Quiet).await.unwrap());
}

/// A message longer than MySQL's `content` column stops the copy with an error naming the
/// row (nothing is truncated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_too_long_for_mysql_is_refused() {
    let Some(env) = Env::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.db");
    schema_up(path.to_str().unwrap()).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO IMMessage_3 (id, relateId, fromId, toId, msgId, content, type, status, \
         created, updated) VALUES (77, 3, 1, 2, 1, ?1, 1, 0, 1, 1)",
        [vec![b'x'; 5000]],
    )
    .unwrap();
    drop(conn);
    let err = copy(
        path.to_str().unwrap(),
        &env.url,
        &CopyOptions::default(),
        &Quiet,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("IMMessage_3 id 77") && err.contains("5000 characters"),
        "{err}"
    );
}

/// Copy rate of ~100k messages SQLite -> MariaDB (printed; no assertion on time).
/// `cargo test -p im-storage --release --test migrate_resume -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let Some(env) = Env::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    schema_up(path.to_str().unwrap()).await.unwrap();
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    let body = "U2FsdGVkX1+3qF1J4o1yJ8m0b2Q9vX4Hk6m6WwN0eC0pQ5l9x7Ue8g==";
    for i in 0..100_000u32 {
        let relate = 1 + i % 500;
        tx.execute(
            &format!(
                "INSERT INTO IMMessage_{} (relateId, fromId, toId, msgId, content, type, status, \
                 created, updated) VALUES (?1, ?2, ?3, ?4, ?5, 1, 0, ?6, ?6)",
                relate % 8
            ),
            rusqlite::params![
                relate,
                1,
                2,
                i / 500 + 1,
                body.as_bytes(),
                1_700_000_000 + i
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    let started = Instant::now();
    let report = copy(
        path.to_str().unwrap(),
        &env.url,
        &CopyOptions::default(),
        &Quiet,
    )
    .await
    .unwrap();
    let total = started.elapsed();
    assert_verified(&report);
    println!(
        "copied {} rows SQLite -> MariaDB: {:.0} rows/s for the copy phase, {:.1} s in all \
         (verification included)",
        report.rows_copied,
        report.rows_per_second,
        total.as_secs_f64()
    );
}
