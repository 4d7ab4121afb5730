//! Crash safety of the SQLite backend with a real process: "acked means stored".
//!
//! The test re-executes its own binary in child mode (the ignored `crash_child` test, selected
//! by an environment variable): the child stores messages as fast as it can from many tasks
//! and prints every acknowledged message. The parent kills it with SIGKILL mid-stream,
//! reopens the database and checks that every acknowledged message is there with its
//! content, that ids per conversation are gap-free and unique, that the unread counters
//! match the messages (same transaction), and that new ids continue above every stored one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use im_storage::config::SqliteConfig;
use im_storage::{
    MessageContent, MsgType, NewContent, NewMessage, SessionType, SqliteStore, Store, StoreOutcome,
};

/// Set by the parent: the directory of the child's database.
const CHILD_DIR: &str = "IM_STORAGE_CRASH_CHILD_DIR";
/// Acknowledgements to see before the kill.
const KILL_AFTER: usize = 2_000;
/// User pairs written to; user `2p+1` talks only with `2p+2`.
const PAIRS: u32 = 16;
const SUBMITTERS: u32 = 64;

fn config(dir: &Path) -> SqliteConfig {
    SqliteConfig {
        path: dir.join("crash.db"),
        ..SqliteConfig::default()
    }
}

fn message(from: u32, to: u32, body: String) -> NewMessage {
    NewMessage {
        from_id: from,
        to_id: to,
        msg_type: MsgType::SingleText,
        content: NewContent::Text(body.into_bytes()),
        created: 1_700_000_000,
        request_id: None,
    }
}

/// Child mode: store forever, printing `ACK <from> <to> <msg_id> <body>` after each `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acked_messages_survive_sigkill"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        eprintln!("crash_child runs only under acked_messages_survive_sigkill");
        return;
    };
    let store = Arc::new(SqliteStore::open(&config(Path::new(&dir))).await.unwrap());
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for k in 0u64.. {
                    let pair = (t + k as u32) % PAIRS;
                    let (a, b) = (2 * pair + 1, 2 * pair + 2);
                    let (from, to) = if k % 3 == 0 { (b, a) } else { (a, b) };
                    let body = format!("{from}>{to}#{t}-{k}");
                    match store.store_message(message(from, to, body.clone())).await {
                        // println! holds the stdout lock for the whole line.
                        Ok(StoreOutcome::Stored(id)) => println!("ACK {from} {to} {id} {body}"),
                        other => panic!("store failed: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[derive(Debug)]
struct Ack {
    from: u32,
    to: u32,
    id: u32,
    body: String,
}

fn parse(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.splitn(4, ' ');
    Some(Ack {
        from: it.next()?.parse().ok()?,
        to: it.next()?.parse().ok()?,
        id: it.next()?.parse().ok()?,
        body: it.next()?.to_owned(),
    })
}

/// Runs the child, kills it after [`KILL_AFTER`] acks, returns the acks it printed.
fn run_and_kill(dir: &Path) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < KILL_AFTER {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => acks.extend(parse(&line)),
            Err(e) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                panic!(
                    "child stopped after {} acks ({e}); stderr:\n{err}",
                    acks.len()
                );
            }
        }
    }
    // SIGKILL: no destructor, no shutdown, writes in flight are cut off.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not exited: {status}");
    // Lines already written to the pipe are acknowledged too.
    reader.join().unwrap();
    acks.extend(rx.try_iter().filter_map(|l| parse(&l)));
    acks
}

#[test]
fn acked_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acks = run_and_kill(dir.path());
    assert!(acks.len() >= KILL_AFTER);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(verify(dir.path(), &acks));
}

async fn verify(dir: &Path, acks: &[Ack]) {
    let store = SqliteStore::open(&config(dir)).await.unwrap();
    let mut by_pair: BTreeMap<(u32, u32), Vec<&Ack>> = BTreeMap::new();
    for ack in acks {
        by_pair
            .entry((ack.from.min(ack.to), ack.from.max(ack.to)))
            .or_default()
            .push(ack);
    }
    let mut total_stored = 0;
    for (&(a, b), pair_acks) in &by_pair {
        let history = store
            .history(a, SessionType::Single, b, 0, 1_000_000)
            .await
            .unwrap();
        total_stored += history.len();
        let stored: HashMap<u32, (u32, Vec<u8>)> = history
            .iter()
            .map(|m| match &m.content {
                MessageContent::Text(t) => (m.msg_id, (m.from_id, t.clone())),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // Ids are unique and gap-free: 1..=n, whether or not the child printed the ack.
        assert_eq!(stored.len(), history.len(), "pair ({a},{b}): duplicate ids");
        let n = history.len() as u32;
        assert!(
            (1..=n).all(|id| stored.contains_key(&id)),
            "pair ({a},{b}): gap in 1..={n}"
        );
        for ack in pair_acks {
            let (from, body) = stored
                .get(&ack.id)
                .unwrap_or_else(|| panic!("acked message lost: {ack:?}"));
            assert_eq!(
                (*from, body.as_slice()),
                (ack.from, ack.body.as_bytes()),
                "{ack:?}"
            );
        }
        // Unread counters moved in the same transactions as the rows.
        for (reader, peer) in [(a, b), (b, a)] {
            let sent = history.iter().filter(|m| m.from_id == peer).count() as u32;
            let unread = store.unread(reader).await.unwrap();
            let count = unread
                .iter()
                .find(|u| u.peer_id == peer)
                .map_or(0, |u| u.count);
            assert_eq!(count, sent, "unread of {reader} from {peer}");
        }
        // New ids continue above everything stored, never repeating an acked one.
        let max_acked = pair_acks.iter().map(|a| a.id).max().unwrap();
        let next = match store
            .store_message(message(a, b, "after".into()))
            .await
            .unwrap()
        {
            StoreOutcome::Stored(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(next, n + 1, "pair ({a},{b})");
        assert!(next > max_acked);
    }
    println!(
        "{} acks before SIGKILL, {} messages stored (acked or not), all acked ones present",
        acks.len(),
        total_stored
    );
    assert!(total_stored >= acks.len());
}
