//! msg_servers on 127.0.0.1 port 0, wired by hand to a fake db_proxy, real route_servers and
//! login_servers, and a scripted push_server; TeamTalk clients built on `ImClient`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq, LinkState, ServerStats};
use im_proto::base::{ClientType, MsgType};
use im_proto::client::{ClientConfig, ClientError, Events, ImClient, LoginParams};
use im_proto::crypto::MessageCipher;
use im_proto::login::ImLoginRes;
use im_proto::message::{ImMsgData, ImMsgDataAck};
use im_proto::server::ImPushToUserReq;
use im_proto::{Command, Pdu, cid};
use msg_server::{Config, Listeners, run};
use tokio::net::TcpListener;

use crate::fake_db::PASSWORD;

/// Admin token of test servers.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(700);

/// A config for tests: short timers, the given peers, no login_server unless given.
pub fn config(db: &str, routes: &[&str]) -> Config {
    Config {
        name: "ms-test".to_owned(),
        listen: "127.0.0.1:0".to_owned(),
        db_proxy: vec![db.to_owned()],
        db_connections_per_server: 2,
        route_servers: routes.iter().map(|s| (*s).to_owned()).collect(),
        login_servers: Vec::new(),
        push_servers: Vec::new(),
        request_timeout_ms: 2_000,
        push_locate_timeout_ms: 500,
        ..Config::default()
    }
}

