//! SID_BUDDY_LIST: recent sessions (FLOWS.md 8), users, departments and the signature
//! (FLOWS.md 10).
//!
//! The user and department lists are incremental: the client sends the newest `updated` it
//! has and gets what changed since. A list that would not fit a client frame (Decisions 2) is
//! cut to its oldest-updated part, and `latest_update_time` says how far it got, so the
//! client's next request continues from there.

use im_proto::Pdu;
use im_proto::base::{ContactSessionInfo, DepartInfo, SessionStatusType, UserInfo};
use im_proto::buddy::{
    ImAllUserReq, ImAllUserRsp, ImChangeSignInfoReq, ImChangeSignInfoRsp, ImDepartmentReq,
    ImDepartmentRsp, ImRecentContactSessionReq, ImRecentContactSessionRsp, ImRemoveSessionReq,
    ImRemoveSessionRsp, ImUsersInfoReq, ImUsersInfoRsp,
};
use im_storage::{Department, Store, Timestamp, User};
use prost::Message as _;

use super::message::session_type;
use super::{Dispatch, Req, decode};
use crate::convert::{CLIENT_BODY_BUDGET, depart_info, fitting, latest_msg_data, user_info};
use crate::server::Shared;

/// Most recent sessions in one answer (the original's LIMIT 100).
pub const MAX_RECENT_SESSIONS: u32 = 100;

/// Most ids looked up by one user-info request.
pub const MAX_USER_IDS: usize = 10_000;

/// Longest signature (the original's check; the column is varchar(128)).
pub const MAX_SIGN_INFO_BYTES: usize = 128;

/// Room for a u32 field that is filled in after the budget is computed.
const U32_FIELD: usize = 6;

/// CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST: sessions changed since a time, newest
/// first, each with its last message.
pub fn recent_sessions<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImRecentContactSessionReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let sessions = sh
        .store
        .recent_sessions(m.user_id, m.latest_update_time, MAX_RECENT_SESSIONS);
    Dispatch::Work(Box::pin(async move {
        let list = match sessions.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "recent sessions not read");
                return req.done(false);
            }
        };
        let entries: Vec<ContactSessionInfo> = list
            .iter()
            .map(|s| ContactSessionInfo {
                session_id: s.peer_id,
                session_type: s.session_type as i32,
                session_status: SessionStatusType::SessionStatusOk as i32,
                updated_time: s.updated,
                latest_msg_id: s.last.msg_id,
                latest_msg_data: latest_msg_data(&s.last.content, &sh.voice_placeholder),
                latest_msg_type: s.last.msg_type.as_u32() as i32,
                // The real sender (the original always names the peer, WEAKNESSES 30).
                latest_msg_from_user_id: s.last.from_id,
            })
            .collect();
        let mut rsp = ImRecentContactSessionRsp {
            user_id: m.user_id,
            contact_session_list: Vec::new(),
            attach_data: m.attach_data,
        };
        // Newest first; the client continues from the newest `updated` it holds, so a cut
        // keeps the oldest ones (the end of the list).
        let mut entries = entries;
        entries.reverse();
        let n = fitting(rsp.encoded_len(), 2, &entries, CLIENT_BODY_BUDGET);
        entries.truncate(n);
        entries.reverse();
        rsp.contact_session_list = entries;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_BUDDY_LIST_USER_INFO_REQUEST: users by id (any status; unknown ids left out).
