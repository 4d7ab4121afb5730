//! The suite minus login_server on 127.0.0.1 port 0: db_proxy_server over SQLite in a temp dir
//! (users alice 1, bob 2, carol 3, dave 4), a route_server, a msg_server, and the
//! http_msg_server under test; a raw HTTP/1.1 client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use db_proxy_server::{DbProxy, Listeners as DbListeners, Shared};
use http_msg_server::{Config, Listeners, run};
use im_common::CancellationToken;
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq, LinkState};
use im_proto::base::ClientType;
use im_proto::buddy::ImUsersStatReq;
use im_proto::client::{ClientConfig, ClientError, Events, ImClient, LoginParams};
use im_proto::{Command, Pdu};
use im_storage::config::SqliteConfig;
use im_storage::{NewUser, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(15);

/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(700);

/// The API token of test servers.
pub const API_TOKEN: &str = "http-api-token-0123456789";

/// Admin token of test servers.
pub const ADMIN_TOKEN: &str = "http-admin-token-0123456789";

/// The password of every seeded user.
pub const PW: &str = "secret-pw";

/// A running http_msg_server.
pub struct Hm {
    /// HTTP address.
    pub addr: String,
    /// Admin address.
    pub admin: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Hm {
    /// Starts one linked to `db` and `routes`.
    pub async fn start(db: &str, routes: &[&str]) -> Hm {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap().to_string();
        let admin_addr = admin.local_addr().unwrap().to_string();
        let mut config = Config {
            listen: addr.clone(),
            api_token: API_TOKEN.to_owned(),
            db_proxy: vec![db.to_owned()],
            route_servers: routes.iter().map(|r| (*r).to_owned()).collect(),
            request_timeout_ms: 3_000,
            ..Config::default()
        };
        config.admin.listen = admin_addr.clone();
        config.admin.token = ADMIN_TOKEN.to_owned();
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(run(
            config,
            Listeners {
                https: None,
                http,
                admin: Some(admin),
                metrics: None,
            },
            shutdown.clone(),
        ));
        Hm {
            addr,
            admin: admin_addr,
            shutdown,
            done: Some(done),
        }
    }

    /// Waits until `n` links of `kind` are connected.
    pub async fn wait_links(&self, kind: &str, n: usize) {
        let (c, _ev) = ImClient::connect(&self.admin, ClientConfig::default())
            .await
            .unwrap();
        let auth = c
            .request(&ImAdminAuthReq {
                token: Some(ADMIN_TOKEN.to_owned()),
                client_name: Some("http_msg_server tests".to_owned()),
            })
            .await
            .unwrap();
        assert_eq!(auth.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(auth.server_kind.as_deref(), Some("http_msg_server"));
        let start = Instant::now();
        loop {
            let stats = c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap();
            let up = stats
                .upstreams
                .iter()
                .filter(|l| {
                    l.kind.as_deref() == Some(kind) && l.state == Some(LinkState::Connected as i32)
                })
                .count();
            if up >= n {
                return;
            }
            assert!(start.elapsed() < WAIT, "{kind}: {up} of {n} links up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it and checks that `run` returned Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(WAIT, done)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Hm {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// db_proxy_server, route_server and msg_server, running.
pub struct Suite {
    /// db_proxy's address.
    pub db: String,
    /// route_server's address.
    pub route: String,
    /// msg_server's client address.
    pub ms: String,
    /// The store, for seeding.
    pub shared: Arc<Shared<SqliteStore>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Suite {
    /// Starts the three servers; `seed` runs on the store before they start.
    pub async fn start() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let mut config = db_proxy_server::Config {
            listen: "127.0.0.1:0".into(),
            ..db_proxy_server::Config::default()
        };
        config.storage.sqlite = SqliteConfig {
            path: dir.path().join("teamtalk.db"),
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open(&config.storage.sqlite).await.unwrap();
        for name in ["alice", "bob", "carol", "dave"] {
            store
                .add_user(NewUser {
                    name: name.to_owned(),
                    password: PW.to_owned(),
                    nick: format!("nick-{name}"),
                    ..NewUser::default()
                })
                .await
                .unwrap();
        }
        let shutdown = CancellationToken::new();
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let db = main.local_addr().unwrap().to_string();
        let proxy = DbProxy::new(config, store).unwrap();
        let shared = proxy.shared().clone();
        tokio::spawn(proxy.serve(
            DbListeners {
                main_tls: None,
                main,
                admin: None,
                metrics: None,
            },
            shutdown.clone(),
        ));

        let rl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let route = rl.local_addr().unwrap().to_string();
        tokio::spawn(route_server::run(
            route_server::Config::default(),
            route_server::Listeners {
                msg_servers_tls: None,
                msg_servers: rl,
                admin: None,
                metrics: None,
            },
            shutdown.clone(),
        ));

        let cl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ms = cl.local_addr().unwrap().to_string();
        let ms_config = msg_server::Config {
            name: "ms-test".to_owned(),
            listen: ms.clone(),
            db_proxy: vec![db.clone()],
            db_connections_per_server: 2,
            route_servers: vec![route.clone()],
            login_servers: Vec::new(),
            push_servers: Vec::new(),
            request_timeout_ms: 3_000,
            ..msg_server::Config::default()
        };
        tokio::spawn(msg_server::run(
            ms_config,
            msg_server::Listeners {
                tls: None,
                client: cl,
                admin: None,
                metrics: None,
            },
            shutdown.clone(),
        ));
        Suite {
            db,
            route,
            ms,
            shared,
            shutdown,
            _dir: dir,
        }
    }

    /// The store behind db_proxy.
    pub fn store(&self) -> &SqliteStore {
        &self.shared.store
    }
}

/// A logged-in stock client.
pub struct Client {
    /// The connection.
    pub c: ImClient,
    /// Unsolicited PDUs.
    pub ev: Events,
    /// Its user id.
    pub id: u32,
}

impl Client {
    /// Logs `name` in (Windows client), retrying while msg_server has no db_proxy link yet.
    pub async fn login(addr: &str, name: &str) -> Client {
        let start = Instant::now();
        loop {
            let config = ClientConfig {
                heartbeat_interval: None,
                request_timeout: WAIT,
                ..ClientConfig::default()
            };
            let (c, ev) = ImClient::connect(addr, config).await.unwrap();
            match c
                .login(&LoginParams::new(name, PW).with_client_type(ClientType::Windows))
                .await
            {
                Ok(res) => {
                    let id = res.user_info.as_ref().map_or(0, |u| u.user_id);
                    return Client { c, ev, id };
                }
                Err(ClientError::LoginRefused { code: 3, .. }) if start.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("login of {name}: {e}"),
            }
        }
    }

    /// The next unsolicited PDU carrying `M`, skipping others.
    pub async fn next<M: Command>(&mut self) -> M {
        self.ev.next_of::<M>(WAIT).await.unwrap()
    }

    /// The next unsolicited PDU of `command`.
    pub async fn next_pdu(&mut self, command: u16) -> Pdu {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ev.recv_timeout(left).await {
                Ok(Some(p)) if p.command_id() == command => return p,
                Ok(Some(_)) => {}
                other => panic!("user {} expected {command:#06x}, got {other:?}", self.id),
            }
        }
    }

    /// Asserts that no PDU of `command` arrives within [`QUIET`].
    pub async fn nothing_of(&mut self, command: u16) {
        let deadline = Instant::now() + QUIET;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ev.recv_timeout(left).await {
                Ok(Some(p)) if p.command_id() == command => {
                    panic!("user {} got an unexpected {}", self.id, p.command_name())
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Waits until route_server reports `user` online (a PC client), asked through our
    /// msg_server: from then on route_server can route to that user.
    pub async fn wait_online(&self, user: u32) {
        let start = Instant::now();
        loop {
            let rsp = self
                .c
                .request(&ImUsersStatReq {
                    user_id: 0,
                    user_id_list: vec![user],
                    attach_data: None,
                })
                .await
                .unwrap();
            if rsp.user_stat_list.first().is_some_and(|s| s.status == 1) {
                return;
            }
            assert!(start.elapsed() < WAIT, "user {user} never showed online");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An answer as received.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends a request (head lines without the final blank line, then `body`) and reads the
/// answer until the server closes (every answer here closes the connection).
pub async fn request(addr: &str, head: &str, body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("the server closes after its answer")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// POSTs `json` to `path` with the API token.
pub async fn query(addr: &str, path: &str, json: &serde_json::Value) -> Answer {
    request(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}"),
        &json.to_string(),
    )
    .await
}