/// A running msg_server.
pub struct Ms {
    /// Client port.
    pub addr: String,
    /// Admin port.
    pub admin: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Ms {
    /// Starts a msg_server with `config` (listen addresses are replaced by port 0).
    pub async fn start(mut config: Config) -> Ms {
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = client.local_addr().unwrap().to_string();
        let admin_addr = admin.local_addr().unwrap().to_string();
        config.admin.listen = admin_addr.clone();
        config.admin.token = TOKEN.to_owned();
        let listeners = Listeners {
            tls: None,
            client,
            admin: Some(admin),
            metrics: None,
        };
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(run(config, listeners, shutdown.clone()));
        Ms {
            addr,
            admin: admin_addr,
            shutdown,
            done: Some(done),
        }
    }

    /// An authenticated admin client.
    pub async fn admin(&self) -> ImClient {
        let (c, _ev) = ImClient::connect(&self.admin, client_config())
            .await
            .unwrap();
        let rsp = c
            .request(&ImAdminAuthReq {
                token: Some(TOKEN.to_owned()),
                client_name: Some("msg_server tests".to_owned()),
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(rsp.server_kind.as_deref(), Some("msg_server"));
        c
    }

    /// Admin stats.
    pub async fn stats(&self) -> ServerStats {
        let a = self.admin().await;
        a.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap()
    }

    /// Value of a named metric in the admin snapshot.
    pub async fn metric(&self, name: &str) -> f64 {
        let full = format!("im_msg_server_{name}");
        self.stats()
            .await
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(&full))
            .and_then(|m| m.value)
            .unwrap_or(-1.0)
    }

    /// Waits until `n` links of `kind` are connected (registered).
    pub async fn wait_links(&self, kind: &str, n: usize) {
        let start = Instant::now();
        loop {
            let up = self
                .stats()
                .await
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

    /// Stops the server and checks that `run` returned Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Ms {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Client settings: no automatic heartbeat (tests send their own).
pub fn client_config() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: None,
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

/// A logged-in TeamTalk client.
pub struct Client {
    /// The connection.
    pub c: ImClient,
    /// Unsolicited PDUs.
    pub ev: Events,
    /// Its user id.
    pub id: u32,
    /// The login answer.
    pub res: ImLoginRes,
}

/// Connects without logging in.
pub async fn connect(addr: &str) -> (ImClient, Events) {
    ImClient::connect(addr, client_config()).await.unwrap()
}

/// Logs `name` in with `ct`, retrying while the msg_server has no db_proxy link yet.
pub async fn login(addr: &str, name: &str, ct: ClientType) -> Client {
    let start = Instant::now();
    loop {
        let (c, ev) = connect(addr).await;
        match c
            .login(&LoginParams::new(name, PASSWORD).with_client_type(ct))
            .await
        {
            Ok(res) => {
                let id = res.user_info.as_ref().map_or(0, |u| u.user_id);
                return Client { c, ev, id, res };
            }
            Err(ClientError::LoginRefused { code: 3, .. }) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("login of {name} failed: {e}"),
        }
    }
}

/// An encrypted text body, as a stock client sends it.
pub fn text(plain: &str) -> bytes::Bytes {
    bytes::Bytes::from(MessageCipher::default_key().encrypt(plain.as_bytes()))
}

/// An IMMsgData from `from` to `to` (a user, or a group for group types).
pub fn msg(from: u32, to: u32, t: MsgType, plain: &str) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: t as i32,
        msg_data: text(plain),
        attach_data: None,
    }
}

impl Client {
    /// Sends a message and waits for its stored ack.
    pub async fn send(&self, m: &ImMsgData) -> ImMsgDataAck {
        self.c.request(m).await.unwrap()
    }

    /// Sends a message and expects no ack within [`QUIET`].
    pub async fn send_unacked(&self, m: &ImMsgData) {
        match self.c.request_timeout(m, QUIET).await {
            Err(ClientError::Timeout { .. }) => {}
            other => panic!("expected no ack, got {other:?}"),
        }
    }

    /// The next unsolicited PDU carrying `M`, skipping others.
    pub async fn next<M: Command>(&mut self) -> M {
        self.ev.next_of::<M>(WAIT).await.unwrap()
    }

    /// The next unsolicited PDU of command `M`, as a PDU (header checks).
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
}

/// Checks a delivered IMMsgData frame: seq 0, no attach_data.
pub fn check_delivery(p: &Pdu) -> ImMsgData {
    assert_eq!(p.command_id(), cid::CID_MSG_DATA);
    assert_eq!(p.seq_num(), 0, "deliveries carry seq 0");
    let m = p.decode::<ImMsgData>().unwrap();
    assert_eq!(m.attach_data, None, "no attach_data toward clients");
    m
}

/// A scripted push_server recording what it gets.
pub struct FakePush {
    /// Its address.
    pub addr: String,
    /// Push requests received.
    pub got: Arc<Mutex<Vec<ImPushToUserReq>>>,
    shutdown: CancellationToken,
}

impl Drop for FakePush {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct PushConn {
    got: Arc<Mutex<Vec<ImPushToUserReq>>>,
}

impl Handler for PushConn {
    async fn on_pdu(&mut self, _conn: &Conn, pdu: Pdu) {
        if let Ok(req) = pdu.decode::<ImPushToUserReq>() {
            self.got.lock().unwrap().push(req);
        }
    }
}

impl FakePush {
    /// Starts it.
    pub async fn start() -> FakePush {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let g = got.clone();
        let mut opts = ServeOptions::server("fake_push");
        opts.echo_heartbeat = true;
        tokio::spawn(serve(
            listener,
            opts,
            ConnRegistry::new(),
            shutdown.clone(),
            move |_| PushConn { got: g.clone() },
        ));
        FakePush {
            addr,
            got,
            shutdown,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ImPushToUserReq> {
        self.got.lock().unwrap().clone()
    }
}

/// A real route_server on port 0 (or on a given listener, to restart it on the same port).
pub struct Route {
    /// Its msg_server port.
    pub addr: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Route {
    /// Starts one.
    pub async fn start() -> Route {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    /// Starts one on `listener`.
    pub async fn start_on(listener: TcpListener) -> Route {
        let addr = listener.local_addr().unwrap().to_string();
        let config = route_server::Config {
            offline_grace_secs: 1.0,
            ..route_server::Config::default()
        };
        let listeners = route_server::Listeners {
            msg_servers_tls: None,
            msg_servers: listener,
            admin: None,
            metrics: None,
        };
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(route_server::run(config, listeners, shutdown.clone()));
        Route {
            addr,
            shutdown,
            done: Some(done),
        }
    }

    /// Stops it and waits until its port is free.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), d).await;
        }
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `f` until it is true (fails the test after [`WAIT`]).
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `to` receives a P2P command sent by `from` (through route_server when they are
/// on different msg_servers): from then on route_server knows where `to` is.
pub async fn probe(from: &Client, to: &mut Client) {
    use im_proto::switch_service::Imp2pCmdMsg;
    let start = Instant::now();
    for n in 0u32.. {
        let tag = format!("probe-{n}");
        from.c
            .send(&Imp2pCmdMsg {
                from_user_id: from.id,
                to_user_id: to.id,
                cmd_msg_data: tag.clone(),
            })
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match to.ev.recv_timeout(left).await {
                Ok(Some(p)) if p.command_id() == cid::CID_SWITCH_P2P_CMD => {
                    if p.decode::<Imp2pCmdMsg>()
                        .is_ok_and(|m| m.cmd_msg_data == tag)
                    {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "route_server never learned where user {} is",
            to.id
        );
    }
}

/// Waits until route_server reports `user` online (a PC client somewhere), asked by `asker`.
pub async fn wait_pc_online(asker: &Client, user: u32) {
    use im_proto::buddy::ImUsersStatReq;
    wait_until("PC presence", || async {
        let rsp = asker
            .c
            .request(&ImUsersStatReq {
                user_id: 0,
                user_id_list: vec![user],
                attach_data: None,
            })
            .await;
        rsp.is_ok_and(|r| r.user_stat_list.first().is_some_and(|s| s.status == 1))
    })
    .await;
}
