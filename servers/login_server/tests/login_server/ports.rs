//! The legacy TCP port, the admin port, the metrics port and the config.

use std::time::Duration;

use im_common::config::load_from;
use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminDrainReq, ImAdminMsgServerListReq, ImAdminStatsReq,
};
use im_proto::base::ResultType;
use im_proto::client::{ClientConfig, ImClient};
use im_proto::login::{ImMsgServReq, ImMsgServRsp};
use im_proto::pdu::decode_body;
use im_proto::{HEADER_LEN, Header, Pdu, cid};
use login_server::{Config, Listeners, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::harness::{TOKEN, http, msg_server, start};

/// Sends IMMsgServReq with `seq` on a fresh connection; the answer and whether the server
/// closed the connection afterwards.
async fn legacy(addr: &str, seq: u16) -> (Header, ImMsgServRsp) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&Pdu::from_msg(&ImMsgServReq {}, seq).to_frame())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("login_server closes after answering")
        .unwrap();
    let head: [u8; HEADER_LEN] = raw[..HEADER_LEN].try_into().unwrap();
    let (len, header) = Header::parse(&head);
    assert_eq!(len as usize, raw.len(), "exactly one PDU, then close");
    let body = bytes::Bytes::copy_from_slice(&raw[HEADER_LEN..]);
    (header, decode_body::<ImMsgServRsp>(&body).unwrap())
}

#[tokio::test]
async fn the_legacy_tcp_path_answers_with_the_request_seq_and_closes() {
    let ts = start().await;
    let (h, rsp) = legacy(&ts.legacy, 4242).await;
    assert_eq!(
        (h.command_id, h.seq_num),
        (cid::CID_LOGIN_RES_MSGSERVER, 4242)
    );
    assert_eq!(rsp.result_code, ResultType::RefuseReasonNoMsgServer as i32);

    let _full = msg_server(&ts, "full", 8001, 9, 9).await;
    let (h, rsp) = legacy(&ts.legacy, 7).await;
    assert_eq!(h.seq_num, 7);
    assert_eq!(
        rsp.result_code,
        ResultType::RefuseReasonMsgServerFull as i32
    );

    let _ok = msg_server(&ts, "ok", 8002, 0, 9).await;
    let (h, rsp) = legacy(&ts.legacy, 65535).await;
    assert_eq!(h.seq_num, 65535);
    assert_eq!(
        rsp,
        ImMsgServRsp {
            result_code: ResultType::RefuseReasonNone as i32,
            prior_ip: Some("127.0.0.1".into()),
            backip_ip: Some("127.0.0.1".into()),
            port: Some(8002),
        }
    );
    // It counts like an HTTP login.
    assert_eq!(ts.status(8002).unwrap().pending_logins, 1);
    ts.stop().await;
}

async fn admin(addr: &str) -> ImClient {
    let cfg = ClientConfig {
        heartbeat_interval: None,
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let (c, _events) = ImClient::connect(addr, cfg).await.unwrap();
    let auth = c
        .request(&ImAdminAuthReq {
            token: Some(TOKEN.into()),
            client_name: Some("login_server test".into()),
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(auth.server_kind.as_deref(), Some("login_server"));
    c
}

fn drain(target: &str, undrain: bool) -> ImAdminDrainReq {
    ImAdminDrainReq {
        msg_server: Some(target.into()),
        undrain: Some(undrain),
        close_per_sec: None,
    }
}

#[tokio::test]
async fn drain_through_the_admin_port_moves_logins_away_and_undrain_brings_them_back() {
    let ts = start().await;
    let _a = msg_server(&ts, "host-a", 8001, 0, 100).await;
    let _b = msg_server(&ts, "host-b", 8002, 50, 100).await;
    let c = admin(&ts.admin).await;

    let rsp = c.request(&drain("host-a", false)).await.unwrap();
    assert_eq!(
        rsp.result_code,
        Some(AdminResult::AdminOk as i32),
        "{rsp:?}"
    );
    for _ in 0..5 {
        assert_eq!(ts.login().await, Ok(8002));
    }
    let list = c.request(&ImAdminMsgServerListReq {}).await.unwrap();
    assert_eq!(list.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(list.assignments_total, Some(5));
    let a = list.servers.iter().find(|s| s.port == Some(8001)).unwrap();
    let b = list.servers.iter().find(|s| s.port == Some(8002)).unwrap();
    assert_eq!(
        (a.draining, a.host_name.as_deref()),
        (Some(true), Some("host-a"))
    );
    assert_eq!(
        (b.pending_logins, b.assignments_total, b.cur_conn_cnt),
        (Some(5), Some(5), Some(50))
    );
    assert_eq!(b.max_conn_cnt, Some(100));
    assert!(b.registered_ms.is_some());

    // Undrain by address: a is the least loaded again.
    let rsp = c.request(&drain("127.0.0.1:8001", true)).await.unwrap();
    assert_eq!(
        rsp.result_code,
        Some(AdminResult::AdminOk as i32),
        "{rsp:?}"
    );
    assert_eq!(ts.login().await, Ok(8001));

    // An unknown name lists the known ones; an empty one is a bad request.
    let rsp = c.request(&drain("host-z", false)).await.unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminNotFound as i32));
    let text = rsp.result_string.unwrap_or_default();
    assert!(
        text.contains("host-a (127.0.0.1:8001)") && text.contains("host-b"),
        "{text}"
    );
    let rsp = c.request(&drain("", false)).await.unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminBadRequest as i32));

    let stats = c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap();
    assert_eq!(stats.server_kind.as_deref(), Some("login_server"));
    assert_eq!(stats.table_size, Some(2));
    assert_eq!(stats.logins_total, Some(6));
    assert_eq!(stats.listen_addr.as_deref(), Some(ts.http.as_str()));
    let metric = |name: &str| {
        stats
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .and_then(|m| m.value)
    };
    assert_eq!(metric("im_login_server_assignments_total"), Some(6.0));
    assert_eq!(metric("im_login_server_msg_servers"), Some(2.0));
    ts.stop().await;
}

