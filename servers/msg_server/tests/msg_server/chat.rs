//! Messages on one msg_server: store, ack, delivery, read acks, limits, store failures,
//! relayed requests (FLOWS.md 5-9, 13).

use std::time::Duration;

use im_proto::base::{ClientType, GroupType, MsgType, SessionType};
use im_proto::buddy::ImUsersInfoReq;
use im_proto::file::ImFileReq;
use im_proto::group::ImGroupCreateReq;
use im_proto::message::{
    ImGetMsgListReq, ImMsgDataAck, ImMsgDataReadAck, ImMsgDataReadNotify, ImUnreadMsgCntReq,
};
use im_proto::switch_service::Imp2pCmdMsg;
use im_proto::{Pdu, cid};

use crate::fake_db::{FakeDb, StoreMode};
use crate::harness::*;

#[tokio::test]
async fn single_chat_on_one_server() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let mut alice_pc = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut alice_phone = login(&ms.addr, "alice", ClientType::Android).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;

    // The client's claims about the sender and the time are overwritten.
    let mut m = msg(99, 2, MsgType::SingleText, "hello bob");
    m.create_time = 12;
    let ack = alice_pc.send(&m).await;
    assert_eq!(
        ack,
        ImMsgDataAck {
            user_id: 1,
            session_id: 2,
            msg_id: 1,
            session_type: SessionType::Single as i32
        }
    );
    for c in [&mut bob, &mut alice_phone] {
        let got = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!((got.from_user_id, got.to_session_id, got.msg_id), (1, 2, 1));
        assert!(got.create_time > 12);
        assert_eq!(got.msg_data, m.msg_data);
    }
    // The sending connection gets only its ack.
    alice_pc.nothing_of(cid::CID_MSG_DATA).await;
    let stored = db.with(|s| s.messages.clone());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].from_user_id, 1);
    // Our private request tag travelled to db_proxy, never to clients.
    assert!(stored[0].attach_data.is_some());

    // A delivery ack is only counted.
    bob.c
        .send(&ImMsgDataAck {
            user_id: 2,
            session_id: 1,
            msg_id: 1,
            session_type: 1,
        })
        .await
        .unwrap();
    wait_until("the delivery ack is counted", || async {
        ms.metric("delivery_acks_total").await == 1.0
    })
    .await;
    assert_eq!(ms.metric("acks_total").await, 1.0);
    ms.stop().await;
}

