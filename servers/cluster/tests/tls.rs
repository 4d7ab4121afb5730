//! Optional TLS end to end, with the TEST-ONLY certificates of fixtures/tls: a client on
//! msg_server's TLS port chats with a client on the plain port; the msg_servers reach db_proxy,
//! the route_server and login_server at `tls://` addresses with mutual TLS; login_server, msfs
//! and http_msg_server answer over HTTPS; a link whose CA does not match is refused and keeps
//! retrying; a peer without a client certificate is refused by a mutual-TLS port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use im_cluster::{Cluster, ClusterOptions, ClusterTls, ServerId};
use im_common::upstream::{LinkState, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::base::{ClientType, MsgType};
use im_proto::client::{ClientConfig, ClientTls, Events, ImClient, LoginParams};
use im_proto::message::{ImMsgData, ImMsgDataAck};
use im_proto::{Pdu, cid};

const WAIT: Duration = Duration::from_secs(10);

fn fixture(path: &str) -> String {
    format!("{}/../../fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_files() -> ClusterTls {
    ClusterTls {
        cert_file: fixture("tls/server.pem"),
        key_file: fixture("tls/server.key"),
        ca_file: fixture("tls/ca.pem"),
        client_cert_file: fixture("tls/client.pem"),
        client_key_file: fixture("tls/client.key"),
    }
}

async fn tls_cluster(dir: &tempfile::TempDir, extras: bool) -> Cluster {
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(PathBuf::from(fixture("seed/demo.toml")));
    opts.msg_servers = 1;
    opts.extras = extras;
    opts.tls = Some(tls_files());
    Cluster::start(opts).await.expect("cluster starts")
}

fn client_tls(ca: &str) -> ClientTls {
    ClientTls::from_ca_pem(&std::fs::read(fixture(ca)).unwrap()).unwrap()
}

fn cfg() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: Some(Duration::from_secs(30)),
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

struct User {
    c: ImClient,
    ev: Events,
    id: u32,
}

async fn login(c: ImClient, ev: Events, name: &str) -> User {
    let res = c
        .login(&LoginParams::new(name, "123456").with_client_type(ClientType::Windows))
        .await
        .unwrap_or_else(|e| panic!("login {name}: {e}"));
    let id = res.user_info.expect("user_info").user_id;
    User { c, ev, id }
}

fn text(from: u32, to: u32, body: &str) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::from(
            im_proto::crypto::MessageCipher::default_key()
                .encrypt(body.as_bytes())
                .into_bytes(),
        ),
        attach_data: None,
    }
}

async fn next_msg(ev: &mut Events) -> ImMsgData {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pdu = tokio::time::timeout_at(deadline, ev.recv())
            .await
            .expect("a message in time")
            .expect("connection open");
        if pdu.command_id() == cid::CID_MSG_DATA {
            return pdu.decode::<ImMsgData>().unwrap();
        }
    }
}

async fn chat(from: &User, to: &mut User, body: &str) {
    let ack: ImMsgDataAck = from.c.request(&text(from.id, to.id, body)).await.unwrap();
    assert!(ack.msg_id > 0, "stored");
    let m = next_msg(&mut to.ev).await;
    assert_eq!((m.from_user_id, m.msg_id), (from.id, ack.msg_id));
    let plain = im_proto::crypto::MessageCipher::default_key()
        .decrypt(&m.msg_data)
        .unwrap();
    assert_eq!(plain, body.as_bytes());
}

