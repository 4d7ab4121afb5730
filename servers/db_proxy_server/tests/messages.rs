//! Messages over a real socket: storing (ids, refusals, de-duplication, order), history,
//! unread counts and read acks, recent sessions, and voice messages through the real msfs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{WAIT, ask, expect_silence, handle_attach, start, start_with, tag_attach};
use im_proto::base::{MsgType, SessionType};
use im_proto::buddy::{
    ImRecentContactSessionReq, ImRecentContactSessionRsp, ImRemoveSessionReq, ImRemoveSessionRsp,
};
use im_proto::crypto::MessageCipher;
use im_proto::message::{
    ImGetLatestMsgIdReq, ImGetLatestMsgIdRsp, ImGetMsgByIdReq, ImGetMsgByIdRsp, ImGetMsgListReq,
    ImGetMsgListRsp, ImMsgData, ImMsgDataReadAck, ImUnreadMsgCntReq, ImUnreadMsgCntRsp,
};
use im_proto::{Pdu, cid};

fn text(from: u32, to: u32, body: &str, attach: Option<Bytes>) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 1_700_000_000,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::copy_from_slice(body.as_bytes()),
        attach_data: attach,
    }
}

fn history(user: u32, peer: u32, begin: u32, count: u32) -> ImGetMsgListReq {
    ImGetMsgListReq {
        user_id: user,
        session_type: SessionType::Single as i32,
        session_id: peer,
        msg_id_begin: begin,
        msg_cnt: count,
        attach_data: Some(handle_attach(5)),
    }
}