#[tokio::test]
async fn offline_receiver_reads_later_and_the_read_reaches_its_other_devices() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    for i in 1..=2 {
        let ack = alice
            .send(&msg(1, 2, MsgType::SingleText, &format!("m{i}")))
            .await;
        assert_eq!(ack.msg_id, i);
    }
    let bob_pc = login(&ms.addr, "bob", ClientType::Windows).await;
    let mut bob_phone = login(&ms.addr, "bob", ClientType::Ios).await;
    let unread = bob_pc
        .c
        .request(&ImUnreadMsgCntReq {
            user_id: 0,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(unread.user_id, 2);
    assert_eq!(unread.total_cnt, 2);
    assert_eq!(unread.attach_data, None);
    let history = bob_pc
        .c
        .request(&ImGetMsgListReq {
            user_id: 0,
            session_type: 1,
            session_id: 1,
            msg_id_begin: 0,
            msg_cnt: 10,
            attach_data: None,
        })
        .await
        .unwrap();
    let ids: Vec<u32> = history.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![2, 1]);
    bob_pc
        .c
        .send(&ImMsgDataReadAck {
            user_id: 0,
            session_id: 1,
            msg_id: 2,
            session_type: 1,
        })
        .await
        .unwrap();
    let n = bob_phone.next::<ImMsgDataReadNotify>().await;
    assert_eq!(
        (n.user_id, n.session_id, n.msg_id, n.session_type),
        (2, 1, 2, 1)
    );
    wait_until("unread cleared", || async {
        db.with(|s| s.unread(2, 1)) == 0
    })
    .await;
    let unread = bob_pc
        .c
        .request(&ImUnreadMsgCntReq {
            user_id: 0,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(unread.total_cnt, 0);
    ms.stop().await;
}

#[tokio::test]
async fn bad_messages_are_refused_without_ack() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut empty = msg(1, 2, MsgType::SingleText, "");
    empty.msg_data = bytes::Bytes::new();
    alice.send_unacked(&empty).await;
    alice
        .send_unacked(&msg(1, 1, MsgType::SingleText, "me"))
        .await;
    alice
        .send_unacked(&msg(2, 2, MsgType::SingleText, "claims"))
        .await;
    let mut long = msg(1, 2, MsgType::SingleText, "");
    long.msg_data = bytes::Bytes::from(vec![b'A'; 4097]);
    alice.send_unacked(&long).await;
    let mut bad_type = msg(1, 2, MsgType::SingleText, "x");
    bad_type.msg_type = 7;
    alice.send_unacked(&bad_type).await;
    assert!(db.with(|s| s.messages.is_empty()));
    assert_eq!(ms.metric("msgs_refused_total").await, 4.0);
    // An undefined value of a required enum fails the proto2 check: dropped as undecodable.
    assert_eq!(ms.metric("decode_errors_total").await, 1.0);
    ms.stop().await;
}

#[tokio::test]
async fn messages_beyond_the_rate_limit_are_dropped() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.msg_rate_limit_per_sec = 5;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    for i in 0..30 {
        alice
            .c
            .send(&msg(1, 2, MsgType::SingleText, &format!("{i}")))
            .await
            .unwrap();
    }
    alice.c.heartbeat().await.unwrap();
    wait_until("the burst is handled", || async {
        ms.metric("msgs_in_total").await == 30.0
    })
    .await;
    let limited = ms.metric("rate_limited_total").await;
    let stored = db.with(|s| s.messages.len()) as f64;
    assert_eq!(limited + stored, 30.0);
    // A burst of 5 plus what refilled meanwhile.
    assert!((5.0..=10.0).contains(&stored), "{stored} stored");
    ms.stop().await;
}

#[tokio::test]
async fn a_failed_store_is_never_acked() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.request_timeout_ms = 300;
    cfg.store_attempts = 3;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;

    // msg_id 0: final, no retry, no ack, nothing delivered.
    db.with(|s| s.store_mode = StoreMode::Fail);
    alice
        .send_unacked(&msg(1, 2, MsgType::SingleText, "lost"))
        .await;
    assert_eq!(db.with(|s| s.store_requests), 1);

    // No answer at all: retried with the same request tag, then given up; no ack.
    db.with(|s| s.store_mode = StoreMode::Silent);
    let m = msg(1, 2, MsgType::SingleText, "silent");
    match alice.c.request_timeout(&m, Duration::from_secs(3)).await {
        Err(im_proto::client::ClientError::Timeout { .. }) => {}
        other => panic!("expected no ack, got {other:?}"),
    }
    assert_eq!(db.with(|s| s.store_requests), 4);
    bob.nothing_of(cid::CID_MSG_DATA).await;
    wait_until("failures counted", || async {
        ms.metric("store_failures_total").await == 2.0
    })
    .await;
    assert_eq!(ms.metric("store_retries_total").await, 2.0);

    // db_proxy gone: still no false ack.
    db.with(|s| s.store_mode = StoreMode::Ok);
    db.stop();
    alice
        .send_unacked(&msg(1, 2, MsgType::SingleText, "nobody home"))
        .await;
    bob.nothing_of(cid::CID_MSG_DATA).await;
    ms.stop().await;
}

#[tokio::test]
async fn p2p_commands_carry_the_authenticated_sender() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut alice_phone = login(&ms.addr, "alice", ClientType::Android).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;
    alice
        .c
        .send(&Imp2pCmdMsg {
            from_user_id: 3,
            to_user_id: 2,
            cmd_msg_data: "typing".to_owned(),
        })
        .await
        .unwrap();
    for c in [&mut bob, &mut alice_phone] {
        let got = c.next::<Imp2pCmdMsg>().await;
        assert_eq!((got.from_user_id, got.to_user_id), (1, 2));
        assert_eq!(got.cmd_msg_data, "typing");
    }
    ms.stop().await;
}

