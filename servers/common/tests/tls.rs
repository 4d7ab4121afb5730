//! im-common's optional TLS over real loopback sockets: TLS and plain listeners side by side,
//! refused certificates, plain peers on TLS ports, stalled handshakes, mutual TLS, `tls://`
//! upstream links, HTTPS, and config errors. The certificates in fixtures/tls are test-only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use im_common::http1::{Http1Options, serve_http1, serve_https1};
use im_common::tls::{TlsClientConfig, TlsConfig, TlsListen};
use im_common::upstream::{LinkState, Upstream, UpstreamHandler, UpstreamOptions};
use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve, serve_tls};
use im_proto::client::{ClientConfig, ClientError, ClientTls, ImClient};
use im_proto::message::{ImClientTimeReq, ImClientTimeRsp};
use im_proto::{Pdu, cid};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

fn cert(name: &str) -> String {
    format!("{}/../../fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn server_tls() -> TlsConfig {
    TlsConfig {
        cert_file: cert("server.pem"),
        key_file: cert("server.key"),
        ..TlsConfig::default()
    }
}

fn client_tls(ca: &str) -> ClientTls {
    ClientTls::from_ca_pem(&std::fs::read(cert(ca)).unwrap()).unwrap()
}

fn client_cfg() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        heartbeat_interval: None,
        ..ClientConfig::default()
    }
}

/// Answers IMClientTimeReq with 42.
struct Clock;

impl Handler for Clock {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if pdu.command_id() == cid::CID_MSG_TIME_REQUEST {
            let _ = conn.reply(&pdu, &ImClientTimeRsp { server_time: 42 });
        }
    }
}

async fn ask_time(c: &ImClient) -> Result<u32, ClientError> {
    c.request(&ImClientTimeReq {}).await.map(|r| r.server_time)
}

