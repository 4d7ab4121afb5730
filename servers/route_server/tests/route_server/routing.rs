//! Targeted relays and broadcasts (Decisions 7), frames forwarded byte for byte.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use im_proto::admin::{AdminResult, ImAdminLocateUserReq};
use im_proto::base::{ClientType, GroupModifyType, MsgType, SessionType, TransferFileType};
use im_proto::buddy::{ImRemoveSessionNotify, ImSignInfoChangedNotify};
use im_proto::file::ImFileNotify;
use im_proto::group::ImGroupChangeMemberNotify;
use im_proto::message::{ImMsgData, ImMsgDataReadNotify};
use im_proto::pdu::Header;
use im_proto::server::ImServerKickUser;
use im_proto::switch_service::Imp2pCmdMsg;
use im_proto::{Command, Pdu};

use crate::harness::{FakeMs, Server};

fn msg(from: u32, to: u32, msg_type: MsgType) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 77,
        create_time: 1_700_000_000,
        msg_type: msg_type as i32,
        msg_data: Bytes::from_static(b"opaque, maybe encrypted"),
        attach_data: Some(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0])),
    }
}

/// A frame as an original server could send it: odd header fields and a body with a field
/// prost does not know (tag 15). Re-encoding would lose both; forwarding the bytes keeps them.
fn unusual_frame<M: Command>(msg: &M, seq: u16) -> Bytes {
    let mut body = BytesMut::from(&msg.encode_to_vec()[..]);
    body.put_slice(&[0x78, 0x2a]); // field 15, varint 42
    let header = Header {
        version: 1,
        flag: 0x0102,
        service_id: M::SERVICE_ID,
        command_id: M::COMMAND_ID,
        seq_num: seq,
        reserved: 0x0304,
    };
    Pdu::new(header, body.freeze()).to_frame()
}

async fn fence_all(origin: &mut FakeMs, others: &mut [&mut FakeMs]) -> Vec<Vec<Pdu>> {
    let f = origin.fence().await;
    let mut out = vec![origin.until_fence(f).await];
    for o in others.iter_mut() {
        out.push(o.until_fence(f).await);
    }
    out
}

#[tokio::test]
async fn registration_makes_users_routable_and_locatable() {
    let s = Server::start(Duration::from_secs(15)).await;
    let a = s.msg_server().await;
    a.register(&[
        (1, ClientType::Windows),
        (1, ClientType::Android),
        (2, ClientType::Ios),
    ])
    .await;
    assert_eq!(a.wire_status(&[1, 2, 3]).await, vec![1, 2, 2]);
    let admin = s.admin().await;
    let rsp = admin
        .request(&ImAdminLocateUserReq {
            user_id: Some(1),
            user_ids: vec![],
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    let entry = rsp.entry.unwrap();
    let mut locs: Vec<(String, i32, u32)> = entry
        .locations
        .iter()
        .map(|l| {
            (
                l.msg_server.clone().unwrap(),
                l.client_type.unwrap(),
                l.connections.unwrap(),
            )
        })
        .collect();
    locs.sort();
    assert_eq!(
        locs,
        vec![
            (a.name(), ClientType::Windows as i32, 1),
            (a.name(), ClientType::Android as i32, 1),
        ]
    );
    assert_eq!(entry.wire_status, Some(1));
    s.stop().await;
}

#[tokio::test]
async fn single_chat_reaches_only_the_links_of_its_users_byte_for_byte() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c, mut d) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    a.register(&[(10, ClientType::Windows)]).await;
    b.register(&[(20, ClientType::Windows), (20, ClientType::Android)])
        .await;
    c.register(&[(30, ClientType::Mac)]).await;
    d.register(&[(40, ClientType::Mac)]).await;

    // 10 -> 20: only B (once, although 20 has two connections there).
    let sent = unusual_frame(&msg(10, 20, MsgType::SingleText), 4321);
    a.client.send_frame(sent.clone()).await.unwrap();
    let got = b.next().await;
    assert_eq!(
        got.to_frame(),
        sent,
        "forwarded frame differs from the one sent"
    );
    let seen = fence_all(&mut a, &mut [&mut b, &mut c, &mut d]).await;
    assert!(
        seen.iter().all(Vec::is_empty),
        "unexpected deliveries: {seen:?}"
    );

    // The sender's other device on D gets it too; B gets it once for both of its users.
    d.status(10, ClientType::Ios, true).await;
    b.status(10, ClientType::Mac, true).await;
    fence_all(&mut a, &mut [&mut b, &mut c, &mut d]).await; // drop the login notifies
    let sent = a.send(&msg(10, 20, MsgType::SingleAudio)).await;
    assert_eq!(b.next().await.to_frame(), sent);
    assert_eq!(d.next().await.to_frame(), sent);
    let seen = fence_all(&mut a, &mut [&mut b, &mut c, &mut d]).await;
    assert!(
        seen.iter().all(Vec::is_empty),
        "unexpected deliveries: {seen:?}"
    );

    // Users online nowhere else: nothing goes anywhere, and nothing breaks.
    a.send(&msg(11, 999, MsgType::SingleText)).await;
    let seen = fence_all(&mut a, &mut [&mut b, &mut c, &mut d]).await;
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn group_messages_and_member_notifies_reach_every_other_link() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    // Nobody needs to be registered: route_server keeps no member lists.
    let sent = unusual_frame(&msg(10, 5000, MsgType::GroupText), 9);
    a.client.send_frame(sent.clone()).await.unwrap();
    assert_eq!(b.next().await.to_frame(), sent);
    assert_eq!(c.next().await.to_frame(), sent);
    let sent = a.send(&msg(10, 5000, MsgType::GroupAudio)).await;
    assert_eq!(b.next().await.to_frame(), sent);
    assert_eq!(c.next().await.to_frame(), sent);

    let notify = ImGroupChangeMemberNotify {
        user_id: 0,
        change_type: GroupModifyType::Add as i32,
        group_id: 5000,
        cur_user_id_list: vec![10, 11, 12],
        chg_user_id_list: vec![12],
    };
    let sent = b.send(&notify).await;
    assert_eq!(a.next().await.to_frame(), sent);
    assert_eq!(c.next().await.to_frame(), sent);
    // Never back to the sender.
    let seen = fence_all(&mut a, &mut [&mut b, &mut c]).await;
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn signature_notifies_reach_every_link_including_the_sender() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    let sent = unusual_frame(
        &ImSignInfoChangedNotify {
            changed_user_id: 7,
            sign_info: "gone fishing".into(),
        },
        0,
    );
    a.client.send_frame(sent.clone()).await.unwrap();
    for l in [&mut a, &mut b, &mut c] {
        assert_eq!(l.next().await.to_frame(), sent);
    }
    s.stop().await;
}

