//! The real db_proxy_server over SQLite in a temp dir, with real route_servers: the suite as
//! clients see it, minus login_server's HTTP step.

use std::sync::Arc;
use std::time::Duration;

use db_proxy_server::{DbProxy, Listeners as DbListeners, Shared};
use im_common::CancellationToken;
use im_proto::base::{ClientType, GroupType, MsgType};
use im_proto::cid;
use im_proto::client::{ClientError, LoginParams};
use im_proto::group::ImGroupCreateReq;
use im_proto::login::ImDeviceTokenReq;
use im_proto::message::{
    ImGetMsgListReq, ImMsgDataReadAck, ImMsgDataReadNotify, ImUnreadMsgCntReq,
};
use im_storage::config::SqliteConfig;
use im_storage::{NewUser, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::harness::*;

/// The password of every seeded user.
const PW: &str = "secret-pw";

pub struct RealDb {
    pub addr: String,
    shutdown: CancellationToken,
    _shared: Arc<Shared<SqliteStore>>,
    _dir: tempfile::TempDir,
}

impl Drop for RealDb {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// db_proxy_server over a fresh SQLite file with alice (1), bob (2), carol (3), dave (4).
pub async fn real_db() -> RealDb {
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
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap().to_string();
    let proxy = DbProxy::new(config, store).unwrap();
    let shared = proxy.shared().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(proxy.serve(
        DbListeners {
            main_tls: None,
            main,
            admin: None,
            metrics: None,
        },
        shutdown.clone(),
    ));
    RealDb {
        addr,
        shutdown,
        _shared: shared,
        _dir: dir,
    }
}

pub async fn user(addr: &str, name: &str, ct: ClientType) -> Client {
    let start = std::time::Instant::now();
    loop {
        let (c, ev) = connect(addr).await;
        match c
            .login(&LoginParams::new(name, PW).with_client_type(ct))
            .await
        {
            Ok(res) => {
                let id = res.user_info.as_ref().map_or(0, |u| u.user_id);
                return Client { c, ev, id, res };
            }
            Err(ClientError::LoginRefused { code: 3, .. }) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("login of {name}: {e}"),
        }
    }
}

async fn cluster(db: &RealDb, route: &Route, push: Option<&FakePush>) -> (Ms, Ms) {
    let mk = || {
        let mut c = config(&db.addr, &[&route.addr]);
        if let Some(p) = push {
            c.push_servers = vec![p.addr.clone()];
        }
        c
    };
    let ms1 = Ms::start(mk()).await;
    let ms2 = Ms::start(mk()).await;
    for ms in [&ms1, &ms2] {
        ms.wait_links("route_server", 1).await;
        ms.wait_links("db_proxy_server", 2).await;
    }
    (ms1, ms2)
}

#[tokio::test]
async fn logins_are_really_checked() {
    let db = real_db().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = user(&ms.addr, "alice", ClientType::Windows).await;
    assert_eq!(
        alice.res.user_info.as_ref().unwrap().user_nick_name,
        "nick-alice"
    );
    for (name, pw) in [("alice", "wrong"), ("mallory", PW)] {
        let (c, _ev) = connect(&ms.addr).await;
        match c.login(&LoginParams::new(name, pw)).await {
            Err(ClientError::LoginRefused { code: 6, .. }) => {}
            other => panic!("{name}: expected refusal 6, got {other:?}"),
        }
    }
    ms.stop().await;
}

#[tokio::test]
async fn chat_unread_history_and_read_across_servers() {
    let db = real_db().await;
    let route = Route::start().await;
    let (ms1, ms2) = cluster(&db, &route, None).await;
    let alice = user(&ms1.addr, "alice", ClientType::Windows).await;
    let (a, b) = (alice.id, 2);
    // bob is offline: stored, counted as unread.
    for i in 1..=2 {
        let ack = alice
            .send(&msg(a, b, MsgType::SingleText, &format!("m{i}")))
            .await;
        assert_eq!(ack.msg_id, i);
    }
    let mut bob = user(&ms2.addr, "bob", ClientType::Windows).await;
    let mut bob_phone = user(&ms1.addr, "bob", ClientType::Android).await;
    let unread = bob
        .c
        .request(&ImUnreadMsgCntReq {
            user_id: 0,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(unread.total_cnt, 2);
    let history = bob
        .c
        .request(&ImGetMsgListReq {
            user_id: 0,
            session_type: 1,
            session_id: a,
            msg_id_begin: 0,
            msg_cnt: 10,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(
        history
            .msg_list
            .iter()
            .map(|m| m.msg_id)
            .collect::<Vec<_>>(),
        vec![2, 1]
    );
    // Live now: delivered on both of bob's servers.
    probe(&alice, &mut bob).await;
    alice.send(&msg(a, b, MsgType::SingleText, "live")).await;
    for c in [&mut bob, &mut bob_phone] {
        let m = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!(m.msg_id, 3);
    }
    bob.c
        .send(&ImMsgDataReadAck {
            user_id: 0,
            session_id: a,
            msg_id: 3,
            session_type: 1,
        })
        .await
        .unwrap();
    let n = bob_phone.next::<ImMsgDataReadNotify>().await;
    assert_eq!((n.user_id, n.session_id, n.msg_id), (b, a, 3));
    wait_until("unread cleared", || async {
        bob.c
            .request(&ImUnreadMsgCntReq {
                user_id: 0,
                attach_data: None,
            })
            .await
            .unwrap()
            .total_cnt
            == 0
    })
    .await;
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn a_new_group_over_two_servers_and_its_push() {
    let db = real_db().await;
    let route = Route::start().await;
    let push = FakePush::start().await;
    let (ms1, ms2) = cluster(&db, &route, Some(&push)).await;
    ms1.wait_links("push_server", 1).await;
    let mut alice = user(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = user(&ms1.addr, "bob", ClientType::Windows).await;
    let mut carol = user(&ms2.addr, "carol", ClientType::Windows).await;
    // dave registers a push token from his phone, then goes away without logging out.
    {
        let dave = user(&ms2.addr, "dave", ClientType::Ios).await;
        dave.c
            .request(&ImDeviceTokenReq {
                user_id: 0,
                device_token: "ab".repeat(32),
                client_type: None,
                attach_data: None,
            })
            .await
            .unwrap();
        dave.c.heartbeat().await.unwrap();
        dave.c.close();
    }
    // ms2 saw dave go (and told route_server, which then knows his phone is gone).
    wait_until("dave's phone is gone", || async {
        ms2.stats()
            .await
            .connections
            .iter()
            .all(|c| c.client_type != Some(ClientType::Ios as u32))
    })
    .await;
    let created = alice
        .c
        .request(&ImGroupCreateReq {
            user_id: 0,
            group_type: GroupType::Tmp as i32,
            group_name: "trio".to_owned(),
            group_avatar: String::new(),
            member_id_list: vec![1, 2, 3, 4],
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(created.result_code, 0);
    let g = created.group_id.unwrap();
    let ack = alice
        .send(&msg(1, g, MsgType::GroupText, "hello group"))
        .await;
    assert_eq!((ack.session_id, ack.msg_id, ack.session_type), (g, 1, 2));
    for c in [&mut bob, &mut carol] {
        let m = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!((m.from_user_id, m.to_session_id, m.msg_id), (1, g, 1));
    }
    for c in [&mut alice, &mut bob, &mut carol] {
        c.nothing_of(cid::CID_MSG_DATA).await;
    }
    wait_until("dave's push", || async { push.requests().len() == 1 }).await;
    tokio::time::sleep(QUIET).await;
    let reqs = push.requests();
    assert_eq!(reqs.len(), 1, "one push for the message");
    assert_eq!(reqs[0].flash, "nick-alice:hello group");
    let t: Vec<(u32, String)> = reqs[0]
        .user_token_list
        .iter()
        .map(|t| (t.user_id, t.token.clone()))
        .collect();
    assert_eq!(t, vec![(4, "ab".repeat(32))]);
    ms1.stop().await;
    ms2.stop().await;
}

/// A measurement, not a check (run with `--ignored --nocapture`): pipelined messages from
/// several senders through one msg_server into db_proxy_server on SQLite (default
/// durability), each acked and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints figures"]
async fn measure_stored_chat_throughput() {
    let db = real_db().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.msg_rate_limit_per_sec = 0;
    cfg.request_timeout_ms = 30_000;
    let ms = Ms::start(cfg).await;
    let mut dave = user(&ms.addr, "dave", ClientType::Windows).await;
    let mut senders = Vec::new();
    for name in ["alice", "bob", "carol"] {
        senders.push(user(&ms.addr, name, ClientType::Windows).await);
    }
    // One at a time first: the latency of a single message on an idle server.
    let mut lat: Vec<u128> = Vec::new();
    for _ in 0..200 {
        let t = std::time::Instant::now();
        senders[0]
            .send(&msg(senders[0].id, dave.id, MsgType::SingleText, "one"))
            .await;
        lat.push(t.elapsed().as_micros());
        dave.next_pdu(cid::CID_MSG_DATA).await;
    }
    lat.sort_unstable();
    eprintln!(
        "one message at a time (client send -> ack, SQLite synchronous=FULL): p50 {} us, p99 {} us",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    const PER: u32 = 2_000;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for s in &senders {
        let c = s.c.clone();
        let m = msg(
            s.id,
            dave.id,
            MsgType::SingleText,
            "benchmark text of a typical length",
        );
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            for _ in 0..PER {
                let (c, m) = (c.clone(), m.clone());
                waits.push(tokio::spawn(async move { c.request(&m).await.is_ok() }));
            }
            let mut ok = 0u32;
            for w in waits {
                ok += u32::from(w.await.unwrap());
            }
            ok
        }));
    }
    let total = PER * senders.len() as u32;
    for _ in 0..total {
        dave.next_pdu(cid::CID_MSG_DATA).await;
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let lat = ms.stats().await.ack_latency.unwrap();
    eprintln!(
        "{total} stored messages from 3 senders: {acked} acked, delivered in {secs:.2} s = {:.0} msg/s; \
         ack latency p50 {} us, p99 {} us (all sent at once, so mostly queueing)",
        f64::from(total) / secs,
        lat.p50_micros.unwrap_or(0),
        lat.p99_micros.unwrap_or(0)
    );
    assert_eq!(acked, total);
    ms.stop().await;
}
