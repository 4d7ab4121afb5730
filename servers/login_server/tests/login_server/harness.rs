//! Starting a login_server on ephemeral ports, fake msg_servers and raw HTTP requests.

use std::time::{Duration, Instant};

use im_proto::client::{ClientConfig, Events, ImClient};
use im_proto::server::{ImMsgServInfo, ImUserCntUpdate};
use login_server::{Config, Listeners, LoginServer, MsgServerStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Admin token of every test server.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A running login_server.
pub struct TestServer {
    pub server: LoginServer,
    pub http: String,
    pub msg: String,
    pub legacy: String,
    pub admin: String,
    pub metrics: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn addr(l: &TcpListener) -> String {
    l.local_addr().unwrap().to_string()
}

/// Starts a server with the FLOWS.md 2 example's URLs, after `tweak` changes the config.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config {
        msfs: "http://10.0.0.7:8700/".into(),
        discovery: "http://10.0.0.9/api/discovery".into(),
        ..Config::default()
    };
    config.admin.listen = "127.0.0.1:0".into();
    config.admin.token = TOKEN.into();
    tweak(&mut config);
    let (http, msg, legacy, admin, metrics) = (
        bind().await,
        bind().await,
        bind().await,
        bind().await,
        bind().await,
    );
    let addrs = (
        addr(&http),
        addr(&msg),
        addr(&legacy),
        addr(&admin),
        addr(&metrics),
    );
    let server = LoginServer::new(config).unwrap();
    let shutdown = CancellationToken::new();
    let listeners = Listeners {
        msg_servers_tls: None,
        https: None,
        http,
        msg_servers: msg,
        legacy_client: Some(legacy),
        admin: Some(admin),
        metrics: Some(metrics),
    };
    let task = tokio::spawn(server.clone().serve(listeners, shutdown.clone()));
    TestServer {
        server,
        http: addrs.0,
        msg: addrs.1,
        legacy: addrs.2,
        admin: addrs.3,
        metrics: addrs.4,
        shutdown,
        task,
    }
}

/// Starts a server with the default test config.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    /// Shuts down and checks that `run` returned Ok.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
    }

    /// The registered msg_server with this port.
    pub fn status(&self, port: u32) -> Option<MsgServerStatus> {
        self.server
            .msg_servers()
            .into_iter()
            .find(|s| s.port == port)
    }

    /// `GET /msg_server`; the assigned port, or the JSON code of a refusal.
    pub async fn login(&self) -> Result<u32, i64> {
        login(&self.http).await
    }
}

/// Polls `f` every 10 ms until it holds, failing after 10 s.
pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `request` (in pieces, with pauses, when `pieces` > 1) and reads until the server
/// closes; what was read. A reset after a refused request counts as "nothing".
pub async fn http_pieces(addr: &str, request: &[u8], pieces: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let chunk = request.len().div_ceil(pieces.max(1)).max(1);
    for (i, part) in request.chunks(chunk).enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The server may close before everything is written (too large): fine.
        if s.write_all(part).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "server must close the connection");
    out
}

/// One raw request written at once.
pub async fn http(addr: &str, request: &[u8]) -> Vec<u8> {
    http_pieces(addr, request, 1).await
}

/// `GET /msg_server`; the assigned port, or the JSON code of a refusal.
pub async fn login(addr: &str) -> Result<u32, i64> {
    let raw = http(addr, b"GET /msg_server HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let text = String::from_utf8(raw).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    match v["code"].as_i64().unwrap() {
        0 => Ok(v["port"]
            .as_str()
            .expect("port is a string")
            .parse()
            .unwrap()),
        code => Err(code),
    }
}

/// A msg_server simulated with the protocol client.
pub struct FakeMsgServer {
    pub link: ImClient,
    _events: Events,
}

/// The registration a fake msg_server sends.
pub fn info(host: &str, ip: &str, port: u32, cur: u32, max: u32) -> ImMsgServInfo {
    ImMsgServInfo {
        ip1: ip.into(),
        ip2: ip.into(),
        port,
        max_conn_cnt: max,
        cur_conn_cnt: cur,
        host_name: host.into(),
    }
}

/// Connects to the msg_server port, registers, and waits until the server lists it.
pub async fn msg_server(
    ts: &TestServer,
    host: &str,
    port: u32,
    cur: u32,
    max: u32,
) -> FakeMsgServer {
    let config = ClientConfig {
        heartbeat_interval: Some(Duration::from_secs(5)),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let (link, events) = ImClient::connect(&ts.msg, config).await.unwrap();
    link.send(&info(host, "127.0.0.1", port, cur, max))
        .await
        .unwrap();
    wait_for("registration", || {
        ts.status(port)
            .is_some_and(|s| s.host_name == host && s.cur_conn_cnt == cur)
    })
    .await;
    FakeMsgServer {
        link,
        _events: events,
    }
}

impl FakeMsgServer {
    /// Sends `n` IMUserCntUpdate with `action` (1 login, 2 logout).
    pub async fn report(&self, action: u32, n: usize) {
        for i in 0..n {
            let update = ImUserCntUpdate {
                user_action: action,
                user_id: i as u32 + 1,
            };
            self.link.send(&update).await.unwrap();
        }
    }
}
