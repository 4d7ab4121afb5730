//! Security behaviour of a whole suite (db_proxy on SQLite, route_server, login_server, two
//! msg_servers) on loopback: nothing secret reaches the logs even at trace level, admin ports
//! refuse a wrong token and log the attempt with the peer address, and failed logins of one
//! name are throttled whatever address they come from.
//!
//! This binary installs a global tracing subscriber at TRACE that writes into a buffer, so
//! that every line any server logs during these tests can be searched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use im_cluster::{Cluster, ClusterOptions, ServerId};
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminUserAddReq, NewUserSpec};
use im_proto::base::{ClientType, MsgType};
use im_proto::client::{ClientConfig, ClientError, Events, ImClient, LoginParams};
use im_proto::crypto::{MessageCipher, password_digest};
use im_proto::message::ImMsgData;

const WAIT: Duration = Duration::from_secs(10);

/// Every log line of this process.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || LogWriter(buf.clone())
        };
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(writer)
            .try_init()
            .expect("the only subscriber of this test binary");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn seed() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/seed/demo.toml"
    ))
}

fn client_config() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: None,
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

/// Connects to `addr` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> (ImClient, Events) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    ImClient::from_stream(stream, client_config())
}

async fn login(
    addr: SocketAddr,
    name: &str,
    pw: &str,
) -> Result<(ImClient, Events, u32), ClientError> {
    let (c, ev) = ImClient::connect(&addr.to_string(), client_config())
        .await
        .unwrap();
    let res = c
        .login(&LoginParams::new(name, pw).with_client_type(ClientType::Windows))
        .await?;
    Ok((c, ev, res.user_info.map_or(0, |u| u.user_id)))
}

