//! Bounds, slow readers, deadlines and the connection limit (issue: reliability and security).
//!
//! Every list a client controls is bounded: answered with result_code 1 where the reply has
//! one (group create and member change), otherwise dropped, logged and counted; a client that
//! never reads is closed when its outbound queue is full; a connection that never logs in
//! is closed at the login deadline even if it sends heartbeats; the connection after
//! `max_connections` is refused and counted.

use std::time::Duration;

use im_proto::base::{ClientType, GroupModifyType, GroupType, GroupVersionInfo, MsgType};
use im_proto::buddy::{ImUsersInfoReq, ImUsersStatReq};
use im_proto::client::ClientError;
use im_proto::group::{ImGroupChangeMemberReq, ImGroupCreateReq, ImGroupInfoListReq};
use im_proto::login::ImLoginReq;
use im_proto::message::ImGetMsgByIdReq;
use im_proto::switch_service::Imp2pCmdMsg;
use im_proto::{Pdu, cid};
use msg_server::send::{MAX_AUDIO_BYTES, MAX_TEXT_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_db::{FakeDb, PASSWORD};
use crate::harness::*;

/// Expects no answer to `req` within [`QUIET`].
async fn no_answer<M: im_proto::command::Request + std::fmt::Debug>(c: &Client, req: &M) {
    match c.c.request_timeout(req, QUIET).await {
        Err(ClientError::Timeout { .. }) => {}
        Err(e) => panic!("expected no answer to {req:?}, got {e}"),
        Ok(_) => panic!("expected no answer to {req:?}, got one"),
    }
}

fn forwarded(db: &FakeDb, command: u16) -> usize {
    db.with(|s| s.commands.iter().filter(|c| **c == command).count())
}

#[tokio::test]
async fn lists_over_their_bounds_are_refused_visibly() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.max_user_ids_per_request = 10;
    cfg.max_group_ids_per_request = 3;
    cfg.max_msg_ids_per_request = 5;
    cfg.max_group_members_per_request = 4;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;
    let ids = |n: u32| (1..=n).collect::<Vec<u32>>();

    // User info: at the bound it is relayed and answered, one over it is dropped.
    let at = ImUsersInfoReq {
        user_id: 0,
        user_id_list: ids(10),
        attach_data: None,
    };
    let rsp = alice.c.request(&at).await.unwrap();
    assert_eq!(rsp.user_info_list.len(), 4, "the four users of the fake db");
    let over = ImUsersInfoReq {
        user_id_list: ids(11),
        ..at
    };
    no_answer(&alice, &over).await;
    assert_eq!(forwarded(&db, cid::CID_BUDDY_LIST_USER_INFO_REQUEST), 1);

    // Status query, group info, messages by id: no result code, dropped and counted.
    let stat = ImUsersStatReq {
        user_id: 0,
        user_id_list: ids(11),
        attach_data: None,
    };
    no_answer(&alice, &stat).await;
    let groups = ImGroupInfoListReq {
        user_id: 0,
        group_version_list: (1..=4)
            .map(|g| GroupVersionInfo {
                group_id: g,
                version: 0,
            })
            .collect(),
        attach_data: None,
    };
    no_answer(&alice, &groups).await;
    let by_id = ImGetMsgByIdReq {
        user_id: 0,
        session_type: 1,
        session_id: 2,
        msg_id_list: ids(6),
        attach_data: None,
    };
    no_answer(&alice, &by_id).await;
    assert_eq!(forwarded(&db, cid::CID_GROUP_INFO_REQUEST), 0);
    assert_eq!(forwarded(&db, cid::CID_MSG_GET_BY_MSG_ID_REQ), 0);

    // Group create and member change: result_code 1, as db_proxy refuses a bad request.
    let create = ImGroupCreateReq {
        user_id: 0,
        group_type: GroupType::Tmp as i32,
        group_name: "too big".to_owned(),
        group_avatar: String::new(),
        member_id_list: ids(5),
        attach_data: None,
    };
    let rsp = alice.c.request(&create).await.unwrap();
    assert_eq!(rsp.result_code, 1);
    assert_eq!(rsp.group_id, None);
    let change = ImGroupChangeMemberReq {
        user_id: 0,
        change_type: GroupModifyType::Add as i32,
        group_id: 100,
        member_id_list: ids(5),
        attach_data: None,
    };
    let rsp = alice.c.request(&change).await.unwrap();
    assert_eq!((rsp.result_code, rsp.group_id), (1, 100));
    assert!(rsp.cur_user_id_list.is_empty());
    assert_eq!(forwarded(&db, cid::CID_GROUP_CREATE_REQUEST), 0);
    assert_eq!(forwarded(&db, cid::CID_GROUP_CHANGE_MEMBER_REQUEST), 0);

    // Bodies: text over 4096 bytes and audio over the client frame budget get no ack.
    let mut long = msg(1, 2, MsgType::SingleText, "");
    long.msg_data = bytes::Bytes::from(vec![b'A'; MAX_TEXT_BYTES + 1]);
    alice.send_unacked(&long).await;
    let mut audio = msg(1, 2, MsgType::SingleAudio, "");
    audio.msg_data = bytes::Bytes::from(vec![0u8; MAX_AUDIO_BYTES + 1]);
    alice.send_unacked(&audio).await;
    // The largest audio accepted is stored and reaches the receiver whole.
    audio.msg_data = bytes::Bytes::from(vec![7u8; MAX_AUDIO_BYTES]);
    let ack = alice.send(&audio).await;
    assert!(ack.msg_id > 0);
    let got = check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await);
    assert_eq!(got.msg_data.len(), MAX_AUDIO_BYTES);
    assert_eq!(db.with(|s| s.messages.len()), 1);

    // A P2P command over 64 KiB is not relayed; a small one is.
    let mut p2p = Imp2pCmdMsg {
        from_user_id: 1,
        to_user_id: 2,
        cmd_msg_data: "x".repeat(msg_server::client::MAX_P2P_CMD_BYTES + 1),
    };
    alice.c.send(&p2p).await.unwrap();
    p2p.cmd_msg_data = "typing".to_owned();
    alice.c.send(&p2p).await.unwrap();
    let got = bob.next::<Imp2pCmdMsg>().await;
    assert_eq!(
        got.cmd_msg_data, "typing",
        "the oversized command was dropped"
    );

    // user info, status, groups, msg ids, create, change, text, audio, p2p.
    assert_eq!(ms.metric("oversized_requests_total").await, 9.0);
    // The connection stays usable.
    alice.c.heartbeat().await.unwrap();
    ms.stop().await;
}