/// A plain and a TLS listener over one registry (as msg_server runs them).
struct Pair {
    plain: String,
    tls: String,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_pair(tls: TlsListen, opts: ServeOptions) -> Pair {
    let plain_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = ConnRegistry::new();
    let shutdown = CancellationToken::new();
    let plain = plain_l.local_addr().unwrap().to_string();
    let tls_addr = tls_l.local_addr().unwrap().to_string();
    let t1 = tokio::spawn(serve(
        plain_l,
        opts.clone(),
        registry.clone(),
        shutdown.clone(),
        |_| Clock,
    ));
    let t2 = tokio::spawn(serve_tls(
        tls_l,
        tls,
        opts,
        registry.clone(),
        shutdown.clone(),
        |_| Clock,
    ));
    Pair {
        plain,
        tls: tls_addr,
        registry,
        shutdown,
        tasks: vec![t1, t2],
    }
}

impl Pair {
    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tls_and_plain_clients_share_handlers_registry_and_limit() {
    let mut opts = ServeOptions::client("client");
    opts.shared_limit = Some(Arc::new(Semaphore::new(2)));
    let pair = start_pair(server_tls().listen("tls", "tls_listen").unwrap(), opts).await;
    let tls = client_tls("ca.pem");

    let (secure, _ev1) = ImClient::connect_tls(&pair.tls, &tls, client_cfg())
        .await
        .unwrap();
    let (plain, _ev2) = ImClient::connect(&pair.plain, client_cfg()).await.unwrap();
    assert_eq!(ask_time(&secure).await.unwrap(), 42);
    assert_eq!(ask_time(&plain).await.unwrap(), 42);
    assert_eq!(pair.registry.len(), 2);

    // The limit of 2 covers both ports: a third connection on either is refused.
    for addr in [&pair.plain, &pair.tls] {
        let mut s = TcpStream::connect(addr.as_str()).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert_eq!(pair.registry.stats().refused.load(Ordering::Relaxed), 2);
    assert_eq!(ask_time(&secure).await.unwrap(), 42);
    pair.stop().await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_and_the_server_keeps_serving() {
    let pair = start_pair(
        server_tls().listen("tls", "tls_listen").unwrap(),
        ServeOptions::client("client"),
    )
    .await;
    let wrong = client_tls("other-ca.pem");
    let e = ImClient::connect_tls(&pair.tls, &wrong, client_cfg())
        .await
        .map(|_| ())
        .expect_err("refused");
    let text = e.to_string();
    assert!(
        matches!(e, ClientError::Connect { .. }) && text.contains("UnknownIssuer"),
        "{text}"
    );
    let stats = pair.registry.stats().clone();
    wait_for("failure counted", || {
        stats.tls_handshake_failures.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(pair.registry.len(), 0);

    // The name is checked too: 127.0.0.1 and localhost are in the certificate, this is not.
    let misnamed = client_tls("ca.pem")
        .with_server_name("example.org")
        .unwrap();
    let e = ImClient::connect_tls(&pair.tls, &misnamed, client_cfg())
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(e.to_string().contains("not valid for name"), "{e}");

    let (good, _ev) = ImClient::connect_tls(&pair.tls, &client_tls("ca.pem"), client_cfg())
        .await
        .unwrap();
    assert_eq!(ask_time(&good).await.unwrap(), 42);
    pair.stop().await;
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_is_closed_without_harming_others() {
    let pair = start_pair(
        server_tls().listen("tls", "tls_listen").unwrap(),
        ServeOptions::client("client"),
    )
    .await;
    let (good, _ev) = ImClient::connect_tls(&pair.tls, &client_tls("ca.pem"), client_cfg())
        .await
        .unwrap();
    let (plain, _ev2) = ImClient::connect(&pair.tls, client_cfg()).await.unwrap();
    let e = ask_time(&plain).await.err();
    assert!(matches!(e, Some(ClientError::Closed)), "{e:?}");
    let stats = pair.registry.stats().clone();
    wait_for("failure counted", || {
        stats.tls_handshake_failures.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(ask_time(&good).await.unwrap(), 42);
    assert_eq!(pair.registry.len(), 1);
    pair.stop().await;
}

#[tokio::test]
async fn stalled_handshakes_time_out_without_holding_up_other_connections() {
    let mut cfg = server_tls();
    cfg.handshake_timeout_secs = 1.5;
    let pair = start_pair(
        cfg.listen("tls", "tls_listen").unwrap(),
        ServeOptions::client("client"),
    )
    .await;
    // Three peers connect and never say a word.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(pair.tls.as_str()).await.unwrap());
    }
    // A real client behind them is served while they are still waiting.
    let (good, _ev) = ImClient::connect_tls(&pair.tls, &client_tls("ca.pem"), client_cfg())
        .await
        .unwrap();
    assert_eq!(ask_time(&good).await.unwrap(), 42);
    let stats = pair.registry.stats().clone();
    assert_eq!(stats.tls_handshake_failures.load(Ordering::Relaxed), 0);
    // Then the silent ones are closed by the handshake deadline.
    for s in &mut silent {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed by the handshake timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    wait_for("failures counted", || {
        stats.tls_handshake_failures.load(Ordering::Relaxed) == 3
    })
    .await;
    assert_eq!(ask_time(&good).await.unwrap(), 42);
    pair.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_signed_by_the_configured_ca() {
    let mut cfg = server_tls();
    cfg.client_ca_file = cert("ca.pem");
    let pair = start_pair(
        cfg.listen("tls", "tls_listen").unwrap(),
        ServeOptions::server("links"),
    )
    .await;
    // Without a certificate: refused (with TLS 1.3 the client learns it on its first read).
    let anonymous = client_tls("ca.pem");
    match ImClient::connect_tls(&pair.tls, &anonymous, client_cfg()).await {
        Err(e) => assert!(matches!(e, ClientError::Connect { .. }), "{e}"),
        Ok((c, _ev)) => {
            let e = ask_time(&c).await.err();
            assert!(matches!(e, Some(ClientError::Closed)), "{e:?}");
        }
    }
    let with_cert = TlsClientConfig {
        ca_file: cert("ca.pem"),
        cert_file: cert("client.pem"),
        key_file: cert("client.key"),
        ..TlsClientConfig::default()
    }
    .client("tls_client")
    .unwrap();
    let (c, _ev) = ImClient::connect_tls(&pair.tls, &with_cert, client_cfg())
        .await
        .unwrap();
    assert_eq!(ask_time(&c).await.unwrap(), 42);
    pair.stop().await;
}

/// An upstream handler that only counts registrations.
struct Registering(std::sync::atomic::AtomicU32);

impl UpstreamHandler for Registering {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        link.request(&ImClientTimeReq {}).await.map(|_| ())
    }

    async fn on_pdu(&self, _link: &ImClient, _pdu: Pdu) {}
}

#[tokio::test]
async fn upstream_links_dial_tls_addresses_over_tls() {
    let pair = start_pair(
        server_tls().listen("tls", "tls_listen").unwrap(),
        ServeOptions::server("links"),
    )
    .await;
    let shutdown = CancellationToken::new();
    let tls_addr = format!("tls://{}", pair.tls);
    let client = TlsClientConfig {
        ca_file: cert("ca.pem"),
        ..TlsClientConfig::default()
    };
    let tls = client
        .client_for("tls_client", [("route_servers", tls_addr.as_str())])
        .unwrap();
    assert!(tls.is_some());
    let mut o = UpstreamOptions::new("route_server", vec![tls_addr.clone()]);
    o.tls = tls;
    let handler = Arc::new(Registering(Default::default()));
    let up = Upstream::spawn(o, handler.clone(), shutdown.clone());
    assert!(up.wait_connected(Duration::from_secs(10)).await);
    let reply = up
        .request(
            Pdu::from_msg(&ImClientTimeReq {}, 0),
            cid::CID_MSG_TIME_RESPONSE,
        )
        .await
        .unwrap();
    assert_eq!(reply.decode::<ImClientTimeRsp>().unwrap().server_time, 42);
    assert_eq!(handler.0.load(Ordering::Relaxed), 1);
    assert!(up.status().addr.starts_with("tls://"));

    // A tls:// address without [tls_client] settings never connects.
    let bare = Upstream::spawn(
        UpstreamOptions::new("route_server", vec![tls_addr.clone()]),
        Arc::new(Registering(Default::default())),
        shutdown.clone(),
    );
    // The same plain address on the TLS port fails the handshake: no link either.
    let plain_on_tls = Upstream::spawn(
        UpstreamOptions::new("route_server", vec![pair.tls.clone()]),
        Arc::new(Registering(Default::default())),
        shutdown.clone(),
    );
    assert!(!bare.wait_connected(Duration::from_millis(800)).await);
    assert!(
        !plain_on_tls
            .wait_connected(Duration::from_millis(200))
            .await
    );
    assert_ne!(bare.status().state, LinkState::Connected);
    assert!(up.is_connected());
    shutdown.cancel();
    pair.stop().await;
}

#[tokio::test]
async fn https_serves_the_same_service_and_refuses_plain_http() {
    let https_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = https_l.local_addr().unwrap();
    let http = http_l.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = |_info| {
        hyper::service::service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new("hello".to_owned()))
        })
    };
    let opts = Http1Options::new("test", Duration::from_secs(30));
    let t1 = tokio::spawn(serve_https1(
        https_l,
        server_tls().listen("tls", "https_listen").unwrap(),
        opts.clone(),
        service,
        shutdown.clone(),
    ));
    let t2 = tokio::spawn(serve_http1(http_l, opts, service, shutdown.clone()));

    im_proto::client::ensure_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cert("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let body = client
        .get(format!("https://localhost:{}/", https.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello");
    let body = client
        .get(format!("http://{http}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello");
    // Plain HTTP on the HTTPS port gets no answer.
    assert!(client.get(format!("http://{https}/")).send().await.is_err());
    // And HTTPS still works after it.
    let ok = client
        .get(format!("https://127.0.0.1:{}/", https.port()))
        .send()
        .await
        .unwrap();
    assert!(ok.status().is_success());
    shutdown.cancel();
    t1.await.unwrap();
    t2.await.unwrap();
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let err = |r: Result<TlsListen, im_common::config::ConfigError>| r.err().unwrap().to_string();

    let e = err(TlsConfig::default().listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.cert_file`") && e.contains("tls_listen"),
        "{e}"
    );

    let missing = TlsConfig {
        cert_file: cert("nope.pem"),
        ..server_tls()
    };
    let e = err(missing.listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.cert_file`") && e.contains("nope.pem"),
        "{e}"
    );

    // A key file given as the certificate: no CERTIFICATE block.
    let bad_pem = TlsConfig {
        cert_file: cert("server.key"),
        ..server_tls()
    };
    let e = err(bad_pem.listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.cert_file`") && e.contains("server.key") && e.contains("CERTIFICATE"),
        "{e}"
    );

    let no_key = TlsConfig {
        key_file: cert("server.pem"),
        ..server_tls()
    };
    let e = err(no_key.listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.key_file`") && e.contains("private key"),
        "{e}"
    );

    let mismatch = TlsConfig {
        key_file: cert("client.key"),
        ..server_tls()
    };
    let e = err(mismatch.listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.key_file`") && e.contains("client.key") && e.contains("does not fit"),
        "{e}"
    );

    let bad_ca = TlsConfig {
        client_ca_file: cert("server.key"),
        ..server_tls()
    };
    let e = err(bad_ca.listen("tls", "tls_listen"));
    assert!(
        e.contains("`tls.client_ca_file`") && e.contains("server.key"),
        "{e}"
    );

    let slow = TlsConfig {
        handshake_timeout_secs: 0.0,
        ..server_tls()
    };
    assert!(err(slow.listen("tls", "x")).contains("handshake_timeout_secs"));

    // Client side.
    let e = TlsClientConfig::default()
        .client_for("tls_client", [("db_proxy", "tls://127.0.0.1:1")])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`tls_client.ca_file`"), "{e}");
    assert!(
        TlsClientConfig::default()
            .client_for("tls_client", [("db_proxy", "127.0.0.1:1")])
            .unwrap()
            .is_none()
    );
    let e = TlsClientConfig::default()
        .client_for("tls_client", [("db_proxy", "http://127.0.0.1:1")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`db_proxy`") && e.contains("tls://host:port"),
        "{e}"
    );
    let e = TlsClientConfig {
        ca_file: cert("server.key"),
        ..TlsClientConfig::default()
    }
    .client("tls_client")
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("`tls_client.ca_file`") && e.contains("server.key"),
        "{e}"
    );
    let e = TlsClientConfig {
        ca_file: cert("ca.pem"),
        cert_file: cert("client.pem"),
        key_file: cert("server.key"),
        ..TlsClientConfig::default()
    }
    .client("tls_client")
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("`tls_client.key_file`") && e.contains("server.key"),
        "{e}"
    );
    let e = TlsClientConfig {
        ca_file: cert("ca.pem"),
        cert_file: cert("client.pem"),
        ..TlsClientConfig::default()
    }
    .client("tls_client")
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("`tls_client.key_file`"), "{e}");
    let e = TlsClientConfig {
        ca_file: cert("ca.pem"),
        server_name: "not a name!".into(),
        ..TlsClientConfig::default()
    }
    .client("tls_client")
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("`tls_client.server_name`"), "{e}");
}
