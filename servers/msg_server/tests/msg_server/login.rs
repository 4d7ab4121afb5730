//! Login, the pre-login rules, timers, duplicate logins, logout (FLOWS.md 1.1, 4, 4.1, 4.2).

use std::time::Duration;

use bytes::Bytes;
use im_proto::base::{ClientType, KickReasonType, MsgType};
use im_proto::client::{ClientError, LoginParams};
use im_proto::login::{ImDeviceTokenReq, ImKickPcClientReq, ImKickUser, ImLoginReq, ImLogoutReq};
use im_proto::message::ImClientTimeReq;
use im_proto::{Header, Pdu, cid};
use tokio::io::AsyncWriteExt;

use crate::fake_db::{FakeDb, PASSWORD};
use crate::harness::*;

#[tokio::test]
async fn login_succeeds_and_refuses_wrong_password_and_unknown_user() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    assert_eq!(alice.id, 1);
    assert_eq!(alice.res.result_code, 0);
    assert_eq!(alice.res.online_status, Some(1));
    let info = alice.res.user_info.clone().unwrap();
    assert_eq!(info.user_nick_name, "alice-nick");
    assert!(alice.res.server_time > 0);

    for (name, pw) in [("alice", "wrong"), ("nobody", PASSWORD)] {
        let (c, _ev) = connect(&ms.addr).await;
        match c.login(&LoginParams::new(name, pw)).await {
            Err(ClientError::LoginRefused { code, .. }) => assert_eq!(code, 6, "{name}"),
            other => panic!("{name}/{pw}: expected a refusal, got {other:?}"),
        }
        // The refused connection is closed after the answer.
        tokio::time::timeout(WAIT, c.closed()).await.unwrap();
    }
    assert_eq!(ms.metric("logins_total").await, 1.0);
    assert_eq!(ms.metric("login_failures_total").await, 2.0);
    ms.stop().await;
}

#[tokio::test]
async fn only_login_and_heartbeat_before_login() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    // Make sure the db link is up so that the login below does not race it.
    drop(login(&ms.addr, "dave", ClientType::Windows).await);
    let (c, _ev) = connect(&ms.addr).await;
    // A command before login gets nothing.
    match c.request_timeout(&ImClientTimeReq {}, QUIET).await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected no answer before login, got {other:?}"),
    }
    let m = msg(1, 2, MsgType::SingleText, "sneaky");
    match c.request_timeout(&m, QUIET).await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected no ack before login, got {other:?}"),
    }
    // The heartbeat is echoed.
    c.heartbeat().await.unwrap();
    assert!(ms.metric("pre_login_dropped_total").await >= 2.0);
    assert!(db.with(|s| s.messages.is_empty()), "nothing was stored");
    // The same connection can still log in, and then the time request works.
    let res = c.login(&LoginParams::new("alice", PASSWORD)).await.unwrap();
    assert_eq!(res.result_code, 0);
    let t = c.request(&ImClientTimeReq {}).await.unwrap();
    assert!(t.server_time > 0);
    // A second login request on the same connection is ignored.
    let again = ImLoginReq {
        user_name: "bob".to_owned(),
        password: im_proto::crypto::password_digest(PASSWORD),
        online_status: 1,
        client_type: 1,
        client_version: None,
    };
    match c.request_timeout(&again, QUIET).await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("second login must be ignored, got {other:?}"),
    }
    c.heartbeat().await.unwrap();
    ms.stop().await;
}

#[tokio::test]
async fn connections_that_do_not_log_in_are_closed() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.login_timeout_secs = 0.3;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let (idle, _ev) = connect(&ms.addr).await;
    tokio::time::timeout(Duration::from_secs(3), idle.closed())
        .await
        .expect("an unauthenticated connection is closed after the login timeout");
    // A logged-in connection outlives the deadline.
    tokio::time::sleep(Duration::from_millis(400)).await;
    alice.c.heartbeat().await.unwrap();
    ms.stop().await;
}

#[tokio::test]
async fn idle_clients_are_closed_by_class() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.idle_pc_secs = 0.4;
    cfg.idle_mobile_secs = 30.0;
    let ms = Ms::start(cfg).await;
    let pc = login(&ms.addr, "alice", ClientType::Mac).await;
    let phone = login(&ms.addr, "bob", ClientType::Android).await;
    tokio::time::timeout(Duration::from_secs(3), pc.c.closed())
        .await
        .expect("a silent PC client is closed after idle_pc_secs");
    phone.c.heartbeat().await.unwrap();
    ms.stop().await;
}

async fn expect_kicked(c: &mut Client, reason: KickReasonType) {
    let kick = c.next::<ImKickUser>().await;
    assert_eq!(kick.user_id, c.id);
    assert_eq!(kick.kick_reason, reason as i32);
    tokio::time::timeout(WAIT, c.c.closed())
        .await
        .expect("the kicked connection is closed");
}

#[tokio::test]
async fn duplicate_login_kicks_and_closes_the_older_session_of_the_same_class() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let mut pc1 = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut android = login(&ms.addr, "alice", ClientType::Android).await;
    // PC and mobile coexist.
    pc1.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    let mut pc2 = login(&ms.addr, "alice", ClientType::Mac).await;
    expect_kicked(&mut pc1, KickReasonType::KickReasonDuplicateUser).await;
    android.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    let _ios = login(&ms.addr, "alice", ClientType::Ios).await;
    expect_kicked(&mut android, KickReasonType::KickReasonDuplicateUser).await;
    pc2.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    pc2.c.heartbeat().await.unwrap();
    ms.stop().await;
}

