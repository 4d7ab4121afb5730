//! From storage types to wire types, and the size budget of replies that reach clients.
//!
//! Decisions 2: every PDU msg_server relays to a client stays below 400 KiB (the Android
//! client drops larger frames). Lists that could grow past it are cut here, before encoding,
//! using prost's `encoded_len`, so the reply is built once and never re-encoded.

use bytes::Bytes;
use im_proto::HEADER_LEN;
use im_proto::base::{DepartInfo, UserInfo};
use im_proto::codec::{CLIENT_OUTBOUND_CAP, SERVER_FRAME_CAP};
use im_storage::{Department, MessageContent, User};

/// Room left for what msg_server adds to a reply before relaying it (file_server addresses
/// in IMFileHasOfflineRsp) and for the attach_data it then clears (it may keep it).
const RELAY_MARGIN: usize = 4 * 1024;

/// Largest encoded body of a reply that msg_server relays to a client.
pub const CLIENT_BODY_BUDGET: usize = CLIENT_OUTBOUND_CAP - HEADER_LEN - RELAY_MARGIN;

/// Largest encoded body of a reply that stays between servers (e.g. msg_server's own group
/// lookup during fan-out).
pub const SERVER_BODY_BUDGET: usize = SERVER_FRAME_CAP - HEADER_LEN;

/// A user as the wire shows it (FLOWS.md 10: `user_real_name` is the login name).
pub fn user_info(u: &User) -> UserInfo {
    UserInfo {
        user_id: u.id,
        user_gender: u32::from(u.sex),
        user_nick_name: u.nick.clone(),
        avatar_url: u.avatar.clone(),
        department_id: u.depart_id,
        email: u.email.clone(),
        user_real_name: u.name.clone(),
        user_tel: u.phone.clone(),
        user_domain: u.domain.clone(),
        status: u32::from(u.status),
        sign_info: Some(u.sign_info.clone()),
    }
}

/// A department as the wire shows it.
pub fn depart_info(d: &Department) -> DepartInfo {
    DepartInfo {
        dept_id: d.id,
        priority: d.priority,
        dept_name: d.name.clone(),
        parent_dept_id: d.parent_id,
        dept_status: i32::from(d.status),
    }
}

/// What recent sessions and unread counts show as a conversation's last message: the text
/// as stored, or the encrypted "[语音]" placeholder for voice (FLOWS.md 18).
pub fn latest_msg_data(content: &MessageContent, voice_placeholder: &Bytes) -> Bytes {
    match content {
        MessageContent::Text(t) => Bytes::copy_from_slice(t),
        MessageContent::Audio(_) => voice_placeholder.clone(),
    }
}

/// Encoded size of one entry of a repeated message field with tag `tag`.
pub fn entry_len<M: prost::Message>(tag: u32, m: &M) -> usize {
    prost::encoding::message::encoded_len(tag, m)
}

/// How many leading `items` fit in `budget` bytes once `base` bytes are used.
pub fn fitting<M: prost::Message>(base: usize, tag: u32, items: &[M], budget: usize) -> usize {
    let mut used = base;
    for (i, m) in items.iter().enumerate() {
        used += entry_len(tag, m);
        if used > budget {
            return i;
        }
    }
    items.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_proto::buddy::ImAllUserRsp;
    use prost::Message as _;

    #[test]
    fn fitting_matches_the_encoded_size() {
        let users: Vec<UserInfo> = (1..=50)
            .map(|i| UserInfo {
                user_id: i,
                user_nick_name: "x".repeat(i as usize * 10),
                ..UserInfo::default()
            })
            .collect();
        let mut rsp = ImAllUserRsp {
            user_id: 1,
            latest_update_time: 12345,
            user_list: Vec::new(),
            attach_data: Some(Bytes::from_static(&[0; 12])),
        };
        let base = rsp.encoded_len();
        let budget = 5000;
        let n = fitting(base, 3, &users, budget);
        assert!(n > 0 && n < users.len());
        rsp.user_list = users[..n].to_vec();
        assert!(rsp.encoded_len() <= budget);
        rsp.user_list.push(users[n].clone());
        assert!(rsp.encoded_len() > budget);
        assert_eq!(fitting(base, 3, &users, usize::MAX), users.len());
    }
}
