//! SID_GROUP (FLOWS.md 12): lists, info, create, member changes, push shield.

use im_common::Conn;
use im_proto::base::GroupType;
use im_proto::group::{
    ImGroupChangeMemberNotify, ImGroupChangeMemberReq, ImGroupChangeMemberRsp, ImGroupCreateReq,
    ImGroupCreateRsp, ImGroupInfoListReq, ImGroupInfoListRsp, ImGroupShieldReq,
    ImNormalGroupListReq,
};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, relay_db};
use crate::upstream::db::Key;

/// `CID_GROUP_NORMAL_LIST_REQUEST` (12.1).
pub(super) async fn normal_list(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImNormalGroupListReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_GROUP_NORMAL_LIST_RESPONSE;
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

/// `CID_GROUP_INFO_REQUEST` (12.2): relayed; a newer version than the cached member list
/// refreshes the cache (Decisions 10).
pub(super) async fn info(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGroupInfoListReq>(conn, &pdu) else {
        return;
    };
    let max = h.server.cfg.bounds.group_ids;
    if h.oversized(conn, &pdu, "groups", req.group_version_list.len(), max) {
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    // One group: that group's link keeps it in order with its messages.
    let key = match req.group_version_list.as_slice() {
        [one] => Key::Group(one.group_id),
        _ => Key::User(auth.user_id),
    };
    let fwd = forward(&req, &pdu);
    relay_db(
        &h.server,
        conn,
        key,
        fwd,
        cid::CID_GROUP_INFO_RESPONSE,
        |s, reply| {
            if let Ok(rsp) = reply.decode::<ImGroupInfoListRsp>() {
                for g in &rsp.group_info_list {
                    s.groups.seen(g);
                }
            }
        },
    )
    .await;
}

/// `CID_GROUP_CREATE_REQUEST` (12.3): clients may only create temporary groups; a NORMAL
/// request is dropped.
pub(super) async fn create(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGroupCreateReq>(conn, &pdu) else {
        return;
    };
    let max = h.server.cfg.bounds.group_members;
    if h.oversized(conn, &pdu, "members", req.member_id_list.len(), max) {
        // FLOWS.md 12.3: result 1 is how db_proxy refuses a bad create.
        let _ = conn.reply(
            &pdu,
            &ImGroupCreateRsp {
                user_id: auth.user_id,
                result_code: 1,
                group_id: None,
                group_name: req.group_name,
                user_id_list: Vec::new(),
                attach_data: None,
            },
        );
        return;
    }
    if req.group_type == GroupType::Normal as i32 {
        tracing::debug!(
            user_id = auth.user_id,
            "dropping a client request to create a normal group"
        );
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_GROUP_CREATE_RESPONSE;
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

/// `CID_GROUP_CHANGE_MEMBER_REQUEST` (12.4): relayed; on success the members old and new
/// are told (IMGroupChangeMemberNotify here, except on the requesting connection, and
/// through route_server everywhere else) and the cached member list is dropped.
pub(super) async fn change_member(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGroupChangeMemberReq>(conn, &pdu) else {
        return;
    };
    let max = h.server.cfg.bounds.group_members;
    if h.oversized(conn, &pdu, "members", req.member_id_list.len(), max) {
        let _ = conn.reply(
            &pdu,
            &ImGroupChangeMemberRsp {
                user_id: auth.user_id,
                change_type: req.change_type,
                result_code: 1,
                group_id: req.group_id,
                cur_user_id_list: Vec::new(),
                chg_user_id_list: Vec::new(),
                attach_data: None,
            },
        );
        return;
    }
    req.user_id = auth.user_id;
    req.attach_data = None;
    let group = req.group_id;
    let fwd = forward(&req, &pdu);
    let requester = conn.id();
    let s = h.server.clone();
    let expect = cid::CID_GROUP_CHANGE_MEMBER_RESPONSE;
    relay_db(
        &h.server,
        conn,
        Key::Group(group),
        fwd,
        expect,
        move |_, reply| {
            let Ok(rsp) = reply.decode::<ImGroupChangeMemberRsp>() else {
                return;
            };
            if rsp.result_code != 0 {
                return;
            }
            s.groups.invalidate(group);
            let notify = ImGroupChangeMemberNotify {
                user_id: rsp.user_id,
                change_type: rsp.change_type,
                group_id: rsp.group_id,
                cur_user_id_list: rsp.cur_user_id_list,
                chg_user_id_list: rsp.chg_user_id_list,
            };
            let pdu = Pdu::from_msg(&notify, 0);
            let frame = pdu.to_frame();
            s.routes.send_notify(pdu);
            let mut users: Vec<u32> = notify
                .cur_user_id_list
                .iter()
                .chain(&notify.chg_user_id_list)
                .copied()
                .collect();
            users.sort_unstable();
            users.dedup();
            for u in users {
                s.sessions.send_to_user(u, &frame, Some(requester));
            }
        },
    )
    .await;
}

/// `CID_GROUP_SHIELD_GROUP_REQUEST` (12.5).
pub(super) async fn shield(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImGroupShieldReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    let expect = cid::CID_GROUP_SHIELD_GROUP_RESPONSE;
    relay_db(
        &h.server,
        conn,
        Key::Group(req.group_id),
        fwd,
        expect,
        |_, _| {},
    )
    .await;
}
