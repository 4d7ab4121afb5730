//! im-common over real loopback sockets: the serve loop, connections, upstream links, the
//! admin port and the HTTP port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use im_common::admin::{AdminService, serve_admin};
use im_common::conn::CloseReason;
use im_common::http::{Health, serve_http};
use im_common::metrics::Registry;
use im_common::upstream::{LinkState, Upstream, UpstreamHandler, UpstreamOptions};
use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminRouteListReq, ImAdminStatsReq, ServerStats,
};
use im_proto::client::{ClientConfig, ClientError, ImClient};
use im_proto::message::{ImClientTimeReq, ImClientTimeRsp};
use im_proto::server::ImRoleSet;
use im_proto::{Pdu, cid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers IMClientTimeReq with a per-connection counter; records what it saw.
struct Counting {
    next: u32,
    seen: Arc<Mutex<Vec<u16>>>,
}

impl Handler for Counting {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        self.seen.lock().unwrap().push(pdu.command_id());
        match pdu.command_id() {
            cid::CID_MSG_TIME_REQUEST => {
                self.next += 1;
                conn.reply(
                    &pdu,
                    &ImClientTimeRsp {
                        server_time: self.next,
                    },
                )
                .unwrap();
            }
            // "flood": push 64 KiB frames until the connection is dropped as slow.
            cid::CID_OTHER_ROLE_SET => {
                let frame = Bytes::from(vec![0u8; 64 * 1024]);
                for _ in 0..20_000 {
                    if conn.send_frame(frame.clone()).is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            // "deadline": close unless something else happens within 200 ms.
            cid::CID_MSG_TIME_RESPONSE => conn.set_deadline(Some(Duration::from_millis(200))),
            _ => {}
        }
    }
}

struct TestServer {
    addr: String,
    registry: ConnRegistry,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Vec<u16>>>,
}

async fn start(opts: ServeOptions) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let registry = ConnRegistry::new();
    let shutdown = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = {
        let (registry, shutdown, seen) = (registry.clone(), shutdown.clone(), seen.clone());
        tokio::spawn(async move {
            serve(listener, opts, registry, shutdown, move |_| Counting {
                next: 0,
                seen: seen.clone(),
            })
            .await
        })
    };
    TestServer {
        addr,
        registry,
        shutdown,
        done,
        seen,
    }
}

fn client_cfg() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: None,
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pdus_are_handled_in_order_and_heartbeats_echoed() {
    let s = start(ServeOptions::client("test")).await;
    let (c, _ev) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    c.heartbeat().await.unwrap();
    // Pipeline 200 requests; answers come back in order with consecutive counters.
    let mut waits = Vec::new();
    for _ in 0..200 {
        let c = c.clone();
        waits.push(tokio::spawn(
            async move { c.request(&ImClientTimeReq {}).await },
        ));
        tokio::task::yield_now().await;
    }
    let mut got = Vec::new();
    for w in waits {
        got.push(w.await.unwrap().unwrap().server_time);
    }
    got.sort_unstable();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    // The heartbeat never reached the handler.
    assert!(!s.seen.lock().unwrap().contains(&cid::CID_OTHER_HEARTBEAT));
    assert_eq!(s.registry.len(), 1);
    s.shutdown.cancel();
    s.done.await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_as_slow_consumer() {
    let mut opts = ServeOptions::client("test");
    opts.queue_limit = 1 << 20;
    let s = start(opts).await;
    let mut raw = TcpStream::connect(&s.addr).await.unwrap();
    raw.write_all(&Pdu::from_msg(&ImRoleSet { master: 1 }, 1).to_frame())
        .await
        .unwrap();
    // Never read; the server must give up on us instead of buffering without limit.
    let reg = s.registry.clone();
    wait_for("slow consumer disconnect", Duration::from_secs(20), || {
        reg.stats().slow_consumers.load(Ordering::Relaxed) == 1
    })
    .await;
    wait_for("connection removed", Duration::from_secs(5), || {
        reg.is_empty()
    })
    .await;
    s.shutdown.cancel();
    s.done.await.unwrap();
}

#[tokio::test]
async fn idle_connections_and_deadlines_are_closed() {
    let mut opts = ServeOptions::client("test");
    opts.idle_timeout = Some(Duration::from_millis(300));
    let s = start(opts).await;

    // Idle: nothing sent at all.
    let mut idle = TcpStream::connect(&s.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(n.unwrap(), 0, "closed without data");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Deadline: heartbeats keep the idle timer happy, the deadline still closes it.
    let (c, _ev) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    c.send(&ImClientTimeRsp { server_time: 0 }).await.unwrap();
    let c2 = c.clone();
    let beats = tokio::spawn(async move {
        while !c2.is_closed() {
            let _ = c2.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    beats.abort();
    s.shutdown.cancel();
    s.done.await.unwrap();
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let mut opts = ServeOptions::client("test");
    opts.max_connections = 2;
    let s = start(opts).await;
    let (a, _ea) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    let (b, _eb) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    let (c, _ec) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    assert!(matches!(c.heartbeat().await, Err(ClientError::Closed)));
    assert_eq!(s.registry.stats().refused.load(Ordering::Relaxed), 1);
    // The first two are unaffected.
    a.heartbeat().await.unwrap();
    s.shutdown.cancel();
    s.done.await.unwrap();
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_own_connection() {
    let s = start(ServeOptions::client("test")).await;
    let (good, _e) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    for bad in [
        vec![0u8, 0, 0, 5, 1, 2, 3, 4, 5],   // length 5 < 16
        vec![0u8, 0, 0, 0],                  // length 0
        vec![0x80u8, 0, 0, 0],               // length 2^31
        (2u32 << 20).to_be_bytes().to_vec(), // 2 MiB > client cap
    ] {
        let mut raw = TcpStream::connect(&s.addr).await.unwrap();
        raw.write_all(&bad).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "connection must be closed");
        assert!(good.request(&ImClientTimeReq {}).await.unwrap().server_time >= 1);
    }
    assert_eq!(
        s.registry.stats().protocol_errors.load(Ordering::Relaxed),
        4
    );
    s.shutdown.cancel();
    s.done.await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_queued_data_and_returns() {
    let s = start(ServeOptions::client("test")).await;
    let (c, mut ev) = ImClient::connect(&s.addr, client_cfg()).await.unwrap();
    c.heartbeat().await.unwrap();
    let conn = s.registry.all().pop().unwrap();
    for i in 0..1000u32 {
        conn.send_msg(&ImClientTimeRsp { server_time: i }, 0)
            .unwrap();
    }
    s.shutdown.cancel();
    s.done.await.unwrap();
    let mut n = 0;
    while let Some(p) = ev.recv().await {
        let m: ImClientTimeRsp = p.decode().unwrap();
        assert_eq!(m.server_time, n);
        n += 1;
    }
    assert_eq!(n, 1000, "every queued PDU arrived before the close");
    assert_eq!(conn.close_reason(), Some(CloseReason::Shutdown));
}

/// Upstream handler that registers with an IMRoleSet on every connect.
struct Registering {
    connects: AtomicUsize,
}

impl UpstreamHandler for Registering {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        link.send(&ImRoleSet { master: 1 }).await.map(|_| ())
    }
    async fn on_pdu(&self, _link: &ImClient, _pdu: Pdu) {}
}

/// A peer that counts IMRoleSet registrations; cancel the token to stop it.
fn role_set_peer(
    listener: TcpListener,
    count: Arc<AtomicU32>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let registry = ConnRegistry::new();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    struct Peer(Arc<AtomicU32>);
    impl Handler for Peer {
        async fn on_pdu(&mut self, _conn: &Conn, pdu: Pdu) {
            if pdu.command_id() == cid::CID_OTHER_ROLE_SET {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut opts = ServeOptions::server("peer");
    opts.echo_heartbeat = true;
    let task = tokio::spawn(async move {
        serve(listener, opts, registry, shutdown, move |_| {
            Peer(count.clone())
        })
        .await;
    });
    (stop, task)
}

#[tokio::test]
async fn upstream_fails_over_reconnects_quickly_and_reregisters() {
    // A dead address first: the link must fail over to the live one.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listener.local_addr().unwrap();
    let registrations = Arc::new(AtomicU32::new(0));
    let (stop_peer, peer) = role_set_peer(listener, registrations.clone());

    let handler = Arc::new(Registering {
        connects: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let up = Upstream::spawn(
        UpstreamOptions::new("test_peer", vec![dead, live.to_string()]),
        handler.clone(),
        shutdown.clone(),
    );
    assert!(up.wait_connected(Duration::from_secs(5)).await);
    wait_for("first registration", Duration::from_secs(5), || {
        registrations.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(up.status().state, LinkState::Connected);

    // Kill the peer (listener and connections), restart it on the same port.
    stop_peer.cancel();
    peer.await.unwrap();
    wait_for("link down", Duration::from_secs(5), || !up.is_connected()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = TcpListener::bind(live).await.unwrap();
    let back = Instant::now();
    let _peer = role_set_peer(listener, registrations.clone());
    assert!(up.wait_connected(Duration::from_secs(10)).await);
    let recovery = back.elapsed();
    wait_for("re-registration", Duration::from_secs(5), || {
        registrations.load(Ordering::Relaxed) == 2
    })
    .await;
    eprintln!("upstream recovered {recovery:?} after the peer came back");
    // Decisions 3: about 1 s; asserted with a generous deadline.
    assert!(recovery < Duration::from_secs(5), "{recovery:?}");
    assert_eq!(handler.connects.load(Ordering::Relaxed), 2);
    assert!(up.status().reconnects >= 1);
    shutdown.cancel();
}

struct TestAdmin;

impl AdminService for TestAdmin {
    fn kind(&self) -> &'static str {
        "test_server"
    }
    fn name(&self) -> String {
        "test-1".into()
    }
    async fn stats(&self) -> ServerStats {
        ServerStats {
            msgs_in_total: Some(7),
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn admin_port_requires_the_token_first() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_admin(
        listener,
        "0123456789abcdef-token".into(),
        Arc::new(TestAdmin),
        shutdown.clone(),
    ));

    // A command before auth is refused and the connection closed.
    let (c, _e) = ImClient::connect(&addr, client_cfg()).await.unwrap();
    let pdu = Pdu::from_msg(&ImAdminStatsReq {}, 0);
    let rsp = c
        .request_pdu(pdu, cid::CID_ADMIN_AUTH_RSP, Duration::from_secs(5))
        .await
        .unwrap();
    let rsp: im_proto::admin::ImAdminAuthRsp = rsp.decode().unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminAuthFailed as i32));
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();

    // A wrong token: same.
    let (c, _e) = ImClient::connect(&addr, client_cfg()).await.unwrap();
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some("wrong-token-wrong-token".into()),
            client_name: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminAuthFailed as i32));
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();

    // The right token, then stats and an unsupported command.
    let (c, _e) = ImClient::connect(&addr, client_cfg()).await.unwrap();
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some("0123456789abcdef-token".into()),
            client_name: Some("kit test".into()),
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(rsp.server_kind.as_deref(), Some("test_server"));
    let stats = c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap();
    assert_eq!(stats.server_kind.as_deref(), Some("test_server"));
    assert_eq!(stats.server_name.as_deref(), Some("test-1"));
    assert_eq!(stats.msgs_in_total, Some(7));
    assert!(stats.rss_bytes.unwrap_or(0) > 0);
    assert!(stats.version.is_some() && stats.uptime_ms.is_some());
    let r = c.request(&ImAdminRouteListReq::default()).await.unwrap();
    assert_eq!(r.result_code, Some(AdminResult::AdminUnsupported as i32));
    shutdown.cancel();
}

#[tokio::test]
async fn http_port_serves_metrics_health_and_readiness() {
    im_proto::client::ensure_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let registry = Registry::new("im_test");
    registry.counter("things_total", "Things.").add(5);
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_http(
        listener,
        registry,
        health.clone(),
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("im_test_things_total 5"), "{text}");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    health.set_ready();
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
