//! Idle tasks expire; offline files past their retention are deleted with their records in
//! a real db_proxy_server (WEAKNESSES 49).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use db_proxy_server::{DbProxy, Listeners as DbListeners, Shared as DbShared};
use im_common::CancellationToken;
use im_proto::client::ImClient;
use im_proto::file::{ImFileAddOfflineReq, ImFileHasOfflineReq};
use im_storage::SqliteStore;
use im_storage::config::SqliteConfig;
use tokio::net::TcpListener;

use crate::harness::*;

#[tokio::test]
async fn idle_tasks_expire_and_close_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(Config {
        task_timeout_secs: 0.4,
        ..config(dir.path())
    })
    .await;
    let link = fs.link().await;

    // A sender waiting for a receiver that never comes.
    let online = fs.create(&link, 11, 22, ONLINE, 10).await;
    let mut sender = fs.login(11, &online, SENDER).await;
    // An offline task nobody uploads.
    let never = fs.create(&link, 11, 22, OFFLINE, 10).await;
    // An upload that stops after its first block.
    let data = bytes(2 * BLOCK, 7);
    let stalled = fs.create(&link, 11, 22, OFFLINE, data.len() as u32).await;
    let mut up = fs.login(11, &stalled, UPLOAD).await;
    up.next().await;
    up.send_block(0, &data[..BLOCK]).await;
    up.next().await;
    assert_eq!(files_under(&fs.data_dir).len(), 1, "the partial upload");

    sender.closed().await;
    up.closed().await;
    fs.refused(22, &online, RECEIVER).await;
    fs.refused(11, &never, UPLOAD).await;
    fs.refused(22, &stalled, DOWNLOAD).await;
    wait_until("the partial file to go", || async {
        files_under(&fs.data_dir).is_empty()
    })
    .await;
    assert_eq!(fs.metric("tasks_expired_total").await, 3.0);
    assert_eq!(fs.metric("transfers_active").await, 0.0);
    assert_eq!(fs.stats().await.table_size, Some(0));
    fs.stop().await;
}

struct RealDb {
    addr: String,
    shutdown: CancellationToken,
    _shared: Arc<DbShared<SqliteStore>>,
}

impl Drop for RealDb {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn real_db(dir: &std::path::Path) -> RealDb {
    let mut config = db_proxy_server::Config {
        listen: "127.0.0.1:0".into(),
        ..db_proxy_server::Config::default()
    };
    config.storage.sqlite = SqliteConfig {
        path: dir.join("teamtalk.db"),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config.storage.sqlite).await.unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let proxy = DbProxy::new(config, store).unwrap();
    let shared = proxy.shared().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.serve(
        DbListeners {
            main_tls: None,
            main,
            admin: None,
            metrics: None,
        },
        shutdown.clone(),
    ));
    RealDb {
        addr,
        shutdown,
        _shared: shared,
    }
}

/// Task ids of the offline files db_proxy lists for `user`.
async fn listed(db: &ImClient, user: u32) -> Vec<String> {
    let rsp = db
        .request(&ImFileHasOfflineReq {
            user_id: user,
            attach_data: None,
        })
        .await
        .unwrap();
    rsp.offline_file_list
        .into_iter()
        .map(|f| f.task_id)
        .collect()
}

fn write_original(data_dir: &std::path::Path, task: &str, from: u32, to: u32, created: u64) {
    let sub = data_dir.join(&task[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    let mut h = vec![0u8; 960];
    let mut put = |at: usize, s: &str| h[at..at + s.len()].copy_from_slice(s.as_bytes());
    put(0, task);
    put(128, &from.to_string());
    put(192, &to.to_string());
    put(256, &created.to_string());
    put(896, "3");
    let mut f = std::fs::File::create(sub.join(task)).unwrap();
    f.write_all(&h).unwrap();
    f.write_all(b"abc").unwrap();
}

#[tokio::test]
async fn offline_files_past_retention_go_with_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = real_db(dir.path()).await;
    let (dbc, _ev) = ImClient::connect(&db.addr, client_config()).await.unwrap();
    let cfg = Config {
        db_proxy: vec![db.addr.clone()],
        // Half a day: a file from yesterday goes, one from now stays.
        offline_retention_days: 0.5,
        sweep_interval_secs: 0.2,
        task_timeout_secs: 60.0,
        ..config(dir.path())
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = "01234567-89ab-4cde-8f01-23456789abcd";
    let fresh = "fedcba98-7654-4321-8fed-cba987654321";
    write_original(&cfg.data_dir, old, 41, 42, now - 86_400);
    write_original(&cfg.data_dir, fresh, 41, 42, now - 60);
    // Leftovers: an interrupted upload of long ago, a marker without its file.
    let sub = cfg.data_dir.join("ab");
    std::fs::create_dir_all(&sub).unwrap();
    let part = std::fs::File::create(sub.join("abcd-left.part")).unwrap();
    part.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(part);
    std::fs::File::create(sub.join("abcd-gone.done")).unwrap();
    for (task, name) in [(old, "old.txt"), (fresh, "fresh.txt")] {
        dbc.send(&ImFileAddOfflineReq {
            from_user_id: 41,
            to_user_id: 42,
            task_id: task.into(),
            file_name: name.into(),
            file_size: 3,
        })
        .await
        .unwrap();
    }
    wait_until("both records", || async {
        listed(&dbc, 42).await.len() == 2
    })
    .await;

    let fs = Fs::start(cfg).await;
    wait_until("the old record to go", || async {
        listed(&dbc, 42).await == vec![fresh.to_owned()]
    })
    .await;
    wait_until("the old file to go", || async {
        files_under(&fs.data_dir) == vec![fresh.to_owned()]
    })
    .await;
    assert_eq!(fs.metric("offline_files_deleted_total").await, 1.0);
    assert_eq!(fs.metric("offline_files").await, 1.0);
    // The fresh one is still served.
    let got = fs.login(42, fresh, DOWNLOAD).await.download(3, 41).await;
    assert_eq!(got, b"abc");
    fs.stop().await;
}

#[tokio::test]
async fn connections_that_never_log_in_are_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.login_timeout_secs = 0.3;
    let fs = Fs::start(config).await;
    // One says nothing, one sends only heartbeats: both are closed at the login deadline.
    let (silent, _ev) = ImClient::connect(&fs.client, client_config())
        .await
        .unwrap();
    let (beating, _ev2) = ImClient::connect(&fs.client, client_config())
        .await
        .unwrap();
    let beat = async {
        while !beating.is_closed() {
            let _ = beating.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(silent.closed(), beat);
    })
    .await
    .expect("connections that never log in are closed after login_timeout_secs");
    fs.stop().await;
}
