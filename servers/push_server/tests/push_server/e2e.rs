//! The must-show: a real msg_server, db_proxy_server (SQLite) and route_server, this
//! push_server and a fake APNs. An offline iOS user gets exactly one push per message, with
//! his token, his unread count as the badge and "nick:text" as the alert.

use std::time::{Duration, Instant};

use std::sync::Arc;

use db_proxy_server::{DbProxy, Listeners as DbListeners, Shared};
use im_common::CancellationToken;
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq, LinkState, ServerStats};
use im_proto::base::{ClientType, MsgType};
use im_proto::client::{ClientConfig, ClientError, ImClient, LoginParams};
use im_proto::crypto::MessageCipher;
use im_proto::login::ImDeviceTokenReq;
use im_proto::message::{ImMsgData, ImUnreadMsgCntReq};
use im_storage::config::SqliteConfig;
use im_storage::{NewUser, SqliteStore, Store, TokenKind};
use serde_json::json;
use tokio::net::TcpListener;

use crate::fakes::FakeHttp;
use crate::harness::*;

const PW: &str = "secret-pw";

/// Cancels everything it was given when dropped (a failing test leaves no servers behind).
struct Stop(Vec<CancellationToken>);

impl Drop for Stop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.cancel();
        }
    }
}

/// db_proxy_server over a fresh SQLite file with alice (1) and bob (2); its address and
/// state (the store, to look at tokens directly).
async fn start_db(dir: &std::path::Path, stop: &mut Stop) -> (String, Arc<Shared<SqliteStore>>) {
    let mut config = db_proxy_server::Config {
        listen: "127.0.0.1:0".into(),
        ..db_proxy_server::Config::default()
    };
    config.storage.sqlite = SqliteConfig {
        path: dir.join("teamtalk.db"),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config.storage.sqlite).await.unwrap();
    for name in ["alice", "bob"] {
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
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    stop.0.push(shutdown.clone());
    let proxy = DbProxy::new(config, store).unwrap();
    let shared = proxy.shared().clone();
    tokio::spawn(proxy.serve(
        DbListeners {
            main_tls: None,
            main,
            admin: None,
            metrics: None,
        },
        shutdown,
    ));
    (addr, shared)
}

/// The iOS tokens db_proxy holds for `users`.
async fn tokens(db: &Shared<SqliteStore>, users: &[u32]) -> Vec<(u32, String)> {
    let mut t: Vec<(u32, String)> = db
        .store
        .device_tokens(users)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TokenKind::Ios && !t.token.is_empty())
        .map(|t| (t.user_id, t.token))
        .collect();
    t.sort();
    t
}

async fn start_route(stop: &mut Stop) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    stop.0.push(shutdown.clone());
    let config = route_server::Config {
        offline_grace_secs: 0.5,
        ..route_server::Config::default()
    };
    tokio::spawn(route_server::run(
        config,
        route_server::Listeners {
            msg_servers_tls: None,
            msg_servers: listener,
            admin: None,
            metrics: None,
        },
        shutdown,
    ));
    addr
}

/// A msg_server; returns its client and admin addresses.
async fn start_ms(db: &str, route: &str, push: &str, stop: &mut Stop) -> (String, String) {
    let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (
        client.local_addr().unwrap().to_string(),
        admin.local_addr().unwrap().to_string(),
    );
    let mut config = msg_server::Config {
        name: "ms-push-e2e".into(),
        listen: "127.0.0.1:0".into(),
        db_proxy: vec![db.into()],
        db_connections_per_server: 2,
        route_servers: vec![route.into()],
        login_servers: Vec::new(),
        push_servers: vec![push.into()],
        request_timeout_ms: 5_000,
        push_locate_timeout_ms: 1_000,
        ..msg_server::Config::default()
    };
    config.admin.listen = admin_addr.clone();
    config.admin.token = TOKEN.into();
    let shutdown = CancellationToken::new();
    stop.0.push(shutdown.clone());
    tokio::spawn(msg_server::run(
        config,
        msg_server::Listeners {
            tls: None,
            client,
            admin: Some(admin),
            metrics: None,
        },
        shutdown,
    ));
    (addr, admin_addr)
}

fn client_config() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: None,
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

async fn ms_stats(admin: &str) -> ServerStats {
    let (c, _ev) = ImClient::connect(admin, client_config()).await.unwrap();
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some(TOKEN.into()),
            client_name: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap()
}

async fn links_up(admin: &str, kind: &str) -> bool {
    ms_stats(admin)
        .await
        .upstreams
        .iter()
        .any(|l| l.kind.as_deref() == Some(kind) && l.state == Some(LinkState::Connected as i32))
}

/// Logs `name` in, retrying while the msg_server has no db_proxy link yet.
async fn login(addr: &str, name: &str, ct: ClientType) -> (ImClient, u32) {
    let start = Instant::now();
    loop {
        let (c, _ev) = ImClient::connect(addr, client_config()).await.unwrap();
        match c
            .login(&LoginParams::new(name, PW).with_client_type(ct))
            .await
        {
            Ok(res) => return (c, res.user_info.map_or(0, |u| u.user_id)),
            Err(ClientError::LoginRefused { code: 3, .. }) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("login of {name}: {e}"),
        }
    }
}

/// Sends an encrypted text as a stock client does; returns the stored msg_id.
async fn send_text(c: &ImClient, from: u32, to: u32, text: &str) -> u32 {
    c.request(&ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: MessageCipher::default_key().encrypt(text.as_bytes()).into(),
        attach_data: None,
    })
    .await
    .unwrap()
    .msg_id
}

