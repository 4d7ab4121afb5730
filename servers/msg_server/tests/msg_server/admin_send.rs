//! Sending on a user's behalf from the admin port (IMAdminSendMsgReq): stored and delivered
//! like a client's message, answered with the msg_id only once stored, and the user's own
//! connections are left alone (they get the message as another device).

use im_proto::admin::{AdminResult, ImAdminSendMsgReq};
use im_proto::base::{ClientType, MsgType, SessionType};
use im_proto::cid;
use im_proto::message::ImMsgDataAck;

use crate::fake_db::{FakeDb, StoreMode};
use crate::harness::*;

fn req(from: u32, to: u32, t: MsgType, plain: &str) -> ImAdminSendMsgReq {
    ImAdminSendMsgReq {
        from_user_id: Some(from),
        to_session_id: Some(to),
        msg_type: Some(t as u32),
        msg_data: Some(text(plain)),
    }
}

#[tokio::test]
async fn admin_send_is_a_message_from_the_user() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let mut alice_pc = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut alice_phone = login(&ms.addr, "alice", ClientType::Android).await;
    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;
    let mut carol = login(&ms.addr, "carol", ClientType::Windows).await;
    let admin = ms.admin().await;

    let rsp = admin
        .request(&req(1, 2, MsgType::SingleText, "from the operator"))
        .await
        .unwrap();
    assert_eq!(rsp.result_code(), AdminResult::AdminOk, "{rsp:?}");
    assert_eq!(rsp.msg_id(), 1);
    // The receiver and every connection of the sender get it, as a delivery (seq 0).
    for c in [&mut bob, &mut alice_pc, &mut alice_phone] {
        let got = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!((got.from_user_id, got.to_session_id, got.msg_id), (1, 2, 1));
        assert_eq!(got.msg_data, text("from the operator"));
    }
    let stored = db.with(|s| s.messages.clone());
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].attach_data.is_some(),
        "tagged like a client's store"
    );

    // A group message: every member here, the sender's connections included.
    let rsp = admin
        .request(&req(1, 100, MsgType::GroupText, "to the group"))
        .await
        .unwrap();
    assert_eq!(rsp.result_code(), AdminResult::AdminOk, "{rsp:?}");
    for c in [&mut bob, &mut carol, &mut alice_pc, &mut alice_phone] {
        let got = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!((got.from_user_id, got.to_session_id), (1, 100));
    }

    // Alice's own clients were not disturbed: both still send and get acks.
    let ack = alice_pc
        .send(&msg(1, 2, MsgType::SingleText, "still here"))
        .await;
    assert_eq!(
        ack,
        ImMsgDataAck {
            user_id: 1,
            session_id: 2,
            msg_id: 2,
            session_type: SessionType::Single as i32
        }
    );
    let got = check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await);
    assert_eq!(got.msg_id, 2);
    alice_phone.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    assert_eq!(ms.metric("kicks_total").await, 0.0);

    // Refusals: checks as for a client, named; a failed store is no success.
    for (bad, what) in [
        (req(1, 1, MsgType::SingleText, "self"), "another user"),
        (req(0, 2, MsgType::SingleText, "x"), "from_user_id"),
        (
            ImAdminSendMsgReq {
                msg_type: Some(0x33),
                ..req(1, 2, MsgType::SingleText, "x")
            },
            "0x33",
        ),
    ] {
        let rsp = admin.request(&bad).await.unwrap();
        assert_eq!(rsp.result_code(), AdminResult::AdminBadRequest);
        assert!(rsp.result_string().contains(what), "{rsp:?}");
    }
    db.with(|s| s.store_mode = StoreMode::Fail);
    let rsp = admin
        .request(&req(1, 2, MsgType::SingleText, "lost"))
        .await
        .unwrap();
    assert_eq!(rsp.result_code(), AdminResult::AdminFailed);
    assert_eq!(rsp.msg_id, None);
    bob.nothing_of(cid::CID_MSG_DATA).await;
    ms.stop().await;
}