#[tokio::test]
async fn single_messages_get_consecutive_ids_and_echo_everything() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;

    // An original msg_server's handle record and our request tag both come back unchanged.
    let h = handle_attach(0x0102_0304);
    let r1: ImMsgData = ask(&link, &text(a, b, "one", Some(h.clone()))).await;
    assert_eq!(r1.msg_id, 1);
    assert_eq!(r1.attach_data.as_ref(), Some(&h));
    assert_eq!((r1.from_user_id, r1.to_session_id), (a, b));
    assert_eq!(&r1.msg_data[..], b"one");
    let t = tag_attach(9, 1);
    let r2: ImMsgData = ask(&link, &text(b, a, "two", Some(t.clone()))).await;
    assert_eq!(r2.msg_id, 2, "both directions share the pair's sequence");
    assert_eq!(r2.attach_data.as_ref(), Some(&t));
    let r3: ImMsgData = ask(&link, &text(a, b, "three", None)).await;
    assert_eq!(r3.msg_id, 3);
    assert_eq!(r3.attach_data, None);

    // The reply copies the request's seq_num.
    link.send_pdu(&Pdu::from_msg(&text(a, b, "four", Some(h.clone())), 777))
        .await
        .unwrap();
    let pdu = events.recv_timeout(WAIT).await.unwrap().unwrap();
    assert_eq!(pdu.seq_num(), 777);
    assert_eq!(pdu.command_id(), cid::CID_MSG_DATA);
    assert_eq!(pdu.decode::<ImMsgData>().unwrap().msg_id, 4);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn refused_messages_are_answered_with_zero() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;
    let h = handle_attach(3);

    let to_self: ImMsgData = ask(&link, &text(a, a, "me", Some(h.clone()))).await;
    assert_eq!(to_self.msg_id, 0);
    assert_eq!(to_self.attach_data.as_ref(), Some(&h));
    let empty: ImMsgData = ask(&link, &text(a, b, "", Some(h.clone()))).await;
    assert_eq!(empty.msg_id, 0);
    // An undefined msg_type is a missing required field to a proto2 peer: the body does not
    // decode, and is dropped like any malformed body (no valid answer could echo it).
    let mut bad_type = text(a, b, "x", None);
    bad_type.msg_type = 7;
    let errors = s.shared.metrics.decode_errors.get();
    expect_silence(&link, &mut events, &bad_type, Duration::from_millis(300)).await;
    assert_eq!(s.shared.metrics.decode_errors.get(), errors + 1);
    let long = "x".repeat(4097);
    assert_eq!(
        ask::<_, ImMsgData>(&link, &text(a, b, &long, None))
            .await
            .msg_id,
        0
    );
    let mut short_voice = text(a, b, "", None);
    short_voice.msg_type = MsgType::SingleAudio as i32;
    short_voice.msg_data = Bytes::from_static(&[0, 0, 0, 1]);
    assert_eq!(ask::<_, ImMsgData>(&link, &short_voice).await.msg_id, 0);

    // Nothing of that was stored: the next message still gets 1.
    let ok: ImMsgData = ask(&link, &text(a, b, &"y".repeat(4096), None)).await;
    assert_eq!(ok.msg_id, 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_retried_request_is_stored_once() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, _events) = s.link().await;
    let tag = tag_attach(0xfeed, 42);
    let first: ImMsgData = ask(&link, &text(a, b, "hello", Some(tag.clone()))).await;
    assert_eq!(first.msg_id, 1);
    // The retry, e.g. on another link after the first reply was lost.
    let (link2, _events2) = s.link().await;
    let again: ImMsgData = ask(&link2, &text(a, b, "hello", Some(tag.clone()))).await;
    assert_eq!(again.msg_id, 1);
    assert_eq!(again.attach_data.as_ref(), Some(&tag));
    // Another request id is another message.
    let other: ImMsgData = ask(&link, &text(a, b, "hello", Some(tag_attach(0xfeed, 43)))).await;
    assert_eq!(other.msg_id, 2);
    let page: ImGetMsgListRsp = ask(&link, &history(a, b, 0, 50)).await;
    let ids: Vec<u32> = page.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![2, 1], "one row per request id");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn pipelined_stores_keep_their_order() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;
    const N: u16 = 1000;
    // All sent before any reply is read, alternating directions of one conversation.
    for seq in 1..=N {
        let (from, to) = if seq % 2 == 0 { (a, b) } else { (b, a) };
        let msg = text(
            from,
            to,
            &format!("m{seq}"),
            Some(tag_attach(1, u64::from(seq))),
        );
        link.send_pdu(&Pdu::from_msg(&msg, seq)).await.unwrap();
    }
    let mut ids = HashMap::new();
    while ids.len() < usize::from(N) {
        let pdu = events.recv_timeout(WAIT).await.unwrap().unwrap();
        let m = pdu.decode::<ImMsgData>().unwrap();
        assert_eq!(m.attach_data, Some(tag_attach(1, u64::from(pdu.seq_num()))));
        ids.insert(pdu.seq_num(), m.msg_id);
    }
    for seq in 1..=N {
        assert_eq!(ids[&seq], u32::from(seq), "message sent as #{seq}");
    }
    // And the stored order matches: the newest is the last sent.
    let page: ImGetMsgListRsp = ask(&link, &history(a, b, 0, 3)).await;
    let bodies: Vec<&[u8]> = page.msg_list.iter().map(|m| &m.msg_data[..]).collect();
    assert_eq!(bodies, vec![&b"m1000"[..], b"m999", b"m998"]);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn history_by_ids_and_latest() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let c = s.user("carol", "pw").await;
    let (link, _events) = s.link().await;
    for i in 1..=10 {
        let (from, to) = if i % 3 == 0 { (b, a) } else { (a, b) };
        let r: ImMsgData = ask(&link, &text(from, to, &format!("m{i}"), None)).await;
        assert_eq!(r.msg_id, i);
    }
    // Newest first; msg_id_begin bounds from above; msg_cnt caps.
    let page: ImGetMsgListRsp = ask(&link, &history(b, a, 0, 4)).await;
    assert_eq!(page.user_id, b);
    assert_eq!(page.session_id, a);
    assert_eq!(page.session_type, SessionType::Single as i32);
    assert_eq!(page.msg_id_begin, 0);
    assert_eq!(page.attach_data, Some(handle_attach(5)));
    let ids: Vec<u32> = page.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![10, 9, 8, 7]);
    assert_eq!(page.msg_list[1].from_session_id, b, "message 9 came from b");
    assert_eq!(&page.msg_list[0].msg_data[..], b"m10");
    assert_eq!(page.msg_list[0].create_time, 1_700_000_000);
    let page: ImGetMsgListRsp = ask(&link, &history(a, b, 3, 10)).await;
    assert_eq!(page.msg_id_begin, 3);
    let ids: Vec<u32> = page.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![3, 2, 1]);
    // A pair that never talked.
    let none: ImGetMsgListRsp = ask(&link, &history(a, c, 0, 10)).await;
    assert!(none.msg_list.is_empty());

    let by_id: ImGetMsgByIdRsp = ask(
        &link,
        &ImGetMsgByIdReq {
            user_id: a,
            session_type: SessionType::Single as i32,
            session_id: b,
            msg_id_list: vec![2, 5, 99],
            attach_data: Some(tag_attach(2, 2)),
        },
    )
    .await;
    let ids: Vec<u32> = by_id.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![5, 2]);
    assert_eq!(by_id.attach_data, Some(tag_attach(2, 2)));

    let latest: ImGetLatestMsgIdRsp = ask(
        &link,
        &ImGetLatestMsgIdReq {
            user_id: a,
            session_type: SessionType::Single as i32,
            session_id: b,
            attach_data: Some(handle_attach(8)),
        },
    )
    .await;
    assert_eq!(latest.latest_msg_id, 10);
    assert_eq!((latest.user_id, latest.session_id), (a, b));
    assert_eq!(latest.attach_data, Some(handle_attach(8)));
    let latest: ImGetLatestMsgIdRsp = ask(
        &link,
        &ImGetLatestMsgIdReq {
            user_id: a,
            session_type: SessionType::Single as i32,
            session_id: c,
            attach_data: None,
        },
    )
    .await;
    assert_eq!(latest.latest_msg_id, 0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unread_counts_read_acks_and_recent_sessions() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;
    for body in ["x", "y", "z"] {
        ask::<_, ImMsgData>(&link, &text(a, b, body, None)).await;
    }
    let unread: ImUnreadMsgCntRsp = ask(
        &link,
        &ImUnreadMsgCntReq {
            user_id: b,
            attach_data: Some(handle_attach(11)),
        },
    )
    .await;
    assert_eq!(unread.user_id, b);
    assert_eq!(unread.total_cnt, 3);
    assert_eq!(unread.attach_data, Some(handle_attach(11)));
    let e = &unread.unreadinfo_list[0];
    assert_eq!((e.session_id, e.unread_cnt, e.latest_msg_id), (a, 3, 3));
    assert_eq!(&e.latest_msg_data[..], b"z");
    assert_eq!(e.latest_msg_from_user_id, a);
    assert_eq!(e.session_type, SessionType::Single as i32);
    assert_eq!(e.latest_msg_type, MsgType::SingleText as i32);

    // The sender has nothing unread; its session shows the real sender of the last message.
    let mine: ImUnreadMsgCntRsp = ask(
        &link,
        &ImUnreadMsgCntReq {
            user_id: a,
            attach_data: None,
        },
    )
    .await;
    assert_eq!(mine.total_cnt, 0);
    let sessions: ImRecentContactSessionRsp = ask(
        &link,
        &ImRecentContactSessionReq {
            user_id: a,
            latest_update_time: 0,
            attach_data: Some(tag_attach(3, 3)),
        },
    )
    .await;
    assert_eq!(sessions.attach_data, Some(tag_attach(3, 3)));
    let sess = &sessions.contact_session_list[0];
    assert_eq!((sess.session_id, sess.latest_msg_id), (b, 3));
    assert_eq!(
        sess.latest_msg_from_user_id, a,
        "the real sender (WEAKNESSES 30)"
    );
    assert_eq!(sess.session_status, 0);
    assert!(sess.updated_time > 0);

    // Read ack (no reply) clears b's counter.
    expect_silence(
        &link,
        &mut events,
        &ImMsgDataReadAck {
            user_id: b,
            session_id: a,
            msg_id: 3,
            session_type: SessionType::Single as i32,
        },
        Duration::from_millis(300),
    )
    .await;
    let cleared = common::eventually(WAIT, || async {
        let u: ImUnreadMsgCntRsp = ask(
            &link,
            &ImUnreadMsgCntReq {
                user_id: b,
                attach_data: None,
            },
        )
        .await;
        u.total_cnt == 0 && u.unreadinfo_list.is_empty()
    })
    .await;
    assert!(cleared);

    // Removing a session hides it; a second removal finds nothing.
    let rm = ImRemoveSessionReq {
        user_id: b,
        session_type: SessionType::Single as i32,
        session_id: a,
        attach_data: Some(handle_attach(12)),
    };
    let r: ImRemoveSessionRsp = ask(&link, &rm).await;
    assert_eq!((r.user_id, r.result_code, r.session_id), (b, 0, a));
    assert_eq!(r.session_type, SessionType::Single as i32);
    assert_eq!(r.attach_data, Some(handle_attach(12)));
    let r: ImRemoveSessionRsp = ask(&link, &rm).await;
    assert_eq!(r.result_code, 1);
    let sessions: ImRecentContactSessionRsp = ask(
        &link,
        &ImRecentContactSessionReq {
            user_id: b,
            latest_update_time: 0,
            attach_data: None,
        },
    )
    .await;
    assert!(sessions.contact_session_list.is_empty());
    s.stop().await.unwrap();
}

