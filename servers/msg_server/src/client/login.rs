//! SID_LOGIN: login (FLOWS.md 4), duplicate-login kicks (4.1), logout (4.2), device token
//! (15.4), push shield (15.5).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use im_common::Conn;
use im_common::conn::CloseReason;
use im_proto::base::{ClientType, KickReasonType, ResultType, UserStatType};
use im_proto::command::is_mobile_client;
use im_proto::login::{
    ImDeviceTokenReq, ImDeviceTokenRsp, ImKickPcClientReq, ImKickPcClientRsp, ImLoginReq,
    ImLoginRes, ImLogoutReq, ImLogoutRsp, ImPushShieldReq, ImQueryPushShieldReq,
};
use im_proto::server::{ImServerKickUser, ImValidateReq, ImValidateRsp};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, relay_db};
use crate::server::now_secs;
use crate::state::ConnEntry;
use crate::upstream::db::Key;

/// "server error", the original's text for refusals that are not the user's fault.
const SERVER_ERROR: &str = "服务端异常";
/// "success".
const SUCCESS: &str = "成功";
/// "too many failed logins", for the per-address throttle.
const TOO_MANY: &str = "登录失败次数太多，请稍后再试";

fn refuse(h: &ClientHandler, conn: &Conn, pdu: &Pdu, code: ResultType, text: &str) {
    h.server.metrics.login_failures.inc();
    let res = ImLoginRes {
        server_time: now_secs(),
        result_code: code as i32,
        result_string: Some(text.to_owned()),
        online_status: None,
        user_info: None,
    };
    let _ = conn.reply(pdu, &res);
    conn.close_after_flush(CloseReason::Server("login refused"));
}

/// `CID_LOGIN_REQ_USERLOGIN`: validation through db_proxy, then the connection joins the
/// user's record, older sessions of the same class are kicked, and the login is announced.
/// Only a db_proxy link is needed: login_server and route_server are told when they come
/// back (WEAKNESSES 44).
pub(super) async fn login(h: &mut ClientHandler, conn: &Conn, pdu: Pdu) {
    if h.login_started {
        return;
    }
    let Some(req) = h.decode::<ImLoginReq>(conn, &pdu) else {
        return;
    };
    h.login_started = true;
    let s = h.server.clone();
    let ip = conn.peer().ip();
    if s.throttle.blocked(ip) {
        s.metrics.login_throttled.inc();
        tracing::info!(peer = %conn.peer(), "login refused: too many failures from this address");
        refuse(
            h,
            conn,
            &pdu,
            ResultType::RefuseReasonDbValidateFailed,
            TOO_MANY,
        );
        return;
    }
    if !s.db.any_usable() {
        refuse(
            h,
            conn,
            &pdu,
            ResultType::RefuseReasonNoDbServer,
            SERVER_ERROR,
        );
        return;
    }
    let validate = ImValidateReq {
        user_name: req.user_name.clone(),
        password: req.password.clone(),
        attach_data: None,
    };
    let answer =
        s.db.request(
            Key::name(&req.user_name),
            Pdu::from_msg(&validate, 0),
            cid::CID_OTHER_VALIDATE_RSP,
        )
        .await
        .and_then(|p| Ok(p.decode::<ImValidateRsp>()?));
    let rsp = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(peer = %conn.peer(), error = %e, "login: db_proxy did not validate");
            refuse(
                h,
                conn,
                &pdu,
                ResultType::RefuseReasonNoDbServer,
                SERVER_ERROR,
            );
            return;
        }
    };
    let info = match (rsp.result_code, rsp.user_info) {
        (0, Some(info)) if info.user_id != 0 => info,
        (code, _) => {
            s.throttle.failed(ip);
            tracing::info!(peer = %conn.peer(), result = code, "login refused by db_proxy");
            let text = rsp
                .result_string
                .unwrap_or_else(|| "用户名/密码错误".to_owned());
            refuse(
                h,
                conn,
                &pdu,
                ResultType::RefuseReasonDbValidateFailed,
                &text,
            );
            return;
        }
    };
    if conn.is_closed() {
        // The client left while we validated.
        return;
    }
    let user = info.user_id;
    let client_type = req.client_type as u32;
    // FLOWS.md 4 step 4: anything but online/offline/leave counts as online.
    let online_status = match UserStatType::try_from(req.online_status) {
        Ok(st) => st as u32,
        Err(_) => UserStatType::UserStatusOnline as u32,
    };
    let res = ImLoginRes {
        server_time: now_secs(),
        result_code: ResultType::RefuseReasonNone as i32,
        result_string: Some(SUCCESS.to_owned()),
        online_status: Some(online_status as i32),
        user_info: Some(info.clone()),
    };
    conn.set_identity(user, client_type);
    conn.set_deadline(None);
    conn.set_idle_timeout(Some(if is_mobile_client(client_type) {
        s.cfg.idle_mobile
    } else {
        s.cfg.idle_pc
    }));
    let pending_acks = Arc::new(AtomicU32::new(0));
    let entry = ConnEntry {
        conn: conn.clone(),
        client_type,
        online_status,
        pending_acks: pending_acks.clone(),
    };
    h.auth = Some(Auth {
        user_id: user,
        client_type,
        pending_acks,
    });
    // The answer is queued before the connection joins the table, so that no delivery
    // reaches the client ahead of its IMLoginRes, and written only once it has joined: a
    // client that asks for its unread messages or history as soon as it reads the answer
    // must find every later message delivered live. (Written before, a message stored
    // between that read and the join, with this thread preempted, went nowhere: the e2e
    // kill -9 test lost one so under CI load.) Online first, then the older session goes:
    // route_server sees the count go 1 -> 2 -> 1 instead of an offline/online flap.
    let _ = conn.reply_then(&pdu, &res, || {
        s.attach(user, entry, &info.user_nick_name);
    });
    s.metrics.logins.inc();
    tracing::info!(user_id = user, conn_id = conn.id(), peer = %conn.peer(), client_type,
        "logged in");
    if let Some(old) = s.sessions.first_same_class(user, client_type, conn.id()) {
        s.kick(user, &old, KickReasonType::KickReasonDuplicateUser);
    }
    let kick = ImServerKickUser {
        user_id: user,
        client_type: client_type as i32,
        reason: KickReasonType::KickReasonDuplicateUser as u32,
    };
    // Kicks are never resent from the window: a late copy could hit a newer login.
    s.routes.send(Pdu::from_msg(&kick, 0).to_frame(), false);
}

