//! Tests of the group commit (and a CPU benchmark of the writer alone).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::types::{MsgType, NewContent, NewMessage, SessionType, StoreOutcome};

fn job<T: Send + 'static>(
    op: impl Fn(&Tx<'_>) -> StorageResult<T> + Send + 'static,
) -> (Box<dyn Job>, oneshot::Receiver<StorageResult<T>>) {
    let (reply, rx) = oneshot::channel();
    let job = Box::new(TypedJob {
        op,
        result: None,
        reply,
    });
    (job, rx)
}

fn add_dept(name: &'static str, fail_after: bool) -> impl Fn(&Tx<'_>) -> StorageResult<()> {
    move |tx| {
        tx.conn.execute(
            "INSERT INTO IMDepart (departName, parentId, created, updated) VALUES (?1, 0, 0, 0)",
            [name],
        )?;
        if fail_after {
            // A second statement fails after the first one wrote.
            tx.conn.execute("INSERT INTO NoSuchTable VALUES (1)", [])?;
        }
        Ok(())
    }
}

#[test]
fn a_failing_write_rolls_back_alone_and_replies_follow_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("w.db"),
        ..SqliteConfig::default()
    };
    let conn = schema::open_writer(&config).unwrap();
    let stats = Arc::new(WriterStats::default());
    let (j1, r1) = job(add_dept("one", false));
    let (j2, r2) = job(add_dept("two", true));
    let (j3, r3) = job(add_dept("three", false));
    let (j4, r4) = job(|_tx: &Tx<'_>| -> StorageResult<u32> { panic!("bug") });
    let mut batch = vec![j1, j2, j3, j4];
    commit_batch(&conn, &RefCell::default(), &mut batch, true, &stats, None);
    assert!(r1.blocking_recv().unwrap().is_ok());
    assert!(matches!(
        r2.blocking_recv().unwrap(),
        Err(StorageError::Database(_))
    ));
    assert!(r3.blocking_recv().unwrap().is_ok());
    assert!(matches!(
        r4.blocking_recv().unwrap(),
        Err(StorageError::Database(_))
    ));
    let names: Vec<String> = conn
        .prepare("SELECT departName FROM IMDepart ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, vec!["one", "three"]);
    assert!(conn.is_autocommit(), "the transaction is closed");
    assert_eq!(stats.batches.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed_batches.load(Ordering::Relaxed), 0);
    assert_eq!(stats.finished.load(Ordering::Relaxed), 4);
}

#[test]
fn a_rolled_back_write_leaves_nothing_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("w.db"),
        ..SqliteConfig::default()
    };
    let conn = schema::open_writer(&config).unwrap();
    let stats = Arc::new(WriterStats::default());
    let memo = RefCell::new(Memo::default());
    let msg = NewMessage {
        from_id: 1,
        to_id: 2,
        msg_type: MsgType::SingleText,
        content: NewContent::Text(b"x".to_vec()),
        created: 1,
        request_id: None,
    };
    let first = msg.clone();
    // Stores (creating the pair's relation), then fails: rolled back entirely.
    let (j1, r1) = job(move |tx: &Tx<'_>| -> StorageResult<()> {
        super::super::messages::store(tx, &first)?;
        Err(StorageError::Database("late failure".into()))
    });
    let (j2, r2) = job(move |tx: &Tx<'_>| super::super::messages::store(tx, &msg));
    let mut batch = vec![j1, j2];
    commit_batch(&conn, &memo, &mut batch, false, &stats, None);
    assert!(r1.blocking_recv().unwrap().is_err());
    assert_eq!(
        r2.blocking_recv().unwrap().unwrap(),
        StoreOutcome::Stored(1)
    );
    let relations: u32 = conn
        .query_row("SELECT COUNT(*) FROM IMRelationShip", [], |r| r.get(0))
        .unwrap();
    assert_eq!(relations, 1);
    let h = super::super::messages::history(&conn, 1, SessionType::Single, 2, 0, 10).unwrap();
    assert_eq!(h.len(), 1, "the message points at the relation that exists");
    assert_eq!(memo.borrow().relations.len(), 1);
}

#[test]
fn a_failed_commit_fails_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("w.db"),
        ..SqliteConfig::default()
    };
    let conn = schema::open_writer(&config).unwrap();
    let stats = Arc::new(WriterStats::default());
    let (j1, r1) = job(add_dept("one", false));
    // Ends the batch transaction behind the writer's back: its COMMIT then fails.
    let (j2, r2) = job(|tx: &Tx<'_>| -> StorageResult<()> {
        tx.conn.execute_batch("COMMIT")?;
        Ok(())
    });
    let mut batch = vec![j1, j2];
    commit_batch(&conn, &RefCell::default(), &mut batch, false, &stats, None);
    assert!(r1.blocking_recv().unwrap().is_err());
    assert!(r2.blocking_recv().unwrap().is_err());
    assert_eq!(stats.failed_batches.load(Ordering::Relaxed), 1);
}

/// Writer CPU per stored message, without the async side and without fsync:
/// `cargo test --release -p im-storage --lib writer_cpu -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run explicitly"]
fn writer_cpu() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let config = SqliteConfig {
        path: dir.path().join("w.db"),
        synchronous: crate::config::SqliteSync::Normal,
        ..SqliteConfig::default()
    };
    let conn = schema::open_writer(&config).unwrap();
    let stats = Arc::new(WriterStats::default());
    let body = vec![b'x'; 100];
    let mut n = 0u32;
    let memo = RefCell::new(Memo::default());
    let started = Instant::now();
    for _ in 0..100 {
        let mut batch: Vec<Box<dyn Job>> = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..1000 {
            n += 1;
            let msg = NewMessage {
                from_id: 1 + n % 500,
                to_id: 1000 + n % 2,
                msg_type: MsgType::SingleText,
                content: NewContent::Text(body.clone()),
                created: 1,
                request_id: None,
            };
            let (reply, rx) = oneshot::channel();
            batch.push(Box::new(TypedJob {
                op: move |tx: &Tx<'_>| super::super::messages::store(tx, &msg),
                result: None,
                reply,
            }));
            rxs.push(rx);
        }
        commit_batch(&conn, &memo, &mut batch, false, &stats, None);
        for rx in rxs {
            assert!(rx.blocking_recv().unwrap().is_ok());
        }
    }
    let per = started.elapsed() / n;
    let wal = std::fs::metadata(dir.path().join("w.db-wal")).map_or(0, |m| m.len());
    println!(
        "writer: {n} messages, {per:?} per message = {:.0}/s, WAL {} KiB per 1000-message batch",
        1.0 / per.as_secs_f64(),
        wal / 1024 / 100
    );
}