#[tokio::test]
async fn a_wrong_admin_token_is_refused() {
    let ts = start().await;
    let (c, _events) = ImClient::connect(&ts.admin, ClientConfig::default())
        .await
        .unwrap();
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some("not-the-token-not-the-token".into()),
            client_name: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminAuthFailed as i32));
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn the_metrics_port_reports_assignments_and_readiness() {
    let ts = start().await;
    let _a = msg_server(&ts, "a", 8001, 0, 100).await;
    for _ in 0..3 {
        ts.login().await.unwrap();
    }
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8(http(&ts.metrics, get("/metrics").as_bytes()).await).unwrap();
    assert!(
        text.contains("\nim_login_server_assignments_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("im_login_server_http_requests_total 3"),
        "{text}"
    );
    assert!(text.contains("im_login_server_pending_logins 3"), "{text}");
    let ready = String::from_utf8(http(&ts.metrics, get("/readyz").as_bytes()).await).unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    ts.stop().await;
}

#[tokio::test]
async fn run_refuses_an_admin_listener_without_a_token_and_stops_cleanly() {
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners = Listeners {
        msg_servers_tls: None,
        https: None,
        http: bind().await.unwrap(),
        msg_servers: bind().await.unwrap(),
        legacy_client: None,
        admin: Some(bind().await.unwrap()),
        metrics: None,
    };
    let e = run(Config::default(), listeners, CancellationToken::new())
        .await
        .expect_err("no token");
    assert!(e.to_string().contains("admin.token"), "{e}");

    // Without optional ports it serves and stops on cancel.
    let listeners = Listeners {
        msg_servers_tls: None,
        https: None,
        http: bind().await.unwrap(),
        msg_servers: bind().await.unwrap(),
        legacy_client: None,
        admin: None,
        metrics: None,
    };
    let http_addr = listeners.http.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(Config::default(), listeners, shutdown.clone()));
    assert_eq!(crate::harness::login(&http_addr).await, Err(1));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn the_sample_config_loads_and_every_key_is_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/config/login_server.toml");
    let c: Config = load_from(Some(&path), "IM_LOGIN_SERVER_", &[]).unwrap();
    c.validate().unwrap();
    assert_eq!(c.http_listen, "127.0.0.1:8080");
    assert_eq!(c.msg_server_listen, "127.0.0.1:8100");
    assert_eq!(c.legacy_client_listen, "127.0.0.1:8008");
    assert_eq!(c.pending_login_ttl_secs, 10);
    assert!(!c.admin.listen.is_empty() && !c.http.listen.is_empty());
    // Every key line is preceded by a comment line.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "key without a comment: {l}"
            );
        }
    }
    // Environment overrides win, and unknown keys are refused with their name.
    let vars = [(
        "IM_LOGIN_SERVER_PENDING_LOGIN_TTL_SECS".to_owned(),
        "3".to_owned(),
    )];
    let c: Config = load_from(Some(&path), "IM_LOGIN_SERVER_", &vars).unwrap();
    assert_eq!(c.pending_login_ttl_secs, 3);
    let vars = [("IM_LOGIN_SERVER_HTTP_PORT".to_owned(), "8080".to_owned())];
    let e = load_from::<Config>(Some(&path), "IM_LOGIN_SERVER_", &vars).unwrap_err();
    assert!(e.to_string().contains("http_port"), "{e}");
}