pub fn users_info<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(mut m) = decode::<ImUsersInfoReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    m.user_id_list.sort_unstable();
    m.user_id_list.dedup();
    super::note_cut(sh, &req, "user ids", m.user_id_list.len(), MAX_USER_IDS);
    m.user_id_list.truncate(MAX_USER_IDS);
    Dispatch::Work(Box::pin(async move {
        let mut users = match sh.store.users_by_ids(&m.user_id_list).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "users not read");
                return req.done(false);
            }
        };
        users.sort_by_key(|u| u.id);
        let infos: Vec<UserInfo> = users.iter().map(user_info).collect();
        let mut rsp = ImUsersInfoRsp {
            user_id: m.user_id,
            user_info_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let n = fitting(rsp.encoded_len(), 2, &infos, CLIENT_BODY_BUDGET);
        let mut infos = infos;
        infos.truncate(n);
        rsp.user_info_list = infos;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_BUDDY_LIST_REMOVE_SESSION_REQ: hides a session and clears its unread count.
pub fn remove_session<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImRemoveSessionReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let reply = move |req: &Req, code: u32, m: ImRemoveSessionReq| {
        req.reply(&ImRemoveSessionRsp {
            user_id: m.user_id,
            result_code: code,
            session_type: m.session_type,
            session_id: m.session_id,
            attach_data: m.attach_data,
        });
    };
    let Some(st) = session_type(m.session_type) else {
        // No session of an unknown type exists: "not found".
        reply(&req, 1, m);
        return req.finished(true);
    };
    let removed = sh.store.remove_session(m.user_id, st, m.session_id);
    Dispatch::Work(Box::pin(async move {
        let (code, ok) = match removed.await {
            Ok(true) => (0, true),
            Ok(false) => (1, true),
            Err(e) => {
                tracing::warn!(user_id = m.user_id, session_id = m.session_id, error = %e, "session not removed");
                (1, false)
            }
        };
        reply(&req, code, m);
        req.done(ok)
    }))
}

