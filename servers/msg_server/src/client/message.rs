//! SID_MSG: sending (FLOWS.md 5, 6, 12.6), delivery and read acks (6), unread counts (7),
//! history (9), server time (5).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use im_common::Conn;
use im_proto::base::{MsgType, SessionType};
use im_proto::message::{
    ImClientTimeReq, ImClientTimeRsp, ImGetLatestMsgIdReq, ImGetMsgByIdReq, ImGetMsgListReq,
    ImMsgData, ImMsgDataAck, ImMsgDataReadAck, ImMsgDataReadNotify, ImUnreadMsgCntReq,
};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, relay_db, submit};
use crate::server::{Server, now_secs};
use crate::upstream::db::Key;

/// Longest text body accepted, in bytes of the (base64) `msg_data`: the database column
/// holds 4096 characters and the original never checked (WEAKNESSES 22).
pub const MAX_TEXT_BYTES: usize = 4096;

fn is_group_type(t: i32) -> bool {
    t == MsgType::GroupText as i32 || t == MsgType::GroupAudio as i32
}

fn is_text_type(t: i32) -> bool {
    t == MsgType::SingleText as i32 || t == MsgType::GroupText as i32
}

fn valid_type(t: i32) -> bool {
    MsgType::try_from(t).is_ok()
}

/// `CID_MSG_DATA`: checks, store through db_proxy, then (only once stored) the ack to the
/// sender, local delivery, routing and the push round. A store that fails gets no ack
/// (Decisions 4).
pub(super) async fn msg_data(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let received = Instant::now();
    let Some(mut msg) = h.decode::<ImMsgData>(conn, &pdu) else {
        return;
    };
    let s = h.server.clone();
    s.metrics.msgs_in.inc();
    if !h.bucket.take() {
        s.metrics.rate_limited.inc();
        return;
    }
    let group = is_group_type(msg.msg_type);
    let refused = msg.msg_data.is_empty()
        || !valid_type(msg.msg_type)
        || (!group && (msg.from_user_id == msg.to_session_id || msg.to_session_id == auth.user_id))
        || (is_text_type(msg.msg_type) && msg.msg_data.len() > MAX_TEXT_BYTES);
    if refused {
        s.metrics.msgs_refused.inc();
        tracing::debug!(
            conn_id = conn.id(),
            user_id = auth.user_id,
            to = msg.to_session_id,
            msg_type = msg.msg_type,
            len = msg.msg_data.len(),
            "message refused"
        );
        return;
    }
    msg.from_user_id = auth.user_id;
    msg.create_time = now_secs();
    msg.msg_id = 0;
    let key = Key::session(auth.user_id, group, msg.to_session_id);
    let seq = pdu.seq_num();
    let conn = conn.clone();
    let sender_conn = conn.id();
    let store = {
        let s = s.clone();
        async move { s.db.store(key, msg, seq).await }
    };
    submit(&h.server, async move {
        let stored = match store.await {
            Ok(m) => m,
            Err(e) => {
                s.metrics.store_failures.inc();
                tracing::info!(conn_id = sender_conn, user_id = conn.user_id(), error = %e,
                    "message not stored; no ack");
                return;
            }
        };
        let ack = ImMsgDataAck {
            user_id: stored.from_user_id,
            session_id: stored.to_session_id,
            msg_id: stored.msg_id,
            session_type: if group {
                SessionType::Group as i32
            } else {
                SessionType::Single as i32
            },
        };
        if conn.send_msg(&ack, seq).is_ok() {
            s.metrics.acks.inc();
            s.metrics.ack_latency.record(received.elapsed());
        }
        dispatch_stored(&s, stored, group, sender_conn).await;
    })
    .await;
}

