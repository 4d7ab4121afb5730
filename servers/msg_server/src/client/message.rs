//! SID_MSG: sending (FLOWS.md 5, 6, 12.6), delivery and read acks (6), unread counts (7),
//! history (9), server time (5).

use std::sync::atomic::Ordering;
use std::time::Instant;

use im_common::Conn;
use im_proto::base::SessionType;
use im_proto::message::{
    ImClientTimeReq, ImClientTimeRsp, ImGetLatestMsgIdReq, ImGetMsgByIdReq, ImGetMsgListReq,
    ImMsgData, ImMsgDataAck, ImMsgDataReadAck, ImMsgDataReadNotify, ImUnreadMsgCntReq,
};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, relay_db, submit};
use crate::send;
use crate::server::now_secs;
use crate::upstream::db::{DbError, Key};

/// `CID_MSG_DATA`: the rate limit, then [`crate::send`]: checks, store through db_proxy, then
/// (only once stored) the ack to the sending connection, local delivery, routing and the push
/// round. A store that fails gets no ack (Decisions 4).
pub(super) async fn msg_data(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let received = Instant::now();
    let Some(mut msg) = h.decode::<ImMsgData>(conn, &pdu) else {
        return;
    };
    let s = h.server.clone();
    s.metrics.msgs_in.inc();
    if !h.bucket.take() {
        s.metrics.rate_limited.inc();
        // The sender sees no ack (there is no error field, Decisions 4); one line per
        // connection and burst says why without a line per dropped message.
        if !h.rate_limited_logged {
            h.rate_limited_logged = true;
            tracing::info!(conn_id = conn.id(), peer = %conn.peer(), user_id = auth.user_id,
                limit_per_sec = s.cfg.msg_rate, "message rate limit exceeded; dropping without ack");
        }
        return;
    }
    h.rate_limited_logged = false;
    let (to, msg_type, len) = (msg.to_session_id, msg.msg_type, msg.msg_data.len());
    let group = match send::prepare(&mut msg, auth.user_id) {
        Ok(group) => group,
        Err(why) => {
            s.metrics.msgs_refused.inc();
            if matches!(
                why,
                send::Refusal::TooLong(_) | send::Refusal::AudioTooLong(_)
            ) {
                s.metrics.oversized_requests.inc();
                tracing::info!(conn_id = conn.id(), user_id = auth.user_id, to, msg_type, len,
                    %why, "message refused: body over its bound; no ack");
            } else {
                tracing::debug!(conn_id = conn.id(), user_id = auth.user_id, to, msg_type, len,
                    %why, "message refused");
            }
            return;
        }
    };
    let seq = pdu.seq_num();
    let sender_conn = Some(conn.id());
    let conn = conn.clone();
    let on_stored = {
        let s = s.clone();
        move |stored: Result<&ImMsgData, &DbError>| {
            let Ok(stored) = stored else {
                return;
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
        }
    };
    submit(
        &h.server,
        send::store_and_deliver(
            s,
            msg,
            group,
            seq,
            sender_conn,
            Some(send::Turn::next(&mut h.last_sent)),
            on_stored,
        ),
    )
    .await;
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
    let max = h.server.cfg.bounds.msg_ids;
    if h.oversized(conn, &pdu, "message ids", req.msg_id_list.len(), max) {
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    let group = req.session_type == SessionType::Group as i32;
    let key = Key::session(auth.user_id, group, req.session_id);
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_MSG_GET_BY_MSG_ID_RES;
    relay_db(&h.server, conn, key, fwd, expect, |_, _| {}).await;
}