/// `CID_LOGIN_REQ_LOGINOUT` (FLOWS.md 4.2): the push token is cleared (mobile clients only:
/// a PC logging out must not silence the user's phone), the client gets IMLogoutRsp and the
/// connection closes once it is written.
pub(super) fn logout(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    if h.decode::<ImLogoutReq>(conn, &pdu).is_none() {
        return;
    }
    let s = &h.server;
    if auth.is_mobile() {
        let clear = ImDeviceTokenReq {
            user_id: auth.user_id,
            device_token: String::new(),
            client_type: Some(auth.client_type as i32),
            attach_data: None,
        };
        s.db.send(Key::User(auth.user_id), Pdu::from_msg(&clear, 0));
    }
    let _ = conn.reply(&pdu, &ImLogoutRsp { result_code: 0 });
    conn.close_after_flush(CloseReason::Server("logout"));
    s.detach(auth.user_id, conn.id());
}

/// `CID_LOGIN_REQ_DEVICETOKEN` (FLOWS.md 15.4): answered at once (with user_id set, fixing
/// WEAKNESSES 17), stored through db_proxy; PC clients have no push token and are ignored.
pub(super) fn device_token(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImDeviceTokenReq>(conn, &pdu) else {
        return;
    };
    if !auth.is_mobile() {
        return;
    }
    let _ = conn.reply(
        &pdu,
        &ImDeviceTokenRsp {
            user_id: auth.user_id,
            attach_data: None,
        },
    );
    req.user_id = auth.user_id;
    req.client_type = Some(auth.client_type as i32);
    req.attach_data = None;
    h.server
        .db
        .send(Key::User(auth.user_id), Pdu::from_msg(&req, 0));
}

/// `CID_LOGIN_REQ_KICKPCCLIENT` (FLOWS.md 4.1): a mobile client kicks the user's PC client
/// here and, through route_server, elsewhere.
pub(super) fn kick_pc_client(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    if h.decode::<ImKickPcClientReq>(conn, &pdu).is_none() || !auth.is_mobile() {
        return;
    }
    let s = &h.server;
    let user = auth.user_id;
    if let Some(pc) = s
        .sessions
        .first_same_class(user, ClientType::Mac as u32, conn.id())
    {
        s.kick(user, &pc, KickReasonType::KickReasonMobileKick);
    }
    let kick = ImServerKickUser {
        user_id: user,
        client_type: ClientType::Mac as i32,
        reason: KickReasonType::KickReasonMobileKick as u32,
    };
    s.routes.send(Pdu::from_msg(&kick, 0).to_frame(), false);
    let _ = conn.reply(
        &pdu,
        &ImKickPcClientRsp {
            user_id: user,
            result_code: 0,
        },
    );
}

/// `CID_LOGIN_REQ_PUSH_SHIELD` (FLOWS.md 15.5).
pub(super) async fn push_shield(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImPushShieldReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    relay_db(
        &h.server,
        conn,
        Key::User(auth.user_id),
        fwd,
        cid::CID_LOGIN_RES_PUSH_SHIELD,
        |_, _| {},
    )
    .await;
}

/// `CID_LOGIN_REQ_QUERY_PUSH_SHIELD` (FLOWS.md 15.5).
pub(super) async fn query_push_shield(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImQueryPushShieldReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let fwd = forward(&req, &pdu);
    relay_db(
        &h.server,
        conn,
        Key::User(auth.user_id),
        fwd,
        cid::CID_LOGIN_RES_QUERY_PUSH_SHIELD,
        |_, _| {},
    )
    .await;
}
