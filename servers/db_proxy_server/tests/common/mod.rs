//! Test kit: a db_proxy_server on 127.0.0.1:0 over a SQLite store in a temp dir, a client
//! playing msg_server, and the real msfs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod msfs;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use db_proxy_server::{Config, DbProxy, Listeners, Shared};
use im_common::CancellationToken;
use im_proto::attach::{AttachRecord, RequestTag};
use im_proto::client::{ClientConfig, Events, ImClient};
use im_proto::{Command, Pdu};
use im_storage::config::SqliteConfig;
use im_storage::{NewUser, SqliteStore, Store, UserId};
use tokio::net::TcpListener;

/// Generous bound for one answer.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server.
pub struct TestServer {
    pub addr: String,
    pub admin_addr: Option<String>,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub shared: Arc<Shared<SqliteStore>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// The store under the server (for set-up and checks).
    pub fn store(&self) -> &SqliteStore {
        &self.shared.store
    }

    /// Creates an active user with a password; returns its id.
    pub async fn user(&self, name: &str, password: &str) -> UserId {
        self.store()
            .add_user(NewUser {
                name: name.to_owned(),
                password: password.to_owned(),
                nick: format!("nick-{name}"),
                ..NewUser::default()
            })
            .await
            .expect("add user")
    }

    /// A client link, as a msg_server opens it.
    pub async fn link(&self) -> (ImClient, Events) {
        ImClient::connect(
            &self.addr,
            ClientConfig {
                heartbeat_interval: Some(Duration::from_secs(5)),
                request_timeout: WAIT,
                event_buffer: 8192,
                ..ClientConfig::default()
            },
        )
        .await
        .expect("connect")
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("server stops")
            .expect("server task")
    }
}

/// Starts a server; `tune` adjusts the config (msfs URL, throttle...).
pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        group_session_sync_secs: 1,
        ..Config::default()
    };
    config.storage.sqlite = SqliteConfig {
        path: dir.path().join("teamtalk.db"),
        ..SqliteConfig::default()
    };
    tune(&mut config);
    let store = SqliteStore::open(&config.storage.sqlite).await.unwrap();
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let admin = if config.admin.listen.is_empty() {
        None
    } else {
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
    };
    let admin_addr = admin.as_ref().map(|l| l.local_addr().unwrap().to_string());
    let proxy = DbProxy::new(config, store).unwrap();
    let shared = proxy.shared().clone();
    let shutdown = CancellationToken::new();
    let listeners = Listeners {
        main_tls: None,
        main,
        admin,
        metrics: None,
    };
    let done = tokio::spawn(proxy.serve(listeners, shutdown.clone()));
    TestServer {
        addr,
        admin_addr,
        shutdown,
        done,
        shared,
        dir,
    }
}

/// Starts a server with the defaults.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// An original msg_server's attach: the 12-byte handle record.
pub fn handle_attach(handle: u32) -> Bytes {
    AttachRecord::handle(handle).encode()
}

/// Our msg_server's attach: the request tag.
pub fn tag_attach(origin: u64, seq: u64) -> Bytes {
    RequestTag { origin, seq }.encode()
}

/// Sends `msg` and waits for the reply of type `R` with the same seq.
pub async fn ask<M: Command, R: Command>(link: &ImClient, msg: &M) -> R {
    let pdu = link
        .request_pdu(Pdu::from_msg(msg, 0), R::COMMAND_ID, WAIT)
        .await
        .unwrap_or_else(|e| panic!("no {} answer to {}: {e}", R::NAME, M::NAME));
    pdu.decode::<R>()
        .expect("reply decodes (required fields present)")
}

/// Sends `msg` with `seq` and expects no reply within `wait`.
pub async fn expect_silence<M: Command>(
    link: &ImClient,
    events: &mut Events,
    msg: &M,
    wait: Duration,
) {
    link.send_pdu(&Pdu::from_msg(msg, 4242)).await.unwrap();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(pdu)) = tokio::time::timeout_at(deadline, events.recv()).await {
        assert_ne!(
            pdu.seq_num(),
            4242,
            "unexpected answer {} to {}",
            pdu.command_name(),
            M::NAME
        );
    }
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