/// CID_BUDDY_LIST_ALL_USER_REQUEST: users changed since `latest_update_time` (every active
/// user for 0), read from the store every time (no in-memory gate, WEAKNESSES 32).
pub fn all_users<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImAllUserReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let changed = sh.store.changed_users(m.latest_update_time);
    Dispatch::Work(Box::pin(async move {
        let users = match changed.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "changed users not read");
                return req.done(false);
            }
        };
        let mut rsp = ImAllUserRsp {
            user_id: m.user_id,
            latest_update_time: 0,
            user_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let base = rsp.encoded_len() + U32_FIELD;
        let (list, latest) = cut_users(users, m.latest_update_time, base, CLIENT_BODY_BUDGET);
        rsp.user_list = list;
        rsp.latest_update_time = latest;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// The oldest-updated users that fit, and the `latest_update_time` to answer: the newest
/// `updated` included, or `since` when nothing is. The next request asks for
/// `updated >= latest`, so users sharing the boundary time are sent again, never skipped.
pub fn cut_users(
    mut users: Vec<User>,
    since: Timestamp,
    base: usize,
    budget: usize,
) -> (Vec<UserInfo>, Timestamp) {
    users.sort_by_key(|u| (u.updated, u.id));
    let infos: Vec<UserInfo> = users.iter().map(user_info).collect();
    let n = fitting(base, 3, &infos, budget);
    if n < infos.len() {
        tracing::debug!(
            total = infos.len(),
            sent = n,
            "user list cut to fit a client frame; the client asks again for the rest"
        );
    }
    let latest = users[..n]
        .iter()
        .map(|u| u.updated)
        .max()
        .unwrap_or(since)
        .max(since);
    let mut infos = infos;
    infos.truncate(n);
    (infos, latest)
}

/// CID_BUDDY_LIST_DEPARTMENT_REQUEST: departments changed since `latest_update_time`.
pub fn departments<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImDepartmentReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let changed = sh.store.changed_departments(m.latest_update_time);
    Dispatch::Work(Box::pin(async move {
        let depts = match changed.await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "departments not read");
                return req.done(false);
            }
        };
        let mut rsp = ImDepartmentRsp {
            user_id: m.user_id,
            latest_update_time: 0,
            dept_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let base = rsp.encoded_len() + U32_FIELD;
        let (list, latest) = cut_departments(depts, m.latest_update_time, base, CLIENT_BODY_BUDGET);
        rsp.dept_list = list;
        rsp.latest_update_time = latest;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// Like [`cut_users`], but the next department request asks for `updated > latest`
/// (strictly), so a cut must not split departments sharing one `updated`: the cut backs off
/// to the previous time, and if even the first time does not fit, `latest` stays just below
/// it so that the client asks for it again.
pub fn cut_departments(
    mut depts: Vec<Department>,
    since: Timestamp,
    base: usize,
    budget: usize,
) -> (Vec<DepartInfo>, Timestamp) {
    depts.sort_by_key(|d| (d.updated, d.id));
    let infos: Vec<DepartInfo> = depts.iter().map(depart_info).collect();
    let mut n = fitting(base, 3, &infos, budget);
    let mut latest = depts[..n].iter().map(|d| d.updated).max().unwrap_or(since);
    if n < depts.len() && n > 0 && depts[n].updated == depts[n - 1].updated {
        let boundary = depts[n].updated;
        let whole = depts[..n]
            .iter()
            .take_while(|d| d.updated < boundary)
            .count();
        if whole > 0 {
            n = whole;
            latest = depts[n - 1].updated;
        } else {
            latest = boundary.saturating_sub(1).max(since);
        }
    }
    let mut infos = infos;
    infos.truncate(n);
    (infos, latest.max(since))
}

/// CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST: sets the signature (at most 128 bytes).
pub fn change_sign_info<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImChangeSignInfoReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let answer = |req: &Req, code: u32, m: ImChangeSignInfoReq| {
        let ok = code == 0;
        req.reply(&ImChangeSignInfoRsp {
            user_id: m.user_id,
            result_code: code,
            sign_info: ok.then_some(m.sign_info),
            attach_data: m.attach_data,
        });
    };
    if m.sign_info.len() > MAX_SIGN_INFO_BYTES {
        answer(&req, 1, m);
        return req.finished(true);
    }
    Dispatch::Work(Box::pin(async move {
        let (code, ok) = match sh.store.set_sign_info(m.user_id, &m.sign_info).await {
            Ok(true) => (0, true),
            Ok(false) => (1, true),
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "signature not stored");
                (1, false)
            }
        };
        answer(&req, code, m);
        req.done(ok)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u32, updated: u32) -> User {
        User {
            id,
            updated,
            nick: "n".repeat(40),
            ..User::default()
        }
    }

    fn dept(id: u32, updated: u32) -> Department {
        Department {
            id,
            updated,
            name: "d".repeat(40),
            ..Department::default()
        }
    }

    #[test]
    fn users_are_cut_oldest_first() {
        let users: Vec<User> = (1..=100).map(|i| user(i, 1000 + (101 - i))).collect();
        let (all, latest) = cut_users(users.clone(), 0, 10, usize::MAX);
        assert_eq!(all.len(), 100);
        assert_eq!(latest, 1100);
        assert_eq!(all[0].user_id, 100, "oldest first");
        let (some, latest) = cut_users(users, 0, 10, 2000);
        assert!(!some.is_empty() && some.len() < 100);
        // The oldest ones, and latest = the newest included.
        assert_eq!(some[0].user_id, 100);
        let last = some.last().map(|u| u.user_id).unwrap_or(0);
        assert_eq!(latest, 1000 + (101 - last));
        assert_eq!(cut_users(Vec::new(), 77, 10, 2000).1, 77);
    }

    #[test]
    fn departments_never_split_a_time() {
        // Three at t=5, three at t=6.
        let d: Vec<Department> = (1..=6)
            .map(|i| dept(i, if i <= 3 { 5 } else { 6 }))
            .collect();
        let one = depart_info(&d[0]);
        let each = crate::convert::entry_len(3, &one);
        // Room for four: the cut backs off to the three at t=5.
        let (list, latest) = cut_departments(d.clone(), 0, 0, each * 4);
        assert_eq!(list.len(), 3);
        assert_eq!(latest, 5);
        // Room for two: not even t=5 fits whole; latest stays below 5.
        let (list, latest) = cut_departments(d.clone(), 0, 0, each * 2);
        assert_eq!(list.len(), 2);
        assert_eq!(latest, 4);
        let (list, latest) = cut_departments(d, 0, 0, usize::MAX);
        assert_eq!((list.len(), latest), (6, 6));
    }
}