#[tokio::test]
async fn kicks_reach_only_the_other_links_holding_the_user() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    a.register(&[(5, ClientType::Windows)]).await;
    b.register(&[(5, ClientType::Android)]).await;
    c.register(&[(6, ClientType::Windows)]).await;
    let kick = ImServerKickUser {
        user_id: 5,
        client_type: ClientType::Mac as i32,
        reason: 1,
    };
    // From C (which does not hold 5): A and B.
    let sent = c.send(&kick).await;
    assert_eq!(a.next().await.to_frame(), sent);
    assert_eq!(b.next().await.to_frame(), sent);
    let seen = fence_all(&mut c, &mut [&mut a, &mut b]).await;
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
    // From A (a new login there): only B, never back to A.
    let sent = a.send(&kick).await;
    assert_eq!(b.next().await.to_frame(), sent);
    let seen = fence_all(&mut a, &mut [&mut b, &mut c]).await;
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn read_p2p_session_and_file_notifies_are_targeted() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c, mut d) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    a.register(&[(1, ClientType::Windows)]).await;
    b.register(&[(1, ClientType::Android)]).await;
    c.register(&[(2, ClientType::Windows)]).await;
    d.register(&[(3, ClientType::Windows)]).await;

    // Read notify: the reader's (1) other devices: B.
    let sent = a
        .send(&ImMsgDataReadNotify {
            user_id: 1,
            session_id: 2,
            msg_id: 5,
            session_type: SessionType::Single as i32,
        })
        .await;
    assert_eq!(b.next().await.to_frame(), sent);
    // Remove-session notify: same.
    let sent = a
        .send(&ImRemoveSessionNotify {
            user_id: 1,
            session_type: SessionType::Single as i32,
            session_id: 2,
        })
        .await;
    assert_eq!(b.next().await.to_frame(), sent);
    // P2P from 1 to 2: B (1's other device) and C (2).
    let sent = a
        .send(&Imp2pCmdMsg {
            from_user_id: 1,
            to_user_id: 2,
            cmd_msg_data: "{\"typing\":1}".into(),
        })
        .await;
    assert_eq!(b.next().await.to_frame(), sent);
    assert_eq!(c.next().await.to_frame(), sent);
    // File notify from 1 to 2, sent by C (2's msg_server... or any): A and B hold 1.
    let sent = c
        .send(&ImFileNotify {
            from_user_id: 1,
            to_user_id: 2,
            file_name: "a.txt".into(),
            file_size: 3,
            task_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            ip_addr_list: vec![],
            trans_mode: TransferFileType::FileTypeOnline as i32,
            offline_ready: 0,
        })
        .await;
    assert_eq!(a.next().await.to_frame(), sent);
    assert_eq!(b.next().await.to_frame(), sent);
    // D holds neither user and got nothing; nobody got anything twice.
    let seen = fence_all(&mut d, &mut [&mut a, &mut b, &mut c]).await;
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
    s.stop().await;
}
