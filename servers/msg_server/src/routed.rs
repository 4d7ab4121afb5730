//! PDUs from route_server: messages and notifies for local users, presence, kicks (FLOWS.md
//! 4.1, 6, 8, 10, 11, 12, 13). Everything a client receives this way carries seq 0 and no
//! attach_data, whatever the sending msg_server put there (an original one relays seq and
//! attach unchanged).

use std::sync::Arc;

use im_proto::admin::ImAdminKickUserReq;
use im_proto::base::{KickReasonType, MsgType};
use im_proto::buddy::{
    ImRemoveSessionNotify, ImSignInfoChangedNotify, ImUserStatNotify, ImpcLoginStatusNotify,
};
use im_proto::file::ImFileNotify;
use im_proto::group::ImGroupChangeMemberNotify;
use im_proto::message::{ImMsgData, ImMsgDataReadNotify};
use im_proto::server::{ImServerKickUser, ImServerPcLoginStatusNotify};
use im_proto::switch_service::Imp2pCmdMsg;
use im_proto::{Command, Pdu, cid};

use crate::server::Server;
use crate::state::PcLogin;
use crate::state::dedup::MsgKey;
use crate::wire::{body_hash, client_frame, stamp_of};

fn decode<M: Command>(s: &Server, pdu: &Pdu) -> Option<M> {
    match pdu.decode::<M>() {
        Ok(m) => Some(m),
        Err(e) => {
            s.metrics.decode_errors.inc();
            tracing::warn!(cmd = pdu.command_name(), error = %e,
                "dropping a route_server PDU whose body does not decode");
            None
        }
    }
}

/// One PDU from a route_server link.
pub async fn handle(s: &Arc<Server>, pdu: Pdu) {
    s.metrics.routed_in.inc();
    if pdu.command_id() != cid::CID_MSG_DATA
        && let Some(stamp) = stamp_of(&pdu)
        && !s.recent.first_time(MsgKey::Stamped(
            pdu.command_id(),
            stamp,
            body_hash(&pdu.body),
        ))
    {
        // A notify our resend window sent again.
        s.metrics.dup_drops.inc();
        return;
    }
    match pdu.command_id() {
        cid::CID_MSG_DATA => msg_data(s, &pdu).await,
        cid::CID_MSG_READ_NOTIFY => read_notify(s, &pdu),
        cid::CID_SWITCH_P2P_CMD => p2p_cmd(s, &pdu),
        cid::CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY => remove_session_notify(s, &pdu),
        cid::CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY => sign_info_changed(s, &pdu).await,
        cid::CID_BUDDY_LIST_STATUS_NOTIFY => user_stat_notify(s, &pdu).await,
        cid::CID_GROUP_CHANGE_MEMBER_NOTIFY => group_change_member(s, &pdu),
        cid::CID_OTHER_LOGIN_STATUS_NOTIFY => pc_login_status(s, &pdu),
        cid::CID_OTHER_SERVER_KICK_USER => server_kick_user(s, &pdu),
        cid::CID_ADMIN_KICK_USER_REQ => admin_kick_user(s, &pdu),
        cid::CID_FILE_NOTIFY => file_notify(s, &pdu),
        _ => {
            // Late answers to requests that timed out, and whatever a newer route_server
            // may send: ignored, as PROTOCOL.md 4.8 says.
            tracing::debug!(cmd = pdu.command_name(), "route_server PDU ignored");
        }
    }
}

/// IMMsgData (FLOWS.md 6 step 6, 12.6 step 5): single chat to the local connections of both
/// users, group chat to the local connections of every member (from the member cache).
/// Duplicates from a resend are dropped by (session, msg_id).
async fn msg_data(s: &Arc<Server>, pdu: &Pdu) {
    let Some(msg) = decode::<ImMsgData>(s, pdu) else {
        return;
    };
    let group =
        msg.msg_type == MsgType::GroupText as i32 || msg.msg_type == MsgType::GroupAudio as i32;
    let key = if group {
        MsgKey::Group(msg.to_session_id, msg.msg_id)
    } else {
        MsgKey::single(msg.from_user_id, msg.to_session_id, msg.msg_id)
    };
    if !s.recent.first_time(key) {
        s.metrics.dup_drops.inc();
        return;
    }
    let frame = client_frame(pdu);
    if group {
        // In the steady state the member list is cached; a miss waits for db_proxy here,
        // which keeps this link's messages in order.
        if let Some(members) = s.group_members(msg.to_session_id, msg.from_user_id).await {
            s.deliver_msg_many(&members.ids, &frame, None).await;
        }
    } else {
        s.deliver_msg(msg.to_session_id, &frame, None);
        if msg.from_user_id != msg.to_session_id {
            s.deliver_msg(msg.from_user_id, &frame, None);
        }
    }
}