#[tokio::test]
async fn relayed_answers_keep_the_client_seq_and_lose_attach_data() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    // The fake db answers user info with a private attach_data.
    let req = Pdu::from_msg(
        &ImUsersInfoReq {
            user_id: 42,
            user_id_list: vec![2, 3],
            attach_data: Some(bytes::Bytes::from_static(b"client junk")),
        },
        0,
    );
    let rsp = alice
        .c
        .request_pdu(req, cid::CID_BUDDY_LIST_USER_INFO_RESPONSE, WAIT)
        .await
        .unwrap();
    let body = rsp.decode::<im_proto::buddy::ImUsersInfoRsp>().unwrap();
    assert_eq!(body.user_id, 1, "requests carry the authenticated user");
    assert_eq!(body.attach_data, None);
    assert_eq!(body.user_info_list.len(), 2);

    // File transfer is not configured: the failure answer of FLOWS.md 14.1 step 2.
    let f = alice
        .c
        .request(&ImFileReq {
            from_user_id: 9,
            to_user_id: 2,
            file_name: "a.txt".to_owned(),
            file_size: 3,
            trans_mode: 1,
        })
        .await
        .unwrap();
    assert_eq!((f.result_code, f.from_user_id, f.to_user_id), (1, 1, 2));

    // Clients may create temporary groups only; a NORMAL request is dropped (FLOWS.md 12.3).
    let normal = ImGroupCreateReq {
        user_id: 0,
        group_type: GroupType::Normal as i32,
        group_name: "official".to_owned(),
        group_avatar: String::new(),
        member_id_list: vec![1, 2],
        attach_data: None,
    };
    alice.c.send(&normal).await.unwrap();
    alice.c.heartbeat().await.unwrap();
    let tmp = ImGroupCreateReq {
        group_type: GroupType::Tmp as i32,
        ..normal
    };
    alice.c.send(&tmp).await.unwrap();
    wait_until("the temporary group request reaches db_proxy", || async {
        db.with(|s| s.commands.contains(&cid::CID_GROUP_CREATE_REQUEST))
    })
    .await;
    let creates = db.with(|s| {
        s.commands
            .iter()
            .filter(|c| **c == cid::CID_GROUP_CREATE_REQUEST)
            .count()
    });
    assert_eq!(creates, 1);
    ms.stop().await;
}

/// A measurement, not a check (run with `--ignored --nocapture`): pipelined single-chat
/// messages through one msg_server and the fake db_proxy, acked and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints figures"]
async fn measure_single_chat_throughput() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.msg_rate_limit_per_sec = 0;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;
    const N: u32 = 20_000;
    let frame = msg(
        1,
        2,
        MsgType::SingleText,
        "benchmark text of a typical length",
    );
    let start = std::time::Instant::now();
    let sender = {
        let c = alice.c.clone();
        tokio::spawn(async move {
            let mut waits = Vec::with_capacity(N as usize);
            for _ in 0..N {
                let c = c.clone();
                let m = frame.clone();
                waits.push(tokio::spawn(async move { c.request(&m).await.is_ok() }));
            }
            let mut ok = 0;
            for w in waits {
                ok += u32::from(w.await.unwrap());
            }
            ok
        })
    };
    for _ in 0..N {
        bob.next_pdu(cid::CID_MSG_DATA).await;
    }
    let acked = sender.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{N} messages: {acked} acked, all delivered in {secs:.2} s = {:.0} msg/s; ack p50/p99 {:?}",
        f64::from(N) / secs,
        ms.stats()
            .await
            .ack_latency
            .map(|l| (l.p50_micros.unwrap_or(0), l.p99_micros.unwrap_or(0)))
    );
    assert_eq!(acked, N);
    ms.stop().await;
}