async fn admin(addr: &str, token: &str) -> (ImClient, Option<i32>) {
    let (c, _ev) = ImClient::connect(addr, client_config()).await.unwrap();
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some(token.to_owned()),
            client_name: Some("security test".to_owned()),
        })
        .await
        .unwrap();
    (c, rsp.result_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_password_digest_body_or_token_and_admin_refusals_name_the_peer() {
    let logs = logs();
    const TOKEN: &str = "adm-Tq8v3ZkR1wXn0pLd";
    const WRONG_TOKEN: &str = "adm-guess-Hb7mYc2sVe";
    const PASSWORD: &str = "pw-Xr5tGk9QmZ";
    const WRONG_PASSWORD: &str = "pw-wrong-Jd4nWq8Lp";
    const BODY: &str = "body-Vz2cM7hKs4Fq the secret text";
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(seed());
    opts.extras = false;
    opts.admin_token = Some(TOKEN.to_owned());
    let cluster = Cluster::start(opts).await.expect("cluster starts");
    cluster.wait_ready(WAIT).await.unwrap();

    // A user with a password known only to this test, made through db_proxy's admin port.
    let db_admin = cluster
        .endpoint(ServerId::DbProxy)
        .unwrap()
        .admin
        .to_string();
    let (a, code) = admin(&db_admin, TOKEN).await;
    assert_eq!(code, Some(AdminResult::AdminOk as i32));
    let added = a
        .request(&ImAdminUserAddReq {
            users: vec![NewUserSpec {
                name: Some("secops".to_owned()),
                password: Some(PASSWORD.to_owned()),
                nick: Some("secops".to_owned()),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    assert_eq!(
        added.result_code,
        Some(AdminResult::AdminOk as i32),
        "{added:?}"
    );

    let ms0 = cluster.msg_server_addr(0).unwrap();
    let ms1 = cluster.msg_server_addr(1).unwrap();
    match login(ms0, "secops", WRONG_PASSWORD).await {
        Err(ClientError::LoginRefused { code: 6, .. }) => {}
        other => panic!(
            "a wrong password must be refused, got {:?}",
            other.map(|r| r.2)
        ),
    }
    let (sender, _sev, from) = login(ms0, "secops", PASSWORD).await.unwrap();
    let (_receiver, mut rev, to) = login(ms1, "zhangsan", "123456").await.unwrap();
    let encrypted = MessageCipher::default_key().encrypt(BODY.as_bytes());
    let ack = sender
        .request(&ImMsgData {
            from_user_id: from,
            to_session_id: to,
            msg_id: 0,
            create_time: 0,
            msg_type: MsgType::SingleText as i32,
            msg_data: Bytes::from(encrypted.clone().into_bytes()),
            attach_data: None,
        })
        .await
        .unwrap();
    assert!(ack.msg_id > 0);
    let got = rev.next_of::<ImMsgData>(WAIT).await.unwrap();
    assert_eq!(
        got.msg_data,
        encrypted.as_bytes(),
        "delivered through route_server"
    );

    // Every admin port refuses a wrong token; each refusal is logged with the peer address.
    let mut refused_peers = Vec::new();
    for (kind, addr) in cluster.admin_endpoints() {
        let (c, code) = admin(&addr, WRONG_TOKEN).await;
        assert_eq!(code, Some(AdminResult::AdminAuthFailed as i32), "{kind}");
        tokio::time::timeout(WAIT, c.closed())
            .await
            .unwrap_or_else(|_| panic!("{kind} closes a refused admin connection"));
        refused_peers.push((kind, c.local_addr()));
    }
    // And accepts the right one.
    let ms_admin = cluster
        .endpoint(ServerId::Msg(0))
        .unwrap()
        .admin
        .to_string();
    assert_eq!(
        admin(&ms_admin, TOKEN).await.1,
        Some(AdminResult::AdminOk as i32)
    );
    cluster.shutdown().await.unwrap();

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "debug logs were captured"
    );
    for (kind, peer) in &refused_peers {
        let line = text
            .lines()
            .find(|l| l.contains("admin authentication failed") && l.contains(&peer.to_string()))
            .unwrap_or_else(|| panic!("{kind}: no refusal logged with peer {peer}"));
        assert!(line.contains("WARN"), "{line}");
    }
    for (what, secret) in [
        ("password", PASSWORD.to_owned()),
        ("password digest", password_digest(PASSWORD)),
        ("wrong password", WRONG_PASSWORD.to_owned()),
        ("wrong password digest", password_digest(WRONG_PASSWORD)),
        ("message body", BODY.to_owned()),
        ("encrypted body", encrypted.clone()),
        ("admin token", TOKEN.to_owned()),
        ("wrong admin token", WRONG_TOKEN.to_owned()),
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(&secret)) {
            panic!("the {what} appears in the logs: {line}");
        }
    }
    eprintln!(
        "searched {} log lines ({} bytes) for 8 secrets",
        text.lines().count(),
        text.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_of_one_name_are_throttled_across_addresses() {
    let _ = logs();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(seed());
    opts.extras = false;
    opts.msg_servers = 1;
    opts.tune = Some(Arc::new(|c| {
        // db_proxy refuses a name after more than 3 failures; each address stays below
        // msg_server's own per-address throttle.
        c.db_proxy.login_failures_max = 3;
        for m in &mut c.msg {
            m.login_failures_per_addr = 2;
        }
    }));
    let cluster = Cluster::start(opts).await.expect("cluster starts");
    cluster.wait_ready(WAIT).await.unwrap();
    let ms = cluster.msg_server_addr(0).unwrap();
    let attempt = |from: u8, name: &'static str, pw: &'static str| async move {
        let (c, _ev) = connect_from(Ipv4Addr::new(127, 0, 0, from), ms).await;
        c.login(&LoginParams::new(name, pw)).await
    };
    // Four wrong passwords for lisi, each from its own address.
    for from in 2..=5 {
        match attempt(from, "lisi", "wrong").await {
            Err(ClientError::LoginRefused { code: 6, message }) => {
                assert!(
                    !message.contains("次数太多"),
                    "not yet throttled: {message}"
                );
            }
            other => panic!("expected a wrong-password refusal, got {other:?}"),
        }
    }
    // From a fifth, fresh address, even the right password is refused, and the client can
    // tell why: result 6 with the original's "too many attempts" text (FLOWS.md 4 step 5).
    match attempt(6, "lisi", "123456").await {
        Err(ClientError::LoginRefused { code: 6, message }) => {
            assert_eq!(message, "用户名/密码错误次数太多");
        }
        other => panic!("expected the per-name throttle, got {other:?}"),
    }
    // The address itself is not blocked: another user logs in from it.
    let ok = attempt(6, "wangwu", "123456").await.unwrap();
    assert_eq!(ok.result_code, 0);
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        !text.lines().any(|l| l.contains(&password_digest("123456"))),
        "no digest logged"
    );
    cluster.shutdown().await.unwrap();
}