#[tokio::test]
async fn mobile_kicks_pc() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let mut pc = login(&ms.addr, "alice", ClientType::Windows).await;
    let phone = login(&ms.addr, "alice", ClientType::Ios).await;
    // A PC asking is ignored.
    let bob_pc = login(&ms.addr, "bob", ClientType::Windows).await;
    match bob_pc
        .c
        .request_timeout(&ImKickPcClientReq { user_id: 2 }, QUIET)
        .await
    {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("a PC cannot kick PCs, got {other:?}"),
    }
    let rsp = phone
        .c
        .request(&ImKickPcClientReq { user_id: 99 })
        .await
        .unwrap();
    assert_eq!((rsp.user_id, rsp.result_code), (1, 0));
    expect_kicked(&mut pc, KickReasonType::KickReasonMobileKick).await;
    phone.c.heartbeat().await.unwrap();
    ms.stop().await;
}

#[tokio::test]
async fn logout_answers_then_closes_and_clears_the_push_token() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let phone = login(&ms.addr, "bob", ClientType::Android).await;
    let rsp = phone
        .c
        .request(&ImDeviceTokenReq {
            user_id: 77,
            device_token: "tok".to_owned(),
            client_type: None,
            attach_data: None,
        })
        .await
        .unwrap();
    // The original left user_id unset (WEAKNESSES 17).
    assert_eq!(rsp.user_id, 2);
    wait_until("the token is stored", || async {
        db.with(|s| s.tokens.get(&2).cloned()) == Some((ClientType::Android as i32, "tok".into()))
    })
    .await;
    let out = phone.c.request(&ImLogoutReq {}).await.unwrap();
    assert_eq!(out.result_code, 0);
    tokio::time::timeout(WAIT, phone.c.closed()).await.unwrap();
    wait_until("the token is cleared", || async {
        db.with(|s| !s.tokens.contains_key(&2))
    })
    .await;
    ms.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.login_failures_per_addr = 3;
    let ms = Ms::start(cfg).await;
    drop(login(&ms.addr, "dave", ClientType::Windows).await);
    for _ in 0..3 {
        let (c, _ev) = connect(&ms.addr).await;
        let r = c.login(&LoginParams::new("alice", "wrong")).await;
        assert!(matches!(r, Err(ClientError::LoginRefused { code: 6, .. })));
    }
    let validations = || {
        db.with(|s| {
            s.commands
                .iter()
                .filter(|c| **c == cid::CID_OTHER_VALIDATE_REQ)
                .count()
        })
    };
    let before = validations();
    // Even the right password is refused now, without asking db_proxy.
    let (c, _ev) = connect(&ms.addr).await;
    let r = c.login(&LoginParams::new("alice", PASSWORD)).await;
    assert!(
        matches!(r, Err(ClientError::LoginRefused { code: 6, .. })),
        "{r:?}"
    );
    assert_eq!(validations(), before);
    assert_eq!(ms.metric("login_throttled_total").await, 1.0);
    ms.stop().await;
}

#[tokio::test]
async fn malformed_input_harms_only_its_own_connection() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;

    // A body that does not decode: dropped, connection kept.
    let bad = Pdu::new(
        Header::new(3, cid::CID_MSG_DATA, 5),
        Bytes::from_static(&[0x0a, 0xff, 0xff]),
    );
    alice.c.send_pdu(&bad).await.unwrap();
    alice.c.heartbeat().await.unwrap();

    // Framing errors (length < 16, length over the cap) close only that connection.
    for header in [
        [0u8, 0, 0, 8, 0, 1, 0, 0, 0, 7, 7, 1, 0, 0, 0, 0],
        [0x7f, 0, 0, 0, 0, 1, 0, 0, 0, 3, 3, 1, 0, 0, 0, 0],
    ] {
        let mut raw = tokio::net::TcpStream::connect(&ms.addr).await.unwrap();
        raw.write_all(&header).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut raw, &mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the bad connection is closed");
    }

    let ack = alice
        .send(&msg(1, 2, MsgType::SingleText, "still fine"))
        .await;
    assert_eq!(ack.msg_id, 1);
    let got = check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await);
    assert_eq!(got.msg_id, 1);
    assert!(ms.metric("decode_errors_total").await >= 1.0);
    ms.stop().await;
}

#[tokio::test]
async fn db_proxy_stop_receiving_takes_its_links_out_of_use() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    ms.wait_links("db_proxy_server", 2).await;
    // FLOWS.md 1.5: no new requests on a stopped link; with every link stopped, logins are
    // refused as "no db_proxy" and messages are not acked.
    db.stop_receiving();
    wait_until("logins refused", || async {
        let (c, _ev) = connect(&ms.addr).await;
        matches!(
            c.login(&LoginParams::new("bob", PASSWORD)).await,
            Err(ClientError::LoginRefused { code: 3, .. })
        )
    })
    .await;
    let before = db.with(|s| s.store_requests);
    alice
        .send_unacked(&msg(1, 2, MsgType::SingleText, "x"))
        .await;
    assert_eq!(db.with(|s| s.store_requests), before);
    ms.stop().await;
}
