//! Several msg_servers through real route_servers: routing, groups, kicks across servers,
//! presence, a route_server restart, push, admin.

use std::time::Duration;

use im_proto::admin::{
    AdminResult, ImAdminConnListReq, ImAdminDrainReq, ImAdminKickUserReq, ServerState,
};
use im_proto::base::{ClientType, KickReasonType, MsgType};
use im_proto::buddy::{ImUserStatNotify, ImUsersStatReq};
use im_proto::cid;
use im_proto::login::ImKickUser;
use tokio::net::TcpListener;

use crate::fake_db::FakeDb;
use crate::harness::*;

/// Two msg_servers on one db and one route_server, both registered.
async fn pair(db: &FakeDb, route: &Route) -> (Ms, Ms) {
    let ms1 = Ms::start(config(&db.addr, &[&route.addr])).await;
    let ms2 = Ms::start(config(&db.addr, &[&route.addr])).await;
    ms1.wait_links("route_server", 1).await;
    ms2.wait_links("route_server", 1).await;
    (ms1, ms2)
}

#[tokio::test]
async fn single_chat_across_two_msg_servers() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &route).await;
    let alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut alice_phone = login(&ms2.addr, "alice", ClientType::Android).await;
    let mut bob = login(&ms2.addr, "bob", ClientType::Windows).await;
    // route_server learns about ms2's users through status updates.
    probe(&alice, &mut bob).await;
    let ack = alice
        .send(&msg(1, 2, MsgType::SingleText, "over there"))
        .await;
    assert_eq!(ack.msg_id, 1);
    for c in [&mut bob, &mut alice_phone] {
        let got = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!((got.from_user_id, got.to_session_id, got.msg_id), (1, 2, 1));
    }
    bob.nothing_of(cid::CID_MSG_DATA).await;
    assert!(ms2.metric("routed_in_total").await >= 1.0);
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn group_message_reaches_each_member_once_across_servers() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &route).await;
    let mut alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms1.addr, "bob", ClientType::Windows).await;
    let mut carol = login(&ms2.addr, "carol", ClientType::Windows).await;
    let mut dave = login(&ms2.addr, "dave", ClientType::Windows).await;
    for i in 1..=2u32 {
        let ack = alice
            .send(&msg(1, 100, MsgType::GroupText, &format!("hi all {i}")))
            .await;
        assert_eq!((ack.session_id, ack.msg_id, ack.session_type), (100, i, 2));
        for c in [&mut bob, &mut carol] {
            let got = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
            assert_eq!(
                (got.from_user_id, got.to_session_id, got.msg_id),
                (1, 100, i)
            );
        }
    }
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.nothing_of(cid::CID_MSG_DATA).await;
    }
    // Each msg_server asked db_proxy for the members once, not once per message.
    assert_eq!(ms1.metric("group_fetches_total").await, 1.0);
    assert_eq!(ms2.metric("group_fetches_total").await, 1.0);
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn duplicate_login_on_another_server_kicks_the_old_session() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &route).await;
    let mut old = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut phone = login(&ms1.addr, "alice", ClientType::Ios).await;
    wait_pc_online(&phone, 1).await;
    let _new = login(&ms2.addr, "alice", ClientType::Mac).await;
    let kick = old.next::<ImKickUser>().await;
    assert_eq!(
        kick.kick_reason,
        KickReasonType::KickReasonDuplicateUser as i32
    );
    tokio::time::timeout(WAIT, old.c.closed()).await.unwrap();
    phone.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    phone.c.heartbeat().await.unwrap();
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn presence_notifies_reach_pc_clients_only() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &route).await;
    let mut bob_pc = login(&ms2.addr, "bob", ClientType::Windows).await;
    let mut bob_phone = login(&ms2.addr, "bob", ClientType::Android).await;
    let alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    // bob's own login is announced too; wait for alice's.
    loop {
        let n = bob_pc.next::<ImUserStatNotify>().await;
        if n.user_stat.user_id == 1 {
            assert_eq!(n.user_stat.status, 1);
            break;
        }
    }
    bob_phone
        .nothing_of(cid::CID_BUDDY_LIST_STATUS_NOTIFY)
        .await;
    // Status queries go to route_server and come back with the client's seq.
    let st = alice
        .c
        .request(&ImUsersStatReq {
            user_id: 0,
            user_id_list: vec![2, 4],
            attach_data: None,
        })
        .await
        .unwrap();
    let stats: Vec<(u32, i32)> = st
        .user_stat_list
        .iter()
        .map(|s| (s.user_id, s.status))
        .collect();
    assert_eq!(stats, vec![(2, 1), (4, 2)]);
    assert_eq!(st.attach_data, None);
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn messages_sent_while_the_route_server_restarts_are_delivered_once() {
    let db = FakeDb::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let route_addr = listener.local_addr().unwrap();
    let route = Route::start_on(listener).await;
    let (ms1, ms2) = pair(&db, &route).await;
    let alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms2.addr, "bob", ClientType::Windows).await;
    probe(&alice, &mut bob).await;
    let ack = alice.send(&msg(1, 2, MsgType::SingleText, "before")).await;
    assert_eq!(ack.msg_id, 1);
    check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await);

    route.stop().await;
    // Acked while no route_server runs: stored, so they must still arrive.
    for i in 2..=4 {
        let ack = alice
            .send(&msg(1, 2, MsgType::SingleText, &format!("during {i}")))
            .await;
        assert_eq!(ack.msg_id, i);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let _route = Route::start_on(TcpListener::bind(route_addr).await.unwrap()).await;
    let mut ids = Vec::new();
    for _ in 2..=4 {
        ids.push(check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await).msg_id);
    }
    eprintln!(
        "route_server restart: messages delivered {:?} after the restart",
        started.elapsed()
    );
    ids.sort_unstable();
    assert_eq!(ids, vec![2, 3, 4]);
    // The second resend pass and the first copy must not show up twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    bob.nothing_of(cid::CID_MSG_DATA).await;
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn offline_mobile_receivers_get_exactly_one_push() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let push = FakePush::start().await;
    let mut c1 = config(&db.addr, &[&route.addr]);
    c1.push_servers = vec![push.addr.clone()];
    let mut c2 = config(&db.addr, &[&route.addr]);
    c2.push_servers = vec![push.addr.clone()];
    let ms1 = Ms::start(c1).await;
    let ms2 = Ms::start(c2).await;
    for ms in [&ms1, &ms2] {
        ms.wait_links("route_server", 1).await;
        ms.wait_links("push_server", 1).await;
    }
    db.with(|s| {
        s.tokens
            .insert(2, (ClientType::Ios as i32, "tok-bob".into()));
        s.tokens
            .insert(3, (ClientType::Android as i32, "tok-carol".into()));
        s.tokens
            .insert(1, (ClientType::Ios as i32, "tok-alice".into()));
    });
    let alice = login(&ms1.addr, "alice", ClientType::Windows).await;

    // bob is offline everywhere: one push, the decrypted text after the sender's nick.
    alice.send(&msg(1, 2, MsgType::SingleText, "hello")).await;
    wait_until("a push", || async { push.requests().len() == 1 }).await;
    let p = &push.requests()[0];
    assert_eq!(p.flash, "alice-nick:hello");
    assert_eq!(p.data, r#"{"msg_type":1,"from_id":1}"#);
    let targets: Vec<(u32, &str, u32)> = p
        .user_token_list
        .iter()
        .map(|t| (t.user_id, t.token.as_str(), t.push_type))
        .collect();
    assert_eq!(targets, vec![(2, "tok-bob", 1)]);

    // bob's phone is online on the other msg_server: no push.
    let mut bob_phone = login(&ms2.addr, "bob", ClientType::Ios).await;
    probe(&alice, &mut bob_phone).await;
    alice
        .send(&msg(1, 2, MsgType::SingleText, "are you there"))
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(push.requests().len(), 1);

    // Group: one request for the message, muted members and online phones left out, the
    // sender's own token never included; carol's PC online makes push_type 2.
    let mut carol_pc = login(&ms2.addr, "carol", ClientType::Windows).await;
    probe(&alice, &mut carol_pc).await;
    alice
        .send(&msg(
            1,
            100,
            MsgType::GroupText,
            "一二三四五六七八九十一二三四五六七八九十",
        ))
        .await;
    wait_until("the group push", || async { push.requests().len() == 2 }).await;
    tokio::time::sleep(QUIET).await;
    let all = push.requests();
    assert_eq!(all.len(), 2, "one push per message, not one per msg_server");
    let g = &all[1];
    let targets: Vec<(u32, u32)> = g
        .user_token_list
        .iter()
        .map(|t| (t.user_id, t.push_type))
        .collect();
    assert_eq!(targets, vec![(3, 2)]);
    assert_eq!(g.data, r#"{"msg_type":17,"from_id":1,"group_id":100}"#);
    // Cut at 37 bytes on a character boundary, then "...".
    assert!(g.flash.ends_with("..."), "{}", g.flash);
    let body = g.flash.trim_end_matches("...");
    assert!(
        body.len() <= 37 && body.starts_with("alice-nick:一"),
        "{}",
        g.flash
    );

    db.with(|s| s.mute(100, 3));
    alice.send(&msg(1, 100, MsgType::GroupText, "muted")).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(push.requests().len(), 2, "carol muted the group");
    assert_eq!(ms2.metric("pushes_total").await, 0.0);
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn admin_lists_kicks_and_drains() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let mut alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let bob = login(&ms.addr, "bob", ClientType::Windows).await;
    let mut bob2 = login(&ms.addr, "bob", ClientType::Android).await;
    let admin = ms.admin().await;

    let stats = ms.stats().await;
    assert_eq!(stats.state, Some(ServerState::Up as i32));
    assert_eq!(stats.logins_total, Some(3));
    assert!(
        stats
            .upstreams
            .iter()
            .any(|l| l.kind.as_deref() == Some("db_proxy_server"))
    );
    let list = admin
        .request(&ImAdminConnListReq {
            offset: None,
            limit: None,
            user_id: Some(2),
        })
        .await
        .unwrap();
    assert_eq!(list.conns.len(), 2);
    assert!(list.conns.iter().all(|c| c.pending_acks == Some(0)));

    let k = admin
        .request(&ImAdminKickUserReq {
            user_id: Some(2),
            client_type: Some(ClientType::Android as u32),
        })
        .await
        .unwrap();
    assert_eq!(
        (k.result_code, k.kicked),
        (Some(AdminResult::AdminOk as i32), Some(1))
    );
    let kick = bob2.next::<ImKickUser>().await;
    assert_eq!(kick.user_id, 2);
    tokio::time::timeout(WAIT, bob2.c.closed()).await.unwrap();
    bob.c.heartbeat().await.unwrap();

    let d = admin
        .request(&ImAdminDrainReq {
            msg_server: None,
            undrain: None,
            close_per_sec: Some(100),
        })
        .await
        .unwrap();
    assert_eq!(d.result_code, Some(AdminResult::AdminOk as i32));
    tokio::time::timeout(WAIT, alice.c.closed()).await.unwrap();
    tokio::time::timeout(WAIT, bob.c.closed()).await.unwrap();
    assert_eq!(ms.stats().await.state, Some(ServerState::Draining as i32));
    alice.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    ms.stop().await;
}