/// After the ack: the stored message goes, encoded once with seq 0 and no attach_data, to
/// route_server and to the local connections of the receivers and of the sender's other
/// devices; then the push round for offline mobile receivers.
async fn dispatch_stored(s: &Arc<Server>, mut stored: ImMsgData, group: bool, sender_conn: u64) {
    stored.attach_data = None;
    let frame = Pdu::from_msg(&stored, 0).to_frame();
    s.routes.send(frame.clone(), true);
    let from = stored.from_user_id;
    if group {
        let Some(members) = s.group_members(stored.to_session_id, from).await else {
            return;
        };
        s.deliver_msg_many(&members.ids, &frame, Some(sender_conn))
            .await;
        crate::push::spawn_round(s, stored, Some(members));
    } else {
        s.deliver_msg(stored.to_session_id, &frame, None);
        s.deliver_msg(from, &frame, Some(sender_conn));
        crate::push::spawn_round(s, stored, None);
    }
}

/// `CID_MSG_DATA_ACK` from a receiver: counted, nothing else (FLOWS.md 6 step 7).
pub(super) fn data_ack(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    if h.decode::<ImMsgDataAck>(conn, &pdu).is_none() {
        return;
    }
    h.server.metrics.delivery_acks.inc();
    let _ = auth
        .pending_acks
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// `CID_MSG_READ_ACK` (FLOWS.md 6 step 8): db_proxy clears the unread count; the reader's
/// other connections, here and elsewhere, get IMMsgDataReadNotify.
pub(super) fn read_ack(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut ack) = h.decode::<ImMsgDataReadAck>(conn, &pdu) else {
        return;
    };
    ack.user_id = auth.user_id;
    let group = ack.session_type == SessionType::Group as i32;
    let s = &h.server;
    s.db.send(
        Key::session(auth.user_id, group, ack.session_id),
        Pdu::from_msg(&ack, 0),
    );
    let notify = ImMsgDataReadNotify {
        user_id: auth.user_id,
        session_id: ack.session_id,
        msg_id: ack.msg_id,
        session_type: ack.session_type,
    };
    let pdu = Pdu::from_msg(&notify, 0);
    s.sessions
        .send_to_user(auth.user_id, &pdu.to_frame(), Some(conn.id()));
    s.routes.send_notify(pdu);
}

/// `CID_MSG_TIME_REQUEST`: answered here.
pub(super) fn time(h: &mut ClientHandler, conn: &Conn, pdu: Pdu) {
    if h.decode::<ImClientTimeReq>(conn, &pdu).is_none() {
        return;
    }
    let _ = conn.reply(
        &pdu,
        &ImClientTimeRsp {
            server_time: now_secs(),
        },
    );
}

/// `CID_MSG_UNREAD_CNT_REQUEST` (FLOWS.md 7).
pub(super) async fn unread_count(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImUnreadMsgCntReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_MSG_UNREAD_CNT_RESPONSE;
    relay_db(
        &h.server,
        conn,
        Key::User(auth.user_id),
        fwd,
        expect,
        |_, _| {},
    )
    .await;
}

/// `CID_MSG_LIST_REQUEST` (FLOWS.md 9).
pub(super) async fn msg_list(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGetMsgListReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let group = req.session_type == SessionType::Group as i32;
    let key = Key::session(auth.user_id, group, req.session_id);
    let fwd = forward(&req, &pdu);
    relay_db(
        &h.server,
        conn,
        key,
        fwd,
        cid::CID_MSG_LIST_RESPONSE,
        |_, _| {},
    )
    .await;
}

/// `CID_MSG_GET_LATEST_MSG_ID_REQ` (FLOWS.md 9).
pub(super) async fn latest_msg_id(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGetLatestMsgIdReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let group = req.session_type == SessionType::Group as i32;
    let key = Key::session(auth.user_id, group, req.session_id);
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_MSG_GET_LATEST_MSG_ID_RSP;
    relay_db(&h.server, conn, key, fwd, expect, |_, _| {}).await;
}

/// `CID_MSG_GET_BY_MSG_ID_REQ` (FLOWS.md 9).
pub(super) async fn msg_by_ids(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGetMsgByIdReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let group = req.session_type == SessionType::Group as i32;
    let key = Key::session(auth.user_id, group, req.session_id);
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_MSG_GET_BY_MSG_ID_RES;
    relay_db(&h.server, conn, key, fwd, expect, |_, _| {}).await;
}