/// IMMsgDataReadNotify: the reader's connections here.
fn read_notify(s: &Server, pdu: &Pdu) {
    if let Some(n) = decode::<ImMsgDataReadNotify>(s, pdu) {
        s.sessions.send_to_user(n.user_id, &client_frame(pdu), None);
    }
}

/// IMP2PCmdMsg: both ends' connections here.
fn p2p_cmd(s: &Server, pdu: &Pdu) {
    if let Some(m) = decode::<Imp2pCmdMsg>(s, pdu) {
        let frame = client_frame(pdu);
        s.sessions.send_to_user(m.from_user_id, &frame, None);
        if m.to_user_id != m.from_user_id {
            s.sessions.send_to_user(m.to_user_id, &frame, None);
        }
    }
}

/// IMRemoveSessionNotify: the user's connections here.
fn remove_session_notify(s: &Server, pdu: &Pdu) {
    if let Some(n) = decode::<ImRemoveSessionNotify>(s, pdu) {
        s.sessions.send_to_user(n.user_id, &client_frame(pdu), None);
    }
}

/// IMSignInfoChangedNotify: every connection of every user (FLOWS.md 10; Decisions 12).
async fn sign_info_changed(s: &Server, pdu: &Pdu) {
    if decode::<ImSignInfoChangedNotify>(s, pdu).is_some() {
        s.sessions.broadcast(&client_frame(pdu), |_| true).await;
    }
}

/// IMUserStatNotify: the PC connections of every user (FLOWS.md 11; mobile clients never get
/// these, Decisions 8 and 12).
async fn user_stat_notify(s: &Server, pdu: &Pdu) {
    if decode::<ImUserStatNotify>(s, pdu).is_some() {
        s.sessions
            .broadcast(&client_frame(pdu), |c| !c.is_mobile())
            .await;
    }
}

/// IMGroupChangeMemberNotify: every connection here of the users in both lists; the cached
/// member list is dropped (Decisions 10).
fn group_change_member(s: &Server, pdu: &Pdu) {
    let Some(n) = decode::<ImGroupChangeMemberNotify>(s, pdu) else {
        return;
    };
    s.groups.invalidate(n.group_id);
    let frame = client_frame(pdu);
    let mut users: Vec<u32> = n
        .cur_user_id_list
        .iter()
        .chain(&n.chg_user_id_list)
        .copied()
        .collect();
    users.sort_unstable();
    users.dedup();
    for u in users {
        s.sessions.send_to_user(u, &frame, None);
    }
}

/// IMServerPCLoginStatusNotify: stored on the local user, and its mobile connections get
/// IMPCLoginStatusNotify (1 online, 2 offline).
fn pc_login_status(s: &Server, pdu: &Pdu) {
    let Some(n) = decode::<ImServerPcLoginStatusNotify>(s, pdu) else {
        return;
    };
    let online = n.login_status == 1;
    let flag = if online {
        PcLogin::Online
    } else {
        PcLogin::Offline
    };
    if !s.sessions.set_pc_login(n.user_id, flag) {
        return;
    }
    let notify = ImpcLoginStatusNotify {
        user_id: n.user_id,
        login_stat: if online { 1 } else { 2 },
    };
    let frame = Pdu::from_msg(&notify, 0).to_frame();
    s.sessions
        .send_where(n.user_id, &frame, false, |c| c.is_mobile());
}

/// IMServerKickUser (FLOWS.md 4.1): the first local connection of that user in the class of
/// `client_type`, kicked with the given reason and closed.
fn server_kick_user(s: &Server, pdu: &Pdu) {
    let Some(k) = decode::<ImServerKickUser>(s, pdu) else {
        return;
    };
    let reason = KickReasonType::try_from(k.reason as i32)
        .unwrap_or(KickReasonType::KickReasonDuplicateUser);
    if let Some(c) = s
        .sessions
        .first_same_class(k.user_id, k.client_type as u32, 0)
    {
        s.kick(k.user_id, &c, reason);
    }
}

/// Our IMAdminKickUserReq (`imctl kick` through route_server): every local connection of
/// the user of that client type (0 = all), kicked with reason 1 and closed.
fn admin_kick_user(s: &Server, pdu: &Pdu) {
    let Some(k) = decode::<ImAdminKickUserReq>(s, pdu) else {
        return;
    };
    let user = k.user_id.unwrap_or(0);
    for c in s.sessions.matching(user, k.client_type.unwrap_or(0)) {
        s.kick(user, &c, KickReasonType::KickReasonDuplicateUser);
    }
}

/// IMFileNotify (FLOWS.md 14.1 step 5): the receiver's connections here.
fn file_notify(s: &Server, pdu: &Pdu) {
    if let Some(n) = decode::<ImFileNotify>(s, pdu) {
        s.sessions
            .send_to_user(n.to_user_id, &client_frame(pdu), None);
    }
}