fn https_client() -> reqwest::Client {
    im_proto::client::ensure_crypto_provider();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(fixture("tls/ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(WAIT)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_tls_client_and_a_plain_client_chat_over_mutual_tls_links() {
    let dir = tempfile::tempdir().unwrap();
    // Ready means every msg_server link is up: db_proxy, route_server and login_server are
    // reached at tls:// addresses with the client certificate (their ports require one).
    let cl = tls_cluster(&dir, false).await;
    let msg = cl.configs().msg[0].clone();
    assert!(msg.db_proxy[0].starts_with("tls://"), "{:?}", msg.db_proxy);
    assert!(msg.route_servers[0].starts_with("tls://"));
    assert!(msg.login_servers[0].starts_with("tls://"));
    assert!(!cl.configs().db_proxy.tls.client_ca_file.is_empty());

    let tls_addr = cl.msg_server_tls_addr(0).unwrap();
    let (c, ev) = ImClient::connect_tls(&tls_addr.to_string(), &client_tls("tls/ca.pem"), cfg())
        .await
        .unwrap();
    let mut a = login(c, ev, "zhangsan").await;
    let plain = cl.msg_server_addr(0).unwrap().to_string();
    let (c, ev) = ImClient::connect(&plain, cfg()).await.unwrap();
    let mut b = login(c, ev, "lisi").await;
    chat(&a, &mut b, "over TLS to plain").await;
    chat(&b, &mut a, "plain to TLS").await;

    // The TLS port speaks TLS only: a plain client there gets no login.
    let (c, _ev) = ImClient::connect(&tls_addr.to_string(), cfg())
        .await
        .unwrap();
    let r = tokio::time::timeout(WAIT, c.login(&LoginParams::new("wangwu", "123456"))).await;
    assert!(!matches!(r, Ok(Ok(_))), "a plain login on the TLS port");
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn login_server_msfs_and_http_msg_server_answer_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cl = tls_cluster(&dir, true).await;
    let https = https_client();
    let login = cl.https_addr(ServerId::Login).unwrap();
    let tls_port = cl.msg_server_tls_addr(0).unwrap().port();

    // The original answer, field for field, over HTTPS and over HTTP: no extra field.
    for url in [
        format!("https://localhost:{}/msg_server", login.port()),
        cl.login_url().to_owned(),
    ] {
        let v: serde_json::Value = https.get(&url).send().await.unwrap().json().await.unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "backupIP",
                "code",
                "discovery",
                "msfsBackup",
                "msfsPrior",
                "msg",
                "port",
                "priorIP"
            ],
            "{url}: {v}"
        );
        assert_eq!(v["code"], 0);
        assert_eq!(v["port"], cl.msg_server_addr(0).unwrap().port().to_string());
    }
    // A client that asks for TLS also gets the TLS port.
    let v: serde_json::Value = https
        .get(format!(
            "https://localhost:{}/msg_server?tls=1",
            login.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tlsPort"], tls_port.to_string(), "{v}");
    assert_eq!(v["port"], cl.msg_server_addr(0).unwrap().port().to_string());

    // msfs: upload and download over HTTPS.
    let msfs = cl.https_addr(ServerId::Msfs).unwrap();
    let body = b"\x89PNG fake image bytes".to_vec();
    let boundary = "----tlsboundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"photo_20x10.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let rsp: serde_json::Value = https
        .post(format!("https://localhost:{}/", msfs.port()))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rsp["error_code"], 0, "{rsp}");
    // The URL names the plain port; the same path over HTTPS.
    let url = rsp["url"].as_str().unwrap();
    let after_scheme = &url[url.find("://").unwrap() + 3..];
    let path = &after_scheme[after_scheme.find('/').unwrap()..];
    let got = https
        .get(format!("https://localhost:{}{path}", msfs.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "{path}");
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);

    // http_msg_server: the open discovery endpoint over HTTPS.
    let http_msg = cl.https_addr(ServerId::HttpMsg).unwrap();
    let d: serde_json::Value = https
        .get(format!(
            "https://localhost:{}/api/discovery",
            http_msg.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(d.is_array(), "{d}");
    cl.shutdown().await.unwrap();
}

struct Quiet;

impl UpstreamHandler for Quiet {
    async fn on_pdu(&self, _link: &ImClient, _pdu: Pdu) {}
}

fn link_to(addr: SocketAddr, tls: ClientTls) -> UpstreamOptions {
    let mut o = UpstreamOptions::new("route_server", vec![format!("tls://{addr}")]);
    o.tls = Some(tls);
    o.rtt_probe = None;
    o
}

#[tokio::test]
async fn mutual_tls_ports_refuse_a_wrong_ca_and_a_missing_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cl = tls_cluster(&dir, false).await;
    let route = cl.endpoint(ServerId::Route(0)).unwrap().tls.unwrap();
    let stop = im_common::CancellationToken::new();

    // Trusting another CA: the route_server's certificate is refused (logged as a TLS
    // handshake failure, once per failing streak), and the link keeps retrying.
    let wrong = Upstream::spawn(
        link_to(route, client_tls("tls/other-ca.pem")),
        std::sync::Arc::new(Quiet),
        stop.clone(),
    );
    // The right CA and the client certificate: connected (the control).
    let tls = ClientTls::from_pem_with_client_cert(
        &std::fs::read(fixture("tls/ca.pem")).unwrap(),
        &std::fs::read(fixture("tls/client.pem")).unwrap(),
        &std::fs::read(fixture("tls/client.key")).unwrap(),
    )
    .unwrap();
    let good = Upstream::spawn(
        link_to(route, tls),
        std::sync::Arc::new(Quiet),
        stop.clone(),
    );
    assert!(good.wait_connected(WAIT).await, "the control link connects");

    assert!(!wrong.wait_connected(Duration::from_millis(1500)).await);
    assert_ne!(wrong.status().state, LinkState::Connected);
    // Without a client certificate: route_server's port requires one. In TLS 1.3 the server
    // checks it after the client finished its side, so the refusal shows on first use.
    let refused =
        match ImClient::connect_tls(&route.to_string(), &client_tls("tls/ca.pem"), cfg()).await {
            Err(_) => true,
            Ok((c, _ev)) => c.heartbeat().await.is_err(),
        };
    assert!(refused, "a link without a client certificate is refused");
    stop.cancel();
    cl.shutdown().await.unwrap();
}