#[tokio::test]
async fn an_offline_ios_user_gets_one_push_per_message() {
    let mut stop = Stop(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let apns = FakeHttp::start().await;
    let (db, db_state) = start_db(dir.path(), &mut stop).await;
    let route = start_route(&mut stop).await;
    let mut cfg = config(
        &apns.url,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        dir.path(),
    );
    cfg.fcm.enabled = false;
    cfg.webhook.enabled = false;
    cfg.db_proxy.addresses = vec![db.clone()];
    let ps = Ps::start(cfg).await;
    let (ms, ms_admin) = start_ms(&db, &route, &ps.addr, &mut stop).await;
    for kind in ["db_proxy_server", "route_server", "push_server"] {
        wait_until(kind, || links_up(&ms_admin, kind)).await;
    }

    // bob registers his iPhone's token, then the phone goes away.
    let bob_token = ios_token("5a");
    {
        let (phone, bob) = login(&ms, "bob", ClientType::Ios).await;
        assert_eq!(bob, 2);
        phone
            .request(&ImDeviceTokenReq {
                user_id: 0,
                device_token: bob_token.clone(),
                client_type: None,
                attach_data: None,
            })
            .await
            .unwrap();
        phone.heartbeat().await.unwrap();
        phone.close();
    }
    wait_until("bob's phone is gone", || async {
        ms_stats(&ms_admin)
            .await
            .connections
            .iter()
            .all(|c| c.client_type != Some(ClientType::Ios as u32) || c.count == Some(0))
    })
    .await;

    let (alice, a) = login(&ms, "alice", ClientType::Windows).await;
    for i in 1..=3u32 {
        let msg_id = send_text(&alice, a, 2, &format!("message {i}")).await;
        assert_eq!(msg_id, i);
        // One push per message; waiting for it keeps the badges in order.
        wait_until("the push", || async { apns.requests().len() == i as usize }).await;
    }
    tokio::time::sleep(QUIET).await;
    let reqs = apns.requests();
    assert_eq!(reqs.len(), 3, "exactly one push per message");
    for (i, r) in reqs.iter().enumerate() {
        let n = i as u32 + 1;
        assert_eq!(r.path, format!("/3/device/{bob_token}"));
        assert_eq!(r.header("apns-topic"), TOPIC);
        assert_eq!(
            r.json(),
            json!({"aps": {"alert": {"body": format!("nick-alice:message {n}")}, "badge": n,
                   "sound": "bingbong.aiff"},
                   "custom": format!(r#"{{"msg_type":1,"from_id":{a}}}"#)}),
            "push {n}"
        );
    }
    assert_eq!(ps.metric("pushes_sent_total{provider=\"apns\"}").await, 3.0);

    // The badge is bob's unread count.
    let (bob_pc, _) = login(&ms, "bob", ClientType::Windows).await;
    let unread = bob_pc
        .request(&ImUnreadMsgCntReq {
            user_id: 0,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(unread.total_cnt, 3);
    bob_pc.close();

    // Apple says the token is dead: db_proxy removes it, and the next message has no push.
    assert_eq!(tokens(&db_state, &[2]).await, vec![(2, bob_token.clone())]);
    apns.answer(410, r#"{"reason":"Unregistered"}"#);
    wait_until("bob's PC gone", || async {
        ms_stats(&ms_admin)
            .await
            .connections
            .iter()
            .all(|c| c.client_type != Some(ClientType::Windows as u32) || c.count == Some(1))
    })
    .await;
    send_text(&alice, a, 2, "message 4").await;
    wait_until("the token removed", || async {
        tokens(&db_state, &[2]).await.is_empty()
    })
    .await;
    assert_eq!(apns.requests().len(), 4);
    send_text(&alice, a, 2, "message 5").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(apns.requests().len(), 4, "no token, no push");
    assert_eq!(ps.metric("dead_tokens_removed_total").await, 1.0);
    ps.stop().await;
}

#[tokio::test]
async fn db_proxy_removes_a_dead_token_only_if_it_is_still_the_users() {
    let mut stop = Stop(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let apns = FakeHttp::start().await;
    let (db, db_state) = start_db(dir.path(), &mut stop).await;
    let (alice_old, bob_old, bob_new) = (ios_token("a0"), ios_token("b0"), ios_token("b1"));
    let ios = ClientType::Ios as u32;
    db_state
        .store
        .set_device_token(1, ios, &alice_old)
        .await
        .unwrap();
    // bob re-registered after msg_server looked up his old token.
    db_state
        .store
        .set_device_token(2, ios, &bob_new)
        .await
        .unwrap();
    let mut cfg = config(
        &apns.url,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        dir.path(),
    );
    cfg.fcm.enabled = false;
    cfg.db_proxy.addresses = vec![db];
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    apns.answer(410, r#"{"reason":"Unregistered"}"#);
    apns.answer(410, r#"{"reason":"Unregistered"}"#);
    let codes = push(
        &link,
        "nick-carol:hi",
        r#"{"msg_type":1,"from_id":3}"#,
        vec![
            target(1, ClientType::Ios, &alice_old, 1, 1),
            target(2, ClientType::Ios, &bob_old, 1, 1),
        ],
    )
    .await;
    assert_eq!(codes, vec![0, 0]);
    wait_until("both verdicts", || async {
        ps.metric("dead_tokens_removed_total").await == 1.0
            && ps.metric("dead_tokens_kept_total").await == 1.0
    })
    .await;
    assert_eq!(tokens(&db_state, &[1, 2]).await, vec![(2, bob_new)]);
    ps.stop().await;
}
