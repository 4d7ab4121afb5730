//! SID_BUDDY_LIST: recent sessions (FLOWS.md 8), users and departments (10), presence
//! queries (11), signature and avatar (10).

use im_common::Conn;
use im_proto::base::SessionType;
use im_proto::buddy::{
    ImAllUserReq, ImChangeAvatarReq, ImChangeSignInfoReq, ImChangeSignInfoRsp, ImDepartmentReq,
    ImRecentContactSessionReq, ImRemoveSessionNotify, ImRemoveSessionReq, ImSignInfoChangedNotify,
    ImUsersInfoReq, ImUsersStatReq,
};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, relay_db, submit};
use crate::upstream::db::Key;
use crate::wire::reply_frame;

/// `CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST`.
pub(super) async fn recent_sessions(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImRecentContactSessionReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_RESPONSE;
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

/// `CID_BUDDY_LIST_USER_INFO_REQUEST`.
pub(super) async fn users_info(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImUsersInfoReq>(conn, &pdu) else {
        return;
    };
    let max = h.server.cfg.bounds.user_ids;
    if h.oversized(conn, &pdu, "user ids", req.user_id_list.len(), max) {
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_USER_INFO_RESPONSE;
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

/// `CID_BUDDY_LIST_REMOVE_SESSION_REQ`: relayed to db_proxy; for single sessions the user's
/// other connections (here and, through route_server, elsewhere) are told at once, whatever
/// the result (FLOWS.md 8).
pub(super) async fn remove_session(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImRemoveSessionReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let is_group = req.session_type == SessionType::Group as i32;
    let key = Key::session(auth.user_id, is_group, req.session_id);
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_REMOVE_SESSION_RES;
    relay_db(&h.server, conn, key, fwd, expect, |_, _| {}).await;
    if req.session_type == SessionType::Single as i32 {
        let notify = ImRemoveSessionNotify {
            user_id: auth.user_id,
            session_type: SessionType::Single as i32,
            session_id: req.session_id,
        };
        let pdu = Pdu::from_msg(&notify, 0);
        h.server
            .sessions
            .send_to_user(auth.user_id, &pdu.to_frame(), Some(conn.id()));
        h.server.routes.send_notify(pdu);
    }
}

/// `CID_BUDDY_LIST_ALL_USER_REQUEST`.
pub(super) async fn all_users(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImAllUserReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_ALL_USER_RESPONSE;
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

/// `CID_BUDDY_LIST_USERS_STATUS_REQUEST` (FLOWS.md 11): asked of the routing target; the
/// answer goes back with the client's seq and without attach_data.
pub(super) async fn users_status(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImUsersStatReq>(conn, &pdu) else {
        return;
    };
    let max = h.server.cfg.bounds.user_ids;
    if h.oversized(conn, &pdu, "user ids", req.user_id_list.len(), max) {
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    let Some(route) = h.server.routes.target() else {
        tracing::debug!(user_id = auth.user_id, "no route_server for a status query");
        return;
    };
    let seq = pdu.seq_num();
    let fwd = forward(&req, &pdu);
    let timeout = h.server.cfg.request_timeout;
    let conn = conn.clone();
    submit(&h.server, async move {
        let expect = cid::CID_BUDDY_LIST_USERS_STATUS_RESPONSE;
        match route.request_pdu(fwd, expect, timeout).await {
            Ok(reply) => {
                let _ = conn.send_frame(reply_frame(&reply, seq));
            }
            Err(e) => tracing::info!(conn_id = conn.id(), error = %e,
                "route_server did not answer a status query"),
        }
    })
    .await;
}

/// `CID_BUDDY_LIST_CHANGE_AVATAR_REQUEST`: forwarded; the original db_proxy never answers
/// (FLOWS.md 10), ours may, and an answer is relayed.
pub(super) async fn change_avatar(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImChangeAvatarReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_CHANGE_AVATAR_RESPONSE;
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

/// `CID_BUDDY_LIST_DEPARTMENT_REQUEST`.
pub(super) async fn departments(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImDepartmentReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_DEPARTMENT_RESPONSE;
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

/// `CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST` (FLOWS.md 10): on success route_server gets
/// IMSignInfoChangedNotify and broadcasts it to every msg_server, us included, so it is not
/// delivered locally here (except without any route_server).
pub(super) async fn change_sign_info(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImChangeSignInfoReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let user = auth.user_id;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_RESPONSE;
    let s = h.server.clone();
    relay_db(
        &h.server,
        conn,
        Key::User(user),
        fwd,
        expect,
        move |_, reply| {
            let Ok(rsp) = reply.decode::<ImChangeSignInfoRsp>() else {
                return;
            };
            if rsp.result_code != 0 {
                return;
            }
            let notify = ImSignInfoChangedNotify {
                changed_user_id: user,
                sign_info: rsp.sign_info.unwrap_or(req.sign_info),
            };
            let pdu = Pdu::from_msg(&notify, 0);
            if s.routes.is_empty() {
                let frame = pdu.to_frame();
                tokio::spawn(async move {
                    s.sessions.broadcast(&frame, |_| true).await;
                });
            } else {
                s.routes.send_notify(pdu);
            }
        },
    )
    .await;
}