/// Logs `name` in over a raw socket that will never be read from.
async fn login_never_reading(addr: &str, name: &str) -> tokio::net::TcpStream {
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = ImLoginReq {
        user_name: name.to_owned(),
        password: im_proto::crypto::password_digest(PASSWORD),
        online_status: 1,
        client_type: ClientType::Windows as i32,
        client_version: None,
    };
    raw.write_all(&Pdu::from_msg(&req, 1).to_frame())
        .await
        .unwrap();
    raw
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_as_a_slow_consumer() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.msg_rate_limit_per_sec = 0;
    cfg.client_queue_limit_bytes = 512 << 10;
    let ms = Ms::start(cfg).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut bob = login_never_reading(&ms.addr, "bob").await;
    wait_until("bob is logged in", || async {
        ms.metric("logins_total").await == 2.0
    })
    .await;
    // 4 KiB bodies until bob's connection is closed: the kernel buffers fill, then the
    // 512 KiB queue. 16 MiB is far more than both.
    let mut body = msg(1, 2, MsgType::SingleText, "");
    body.msg_data = bytes::Bytes::from(vec![b'B'; MAX_TEXT_BYTES]);
    let mut sent = 0u32;
    while ms.metric("slow_consumer_disconnects_total").await < 1.0 {
        assert!(sent < 4096, "bob was never closed as a slow consumer");
        for _ in 0..64 {
            alice.send(&body).await;
            sent += 1;
        }
    }
    eprintln!(
        "slow consumer closed after {sent} messages of {} bytes",
        MAX_TEXT_BYTES
    );
    // bob's socket ends (after what the kernel had buffered) and his session is gone.
    let mut sink = vec![0u8; 1 << 16];
    let mut read = 0usize;
    let eof = tokio::time::timeout(WAIT, async {
        loop {
            match bob.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "bob's connection is closed");
    // Fewer bytes reached bob than were sent: the rest was dropped with the queue, never
    // buffered without bound.
    assert!(read < sent as usize * MAX_TEXT_BYTES, "{read} bytes read");
    wait_until("bob's session is gone", || async {
        ms.metric("sessions").await == 1.0
    })
    .await;
    // The sender and the server carry on.
    alice.c.heartbeat().await.unwrap();
    assert_eq!(ms.stats().await.slow_consumer_disconnects_total, Some(1));
    ms.stop().await;
}

#[tokio::test]
async fn heartbeats_do_not_extend_the_login_deadline() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.login_timeout_secs = 0.5;
    cfg.idle_pc_secs = 30.0;
    let ms = Ms::start(cfg).await;
    let (c, _ev) = connect(&ms.addr).await;
    let beating = async {
        loop {
            if c.heartbeat().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(beating, c.closed());
    })
    .await
    .expect("a connection sending only heartbeats is closed at the login deadline");
    ms.stop().await;
}

#[tokio::test]
async fn the_connection_after_max_connections_is_refused_and_counted() {
    let db = FakeDb::start().await;
    let mut cfg = config(&db.addr, &[]);
    cfg.max_connections = 2;
    let ms = Ms::start(cfg).await;
    let _alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let (_second, _ev) = connect(&ms.addr).await;
    // The third is accepted by the kernel and closed at once by the server.
    let mut third = tokio::net::TcpStream::connect(&ms.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .expect("the refused connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(ms.metric("connections_refused_total").await, 1.0);
    assert_eq!(ms.metric("connections").await, 2.0);
    ms.stop().await;
}
