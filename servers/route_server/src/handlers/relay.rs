//! What route_server forwards (Decisions 7). The received PDU is encoded once and the same
//! bytes go to every target; bodies are decoded only to read the ids routed on.
//!
//! Targeted (only the links where the named users are online, never back to the sender):
//! single-chat IMMsgData, IMMsgDataReadNotify, IMP2PCmdMsg, IMRemoveSessionNotify,
//! IMFileNotify, IMServerKickUser. Broadcast (route_server keeps no member lists): group
//! IMMsgData and IMGroupChangeMemberNotify to every other link, IMSignInfoChangedNotify to
//! every link including the sender (FLOWS.md 10).

use im_proto::Pdu;
use im_proto::base::MsgType;
use im_proto::buddy::{ImRemoveSessionNotify, ImSignInfoChangedNotify};
use im_proto::file::ImFileNotify;
use im_proto::group::ImGroupChangeMemberNotify;
use im_proto::message::{ImMsgData, ImMsgDataReadNotify};
use im_proto::server::ImServerKickUser;
use im_proto::switch_service::Imp2pCmdMsg;

use super::LinkHandler;
use crate::metrics::Class;

/// Group message types (0x11 text, 0x12 audio).
fn is_group(msg_type: i32) -> bool {
    msg_type == MsgType::GroupText as i32 || msg_type == MsgType::GroupAudio as i32
}

/// Routes to the links of `users`, except the sender's.
fn to_users(h: &LinkHandler, class: Class, pdu: &Pdu, users: &[u32]) {
    h.state.route(class, &pdu.to_frame(), users, h.link.id);
}

/// `CID_MSG_DATA` (FLOWS.md 6 step 5, 12.6 step 5): single chat to the links of the sender's
/// other devices and the receiver; group messages to every other link.
pub(super) fn msg_data(h: &mut LinkHandler, pdu: &Pdu) {
    let Some(msg) = h.decode::<ImMsgData>(pdu) else {
        h.state.metrics.routed_in(Class::SingleMsg);
        return;
    };
    if is_group(msg.msg_type) {
        h.state.metrics.routed_in(Class::GroupMsg);
        h.state
            .broadcast(Class::GroupMsg, &pdu.to_frame(), Some(h.link.id));
    } else {
        h.state.metrics.routed_in(Class::SingleMsg);
        to_users(
            h,
            Class::SingleMsg,
            pdu,
            &[msg.from_user_id, msg.to_session_id],
        );
    }
}

/// `CID_MSG_READ_NOTIFY` (FLOWS.md 6 step 8): the reader's devices elsewhere.
pub(super) fn read_notify(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::ReadNotify);
    if let Some(msg) = h.decode::<ImMsgDataReadNotify>(pdu) {
        to_users(h, Class::ReadNotify, pdu, &[msg.user_id]);
    }
}

/// `CID_SWITCH_P2P_CMD` (FLOWS.md 13): both ends' connections elsewhere.
pub(super) fn p2p_cmd(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::P2p);
    if let Some(msg) = h.decode::<Imp2pCmdMsg>(pdu) {
        to_users(h, Class::P2p, pdu, &[msg.from_user_id, msg.to_user_id]);
    }
}

/// `CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY` (FLOWS.md 8): the user's devices elsewhere.
pub(super) fn remove_session_notify(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::RemoveSession);
    if let Some(msg) = h.decode::<ImRemoveSessionNotify>(pdu) {
        to_users(h, Class::RemoveSession, pdu, &[msg.user_id]);
    }
}

/// `CID_FILE_NOTIFY` (FLOWS.md 14.1 step 5): the receiver's (and sender's) connections
/// elsewhere.
pub(super) fn file_notify(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::FileNotify);
    if let Some(msg) = h.decode::<ImFileNotify>(pdu) {
        to_users(
            h,
            Class::FileNotify,
            pdu,
            &[msg.to_user_id, msg.from_user_id],
        );
    }
}

/// `CID_OTHER_SERVER_KICK_USER` (FLOWS.md 4.1): the other msg_servers holding the user.
pub(super) fn server_kick_user(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::Kick);
    if let Some(msg) = h.decode::<ImServerKickUser>(pdu) {
        to_users(h, Class::Kick, pdu, &[msg.user_id]);
    }
}

/// `CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY` (FLOWS.md 10): every link, the sender's too.
pub(super) fn sign_info_changed(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::SignInfo);
    if h.decode::<ImSignInfoChangedNotify>(pdu).is_some() {
        h.state.broadcast(Class::SignInfo, &pdu.to_frame(), None);
    }
}

/// `CID_GROUP_CHANGE_MEMBER_NOTIFY` (FLOWS.md 12.4, 16): every other link; the sender has
/// told its own clients already (an http_msg_server sender has none).
pub(super) fn group_change_member(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::GroupMember);
    if h.decode::<ImGroupChangeMemberNotify>(pdu).is_some() {
        h.state
            .broadcast(Class::GroupMember, &pdu.to_frame(), Some(h.link.id));
    }
}
