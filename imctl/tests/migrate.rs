//! `imctl migrate` end to end: the real binary for `schema up`, `copy` (SQLite -> SQLite,
//! SQLite -> MariaDB -> SQLite, a verification failure, a `kill -9` in the middle and the
//! resumed copy) and `import-teamtalk`, each checked through its `--json` report and the
//! databases themselves.
//!
//! The MariaDB/Redis cases need `IM_TEST_MYSQL_URL` and `IM_TEST_REDIS_URL` (fail in CI
//! without them, skip loudly elsewhere); the SQLite cases always run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../servers/storage/tests/migrate_support/mod.rs"]
mod migrate_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use im_storage::config::SqliteConfig;
use im_storage::password::{md5_hex, verify_legacy};
use im_storage::{SqliteStore, Store};
use migrate_support::{Env, assert_same_rows, populate};
use serde_json::Value;
use tempfile::TempDir;

const IMCTL: &str = env!("CARGO_BIN_EXE_imctl");
/// How long the killed copy may take to get going (it runs with a pause per batch).
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

/// Output of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    fn ok(self) -> Value {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.json()
    }
}

async fn imctl(dir: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(IMCTL)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A SQLite file with every kind of data and `bulk` more message rows spread over the
/// shards (written directly: the Store API stores one durable message at a time).
async fn source(dir: &TempDir, bulk: u32) -> PathBuf {
    let path = dir.path().join("source.db");
    let config = SqliteConfig {
        path: path.clone(),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config).await.unwrap();
    populate(&store, 0).await;
    store.close().await;
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..bulk {
        let relate = 1000 + i % 64;
        tx.execute(
            &format!(
                "INSERT INTO IMMessage_{} (relateId, fromId, toId, msgId, content, type, \
                 status, created, updated) VALUES (?1, 1, 2, ?2, ?3, 1, 0, ?4, ?4)",
                relate % 8
            ),
            rusqlite::params![
                relate,
                i / 64 + 1,
                format!("bulk {i}").into_bytes(),
                1_700_000_000 + i
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tables(report: &Value) -> &Vec<Value> {
    report["tables"].as_array().unwrap()
}

fn sum(report: &Value, field: &str) -> u64 {
    tables(report)
        .iter()
        .map(|t| t[field].as_u64().unwrap())
        .sum()
}

fn assert_verified(report: &Value) {
    assert_eq!(report["verified"], Value::Bool(true), "{report:#}");
    for t in tables(report) {
        assert_eq!(t["verified"], Value::Bool(true), "{t}");
    }
}

/// Rows copied so far according to the destination's progress table (0 before it exists).
fn progress_rows(dest: &Path) -> u64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(dest, flags) else {
        return 0;
    };
    conn.query_row(
        "SELECT COALESCE(SUM(copied), 0) FROM im_migrate_progress",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_up_and_copy_between_sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(&dir, 500).await;
    let b = dir.path().join("sub/copy.db");
    let report = imctl(
        dir.path(),
        &["--json", "migrate", "schema", "up", "--db", s(&b)],
    )
    .await
    .ok();
    assert_eq!(
        (report["backend"].as_str(), report["version"].as_u64()),
        (Some("sqlite"), Some(2))
    );
    let run = imctl(
        dir.path(),
        &[
            "--json",
            "migrate",
            "copy",
            "--from",
            s(&a),
            "--to",
            &format!("sqlite://{}", b.display()),
            "--batch",
            "50",
        ],
    )
    .await;
    let report = run.ok();
    assert_verified(&report);
    assert_eq!(sum(&report, "copied"), sum(&report, "source_rows"));
    assert!(sum(&report, "copied") > 600);
    assert_eq!(report["cache"]["source"], "embedded");
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_same_rows(&a, &b);

    // People get a table.
    let run = imctl(
        dir.path(),
        &["migrate", "copy", "--from", s(&a), "--to", s(&b)],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("IMGroupMessage_7"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("verified: row counts and checksums match"),
        "{}",
        run.stdout
    );

    // Bad input: the message names the choices, exit code 1.
    let run = imctl(
        dir.path(),
        &["migrate", "copy", "--from", "postgres://x/y", "--to", s(&b)],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("mysql://"), "{}", run.stderr);
}

/// `kill -9` of a running copy, then the same command again: it continues from the recorded
/// progress, verifies, and every row is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_copy_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let a = source(&dir, 20_000).await;
    let b = dir.path().join("dest.db");
    let args = [
        "--json",
        "migrate",
        "copy",
        "--from",
        s(&a),
        "--to",
        s(&b),
        "--batch",
        "100",
    ];
    let mut child = tokio::process::Command::new(IMCTL)
        .args(args)
        .args(["--pause-ms", "20"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while progress_rows(&b) < 1_000 {
        assert!(
            started.elapsed() < PROGRESS_DEADLINE,
            "the copy made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    let before = progress_rows(&b);
    assert!(before >= 1_000, "{before}");

    let report = imctl(dir.path(), &args).await.ok();
    assert_verified(&report);
    let total = sum(&report, "source_rows");
    assert!(before < total, "killed in the middle ({before} of {total})");
    assert_eq!(sum(&report, "copied"), total, "every row once");
    let now = sum(&report, "copied_now");
    assert_eq!(
        now + before,
        total,
        "the second run continued where the first stopped"
    );
    assert_same_rows(&a, &b);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sql")
}

/// SQLite -> MariaDB + Redis -> SQLite through the binary; then a changed row makes the
/// verification fail with exit code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_through_mariadb() {
    let Some(env) = Env::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = source(&dir, 300).await;
    let b = dir.path().join("back.db");
    let report = imctl(
        dir.path(),
        &["--json", "migrate", "schema", "up", "--db", &env.url],
    )
    .await
    .ok();
    assert_eq!(report["unique_keys"].as_array().unwrap().len(), 3);
    let report = imctl(
        dir.path(),
        &[
            "--json",
            "migrate",
            "copy",
            "--from",
            s(&a),
            "--to",
            &env.url,
            "--to-redis",
            &env.redis_url,
            "--to-redis-prefix",
            &env.prefix,
            "--batch",
            "64",
        ],
    )
    .await
    .ok();
    assert_verified(&report);
    let categories = report["cache"]["categories"].as_array().unwrap();
    assert!(
        categories.iter().all(|c| c["equal"] == Value::Bool(true)),
        "{report:#}"
    );
    let back = [
        "--json",
        "migrate",
        "copy",
        "--from",
        &env.url,
        "--from-redis",
        &env.redis_url,
        "--from-redis-prefix",
        &env.prefix,
        "--to",
        s(&b),
    ];
    assert_verified(&imctl(dir.path(), &back).await.ok());
    assert_same_rows(&a, &b);

    let conn = rusqlite::Connection::open(&b).unwrap();
    conn.execute(
        "UPDATE IMUser SET nick = 'changed' WHERE id = (SELECT MIN(id) FROM IMUser)",
        [],
    )
    .unwrap();
    drop(conn);
    let run = imctl(dir.path(), &back).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["verified"], Value::Bool(false));
    let failed: Vec<_> = tables(&report)
        .iter()
        .filter(|t| t["verified"] != Value::Bool(true))
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec!["IMUser"]);
}

/// An original deployment through `import-teamtalk`: the report, then logins with the
/// original passwords and the history in the imported file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_teamtalk() {
    let Some(env) = Env::new().await else {
        return;
    };
    env.load_teamtalk(&fixtures()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("imported.db");
    let report = imctl(
        dir.path(),
        &[
            "--json",
            "migrate",
            "import-teamtalk",
            "--from",
            &env.url,
            "--redis",
            &env.redis_url,
            "--redis-prefix",
            &env.prefix,
            "--redis-dbs",
            "1,2,3,4,5",
            "--to",
            s(&dest),
        ],
    )
    .await
    .ok();
    assert_verified(&report);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("IMTransmitFile: not in the source"),
        "{warnings}"
    );
    let absent: Vec<_> = tables(&report)
        .iter()
        .filter(|t| t["absent_in_source"] == Value::Bool(true))
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(absent, vec!["IMUserArgon2", "IMTransmitFile"]);
    let unread = report["cache"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "unread")
        .unwrap()
        .clone();
    assert_eq!(unread["source"], 2);

    let config = SqliteConfig {
        path: dest,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config).await.unwrap();
    let c = store.credentials("zhangsan").await.unwrap().unwrap();
    assert!(verify_legacy(&md5_hex("123456"), &c.salt, &c.legacy_hash));
    let h = store
        .history(2, im_storage::SessionType::Single, 1, 0, 10)
        .await
        .unwrap();
    assert_eq!(h.len(), 4);
    assert_eq!(store.unread_totals(&[1]).await.unwrap(), vec![(1, 4)]);
    store.close().await;

    // Not an original deployment.
    let run = imctl(
        dir.path(),
        &[
            "migrate",
            "import-teamtalk",
            "--from",
            s(&dir.path().join("x.db")),
            "--redis",
            &env.redis_url,
            "--to",
            "y.db",
        ],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("mysql://"), "{}", run.stderr);
}
