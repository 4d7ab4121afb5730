//! SID_GROUP (FLOWS.md 12): group lists, info, creation, member changes and push mute.
//!
//! Failures are answered (result 1) where the original stays silent (unknown group, invalid
//! change type: WEAKNESSES 20), so the requester is never left waiting. http_msg_server's
//! requests carry user_id 0, the administrator, whom the store always allows.

use im_proto::Pdu;
use im_proto::attach::{AttachRecord, kind};
use im_proto::base::{GroupInfo, GroupVersionInfo};
use im_proto::group::{
    ImGroupChangeMemberReq, ImGroupChangeMemberRsp, ImGroupCreateReq, ImGroupCreateRsp,
    ImGroupInfoListReq, ImGroupInfoListRsp, ImGroupShieldReq, ImGroupShieldRsp,
    ImNormalGroupListReq, ImNormalGroupListRsp,
};
use im_storage::{
    ChangeOutcome, GroupKind, MemberChange, NewGroup, ShieldOutcome, StorageError, Store,
};
use prost::Message as _;

use super::{Dispatch, Req, decode};
use crate::convert::{CLIENT_BODY_BUDGET, SERVER_BODY_BUDGET, fitting};
use crate::server::Shared;

/// Most groups looked up by one info request.
pub const MAX_INFO_IDS: usize = 1000;

/// Most members named in one create or change request.
pub const MAX_MEMBERS_PER_REQUEST: usize = 5000;

/// Longest group name or avatar URL (the columns are varchar(256)).
pub const MAX_GROUP_TEXT_BYTES: usize = 256;

/// CID_GROUP_NORMAL_LIST_REQUEST: the normal groups the user is in, with versions.
pub fn normal_list<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImNormalGroupListReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let groups = sh.store.normal_groups(m.user_id);
    Dispatch::Work(Box::pin(async move {
        let groups = match groups.await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "group list not read");
                return req.done(false);
            }
        };
        let list: Vec<GroupVersionInfo> = groups
            .into_iter()
            .map(|(group_id, version)| GroupVersionInfo { group_id, version })
            .collect();
        let mut rsp = ImNormalGroupListRsp {
            user_id: m.user_id,
            group_version_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let n = fitting(rsp.encoded_len(), 2, &list, CLIENT_BODY_BUDGET);
        let mut list = list;
        list.truncate(n);
        rsp.group_version_list = list;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_GROUP_INFO_REQUEST: the groups whose stored version is newer than the one given
/// (0 forces), with their members. Also msg_server's own lookup during a group message's
/// fan-out (attach_data is then a record carrying the message).
pub fn info<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(mut m) = decode::<ImGroupInfoListReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    super::note_cut(sh, &req, "groups", m.group_version_list.len(), MAX_INFO_IDS);
    m.group_version_list.truncate(MAX_INFO_IDS);
    let ids: Vec<u32> = m.group_version_list.iter().map(|g| g.group_id).collect();
    // msg_server's internal fan-out lookup is never relayed to a client: it may be larger.
    let internal = m
        .attach_data
        .as_ref()
        .and_then(|a| AttachRecord::decode(a).ok())
        .is_some_and(|r| r.kind == kind::HANDLE_AND_PDU);
    let budget = if internal {
        SERVER_BODY_BUDGET
    } else {
        CLIENT_BODY_BUDGET
    };
    Dispatch::Work(Box::pin(async move {
        let groups = match sh.store.groups(&ids).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "group info not read");
                return req.done(false);
            }
        };
        let known = |id: u32| {
            m.group_version_list
                .iter()
                .filter(|g| g.group_id == id)
                .map(|g| g.version)
                .min()
                .unwrap_or(0)
        };
        let infos: Vec<GroupInfo> = groups
            .iter()
            .filter(|g| g.version > known(g.id))
            .map(|g| {
                let mut members: Vec<u32> = g.members.iter().map(|x| x.user_id).collect();
                members.sort_unstable();
                GroupInfo {
                    group_id: g.id,
                    version: g.version,
                    group_name: g.name.clone(),
                    group_avatar: g.avatar.clone(),
                    group_creator_id: g.creator,
                    group_type: g.kind as i32,
                    // The original always sends 0 (the per-user mute is in group_set).
                    shield_status: 0,
                    group_member_list: members,
                }
            })
            .collect();
        let mut rsp = ImGroupInfoListRsp {
            user_id: m.user_id,
            group_info_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let n = fitting(rsp.encoded_len(), 2, &infos, budget);
        let mut infos = infos;
        infos.truncate(n);
        rsp.group_info_list = infos;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_GROUP_CREATE_REQUEST: creates a group (clients may only create temporary ones;
/// msg_server filters that, http_msg_server creates normal ones as user 0).
pub fn create<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGroupCreateReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let mut members = m.member_id_list.clone();
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    members.retain(|id| seen.insert(*id));
    let answer = move |req: &Req, m: ImGroupCreateReq, members: Vec<u32>, id: Option<u32>| {
        req.reply(&ImGroupCreateRsp {
            user_id: m.user_id,
            result_code: u32::from(id.is_none()),
            group_id: id,
            group_name: m.group_name,
            user_id_list: members,
            attach_data: m.attach_data,
        });
    };
    let kind = u32::try_from(m.group_type)
        .ok()
        .and_then(GroupKind::from_u32);
    let refused = match kind {
        None => Some("unknown group type"),
        Some(_) if m.group_name.is_empty() => Some("empty name"),
        Some(_) if members.is_empty() => Some("no members"),
        Some(_) if members.len() > MAX_MEMBERS_PER_REQUEST => Some("too many members"),
        Some(_)
            if m.group_name.len() > MAX_GROUP_TEXT_BYTES
                || m.group_avatar.len() > MAX_GROUP_TEXT_BYTES =>
        {
            Some("name or avatar too long")
        }
        Some(_) => None,
    };
    let (Some(kind), None) = (kind, refused) else {
        tracing::debug!(
            user_id = m.user_id,
            why = refused.unwrap_or(""),
            "group not created"
        );
        answer(&req, m, members, None);
        return req.finished(true);
    };
    let created = sh.store.create_group(NewGroup {
        creator: m.user_id,
        name: m.group_name.clone(),
        avatar: m.group_avatar.clone(),
        kind,
        members: members.clone(),
    });
    Dispatch::Work(Box::pin(async move {
        let (id, ok) = match created.await {
            Ok(id) => (Some(id), true),
            Err(StorageError::Invalid(why)) => {
                tracing::debug!(user_id = m.user_id, why, "group not created");
                (None, true)
            }
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "group not created");
                (None, false)
            }
        };
        answer(&req, m, members, id);
        req.done(ok)
    }))
}