#[tokio::test]
async fn voice_messages_round_trip_through_msfs() {
    let msfs = common::msfs::start().await;
    let url = msfs.url.clone();
    let s = start_with(|c| c.msfs_url = url).await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, _events) = s.link().await;
    let mut voice = vec![0, 0, 0, 7];
    voice.extend((0..3000u32).map(|i| (i % 251) as u8));
    let msg = ImMsgData {
        msg_type: MsgType::SingleAudio as i32,
        msg_data: Bytes::from(voice.clone()),
        ..text(a, b, "", Some(handle_attach(21)))
    };
    let stored: ImMsgData = ask(&link, &msg).await;
    assert_eq!(stored.msg_id, 1);
    assert_eq!(stored.attach_data, Some(handle_attach(21)));
    assert_eq!(msfs.files().len(), 1);
    // Unread counts and sessions show the encrypted placeholder for voice.
    let unread: ImUnreadMsgCntRsp = ask(
        &link,
        &ImUnreadMsgCntReq {
            user_id: b,
            attach_data: None,
        },
    )
    .await;
    assert_eq!(unread.unreadinfo_list[0].latest_msg_id, 1);
    let placeholder = MessageCipher::default_key().encrypt("[语音]".as_bytes());
    assert_eq!(
        &unread.unreadinfo_list[0].latest_msg_data[..],
        placeholder.as_bytes()
    );
    let sessions: ImRecentContactSessionRsp = ask(
        &link,
        &ImRecentContactSessionReq {
            user_id: a,
            latest_update_time: 0,
            attach_data: None,
        },
    )
    .await;
    let sess = &sessions.contact_session_list[0];
    assert_eq!(sess.latest_msg_type, MsgType::SingleAudio as i32);
    assert_eq!(&sess.latest_msg_data[..], placeholder.as_bytes());
    // A text after the voice message keeps the order.
    let after: ImMsgData = ask(&link, &text(b, a, "heard it", None)).await;
    assert_eq!(after.msg_id, 2);

    // History rebuilds duration + bytes.
    let page: ImGetMsgListRsp = ask(&link, &history(b, a, 0, 10)).await;
    let v = page
        .msg_list
        .iter()
        .find(|m| m.msg_id == 1)
        .expect("voice message listed");
    assert_eq!(v.msg_type, MsgType::SingleAudio as i32);
    assert_eq!(&v.msg_data[..], &voice[..]);

    // A voice message whose bytes are gone is left out, not sent with its id as payload.
    msfs.clear();
    let page: ImGetMsgListRsp = ask(&link, &history(b, a, 0, 10)).await;
    let ids: Vec<u32> = page.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![2]);
    drop(msfs);

    // msfs down: the voice message is not stored (id 0), and its conversation goes on.
    let failed: ImMsgData = ask(&link, &msg).await;
    assert_eq!(failed.msg_id, 0);
    let next: ImMsgData = ask(&link, &text(a, b, "still here", None)).await;
    assert_eq!(next.msg_id, 3);
    s.stop().await.unwrap();
}