/// CID_GROUP_CHANGE_MEMBER_REQUEST: adds or removes members (creator only, except adding
/// to a temporary group, and user 0 always; the store decides).
pub fn change_member<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGroupChangeMemberReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let answer = |req: &Req, m: ImGroupChangeMemberReq, lists: Option<(Vec<u32>, Vec<u32>)>| {
        let ok = lists.is_some();
        let (cur, chg) = lists.unwrap_or_default();
        req.reply(&ImGroupChangeMemberRsp {
            user_id: m.user_id,
            change_type: m.change_type,
            result_code: u32::from(!ok),
            group_id: m.group_id,
            cur_user_id_list: cur,
            chg_user_id_list: chg,
            attach_data: m.attach_data,
        });
    };
    let change = match m.change_type {
        1 => MemberChange::Add,
        2 => MemberChange::Remove,
        other => {
            tracing::debug!(
                user_id = m.user_id,
                change_type = other,
                "unknown group change type"
            );
            answer(&req, m, None);
            return req.finished(true);
        }
    };
    let mut users = m.member_id_list.clone();
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    users.retain(|id| seen.insert(*id));
    if users.is_empty() || users.len() > MAX_MEMBERS_PER_REQUEST {
        answer(&req, m, None);
        return req.finished(true);
    }
    Dispatch::Work(Box::pin(async move {
        let changed = sh
            .store
            .change_members(m.user_id, m.group_id, change, &users);
        match changed.await {
            Ok(ChangeOutcome::Changed {
                mut current,
                changed,
                ..
            }) => {
                current.sort_unstable();
                answer(&req, m, Some((current, changed)));
                req.done(true)
            }
            Ok(refused) => {
                tracing::debug!(user_id = m.user_id, group_id = m.group_id, outcome = ?refused, "group members not changed");
                answer(&req, m, None);
                req.done(true)
            }
            Err(e) => {
                tracing::warn!(user_id = m.user_id, group_id = m.group_id, error = %e, "group members not changed");
                answer(&req, m, None);
                req.done(false)
            }
        }
    }))
}

/// CID_GROUP_SHIELD_GROUP_REQUEST: mutes or unmutes a group's pushes for the user.
pub fn shield<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGroupShieldReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let stored = sh
        .store
        .set_group_shield(m.user_id, m.group_id, m.shield_status != 0);
    Dispatch::Work(Box::pin(async move {
        let (code, ok) = match stored.await {
            Ok(ShieldOutcome::Done) => (0, true),
            // The original says nothing for an unknown group; we say "failed".
            Ok(ShieldOutcome::NotMember | ShieldOutcome::NoSuchGroup) => (1, true),
            Err(e) => {
                tracing::warn!(user_id = m.user_id, group_id = m.group_id, error = %e, "group shield not stored");
                (1, false)
            }
        };
        req.reply(&ImGroupShieldRsp {
            user_id: m.user_id,
            group_id: m.group_id,
            result_code: code,
            attach_data: m.attach_data,
        });
        req.done(ok)
    }))
}
