//! Groups (created and changed as an administrator, requester 0, through the same store code
//! as clients' requests so the member rows, the cache and the message counter stay
//! consistent: FLOWS.md 22), discovery items (FLOWS.md 21) and dead push tokens.
//!
//! db_proxy has no route_server link: after a member change imctl asks route_server to
//! broadcast the member-change notify (Decisions 10) with the lists answered here.

use im_proto::admin::{
    AdminDiscovery, AdminGroup, AdminResult, ImAdminDiscoveryAddReq, ImAdminDiscoveryAddRsp,
    ImAdminDiscoveryListReq, ImAdminDiscoveryListRsp, ImAdminDiscoveryRemoveReq,
    ImAdminDiscoveryRemoveRsp, ImAdminGroupCreateReq, ImAdminGroupCreateRsp, ImAdminGroupListReq,
    ImAdminGroupListRsp, ImAdminGroupMembersReq, ImAdminGroupMembersRsp, ImAdminRemoveTokenReq,
    ImAdminRemoveTokenRsp,
};
use im_storage::{ChangeOutcome, Group, GroupKind, MemberChange, NewGroup, Store};

use super::storage_result;
use crate::handlers::group::{MAX_GROUP_TEXT_BYTES, MAX_MEMBERS_PER_REQUEST};

/// Page size of a group list when the request gives none.
const DEFAULT_PAGE: u32 = 100;

/// Largest group list page: groups carry their member lists, so pages stay small.
const MAX_PAGE: u32 = 500;

/// `GROUP_MODIFY_TYPE_ADD` / `_DEL` (IM.BaseDefine.GroupModifyType).
const MODIFY_ADD: u32 = 1;
const MODIFY_DEL: u32 = 2;

fn admin_group(g: &Group) -> AdminGroup {
    let mut members: Vec<u32> = g.members.iter().map(|m| m.user_id).collect();
    members.sort_unstable();
    AdminGroup {
        group_id: Some(g.id),
        name: Some(g.name.clone()),
        avatar: Some(g.avatar.clone()),
        creator: Some(g.creator),
        group_type: Some(g.kind as u32),
        version: Some(g.version),
        member_ids: members,
    }
}

fn create_refused(code: AdminResult, why: String) -> ImAdminGroupCreateRsp {
    ImAdminGroupCreateRsp {
        result_code: Some(code as i32),
        result_string: Some(why),
        group_id: None,
    }
}

/// IMAdminGroupCreateReq: a normal group by default, creator 0 unless given. Members are not
/// notified, as in the original (FLOWS.md 12.3): they see the group in their next group list.
pub async fn group_create<S: Store>(
    store: &S,
    req: ImAdminGroupCreateReq,
) -> ImAdminGroupCreateRsp {
    let kind = match GroupKind::from_u32(req.group_type.unwrap_or(GroupKind::Normal as u32)) {
        Some(k) => k,
        None => {
            return create_refused(
                AdminResult::AdminBadRequest,
                format!(
                    "group_type {} is not 1 (normal) or 2 (temporary)",
                    req.group_type.unwrap_or(0)
                ),
            );
        }
    };
    let name = req.name.unwrap_or_default();
    let avatar = req.avatar.unwrap_or_default();
    if name.len() > MAX_GROUP_TEXT_BYTES || avatar.len() > MAX_GROUP_TEXT_BYTES {
        return create_refused(
            AdminResult::AdminBadRequest,
            format!("name and avatar: at most {MAX_GROUP_TEXT_BYTES} bytes each"),
        );
    }
    if req.member_ids.len() > MAX_MEMBERS_PER_REQUEST {
        return create_refused(
            AdminResult::AdminBadRequest,
            format!(
                "{} members; at most {MAX_MEMBERS_PER_REQUEST} per request",
                req.member_ids.len()
            ),
        );
    }
    let group = NewGroup {
        creator: req.creator.unwrap_or(0),
        name,
        avatar,
        kind,
        members: req.member_ids,
    };
    match store.create_group(group).await {
        Ok(id) => {
            tracing::info!(group_id = id, "admin: group created");
            ImAdminGroupCreateRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                result_string: None,
                group_id: Some(id),
            }
        }
        Err(e) => create_refused(storage_result(&e), e.to_string()),
    }
}

/// IMAdminGroupListReq: a page of groups by id, with their members.
pub async fn group_list<S: Store>(store: &S, req: ImAdminGroupListReq) -> ImAdminGroupListRsp {
    let limit = match req.limit.unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    match store
        .list_groups(req.after_group_id.unwrap_or(0), limit)
        .await
    {
        Ok(groups) => ImAdminGroupListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            next_after_group_id: Some(if groups.len() as u32 == limit {
                groups.last().map_or(0, |g| g.id)
            } else {
                0
            }),
            groups: groups.iter().map(admin_group).collect(),
        },
        Err(e) => ImAdminGroupListRsp {
            result_code: Some(storage_result(&e) as i32),
            ..Default::default()
        },
    }
}

fn members_refused(code: AdminResult, why: String) -> ImAdminGroupMembersRsp {
    ImAdminGroupMembersRsp {
        result_code: Some(code as i32),
        result_string: Some(why),
        ..Default::default()
    }
}

/// IMAdminGroupMembersReq: adds or removes members as the administrator (requester 0, no
/// permission check); answers the lists the member-change notify needs.
pub async fn group_members<S: Store>(
    store: &S,
    req: ImAdminGroupMembersReq,
) -> ImAdminGroupMembersRsp {
    let group = req.group_id.unwrap_or(0);
    let change = match req.change_type.unwrap_or(0) {
        MODIFY_ADD => MemberChange::Add,
        MODIFY_DEL => MemberChange::Remove,
        other => {
            return members_refused(
                AdminResult::AdminBadRequest,
                format!("change_type {other} is not 1 (add) or 2 (remove)"),
            );
        }
    };
    if group == 0 || req.user_ids.is_empty() {
        return members_refused(
            AdminResult::AdminBadRequest,
            "group_id and at least one user id are required".into(),
        );
    }
    if req.user_ids.len() > MAX_MEMBERS_PER_REQUEST {
        return members_refused(
            AdminResult::AdminBadRequest,
            format!("at most {MAX_MEMBERS_PER_REQUEST} users per request"),
        );
    }
    match store.change_members(0, group, change, &req.user_ids).await {
        Ok(ChangeOutcome::Changed {
            current,
            changed,
            version,
        }) => {
            tracing::info!(
                group_id = group,
                ?change,
                changed = changed.len(),
                version,
                "admin: group members changed"
            );
            ImAdminGroupMembersRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                result_string: None,
                cur_user_ids: current,
                chg_user_ids: changed,
                version: Some(version),
            }
        }
        Ok(ChangeOutcome::NoSuchGroup) => {
            members_refused(AdminResult::AdminNotFound, format!("no group {group}"))
        }
        Ok(ChangeOutcome::NothingToChange) => members_refused(
            AdminResult::AdminFailed,
            "every user named is a member already".into(),
        ),
        Ok(ChangeOutcome::Denied) => members_refused(
            AdminResult::AdminFailed,
            "the store refused the administrator".into(),
        ),
        Err(e) => members_refused(storage_result(&e), e.to_string()),
    }
}

/// IMAdminDiscoveryListReq: the visible discovery items, by priority. Also answered on the
/// main port (http_msg_server serves them to clients).
pub async fn discovery_list<S: Store>(
    store: &S,
    _req: ImAdminDiscoveryListReq,
) -> ImAdminDiscoveryListRsp {
    match store.discovery().await {
        Ok(items) => ImAdminDiscoveryListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            items: items
                .into_iter()
                .map(|d| AdminDiscovery {
                    id: Some(d.id),
                    name: Some(d.name),
                    url: Some(d.url),
                    priority: Some(d.priority),
                })
                .collect(),
        },
        Err(e) => ImAdminDiscoveryListRsp {
            result_code: Some(storage_result(&e) as i32),
            items: Vec::new(),
        },
    }
}

/// IMAdminDiscoveryAddReq.
pub async fn discovery_add<S: Store>(
    store: &S,
    req: ImAdminDiscoveryAddReq,
) -> ImAdminDiscoveryAddRsp {
    let (name, url) = (req.name.unwrap_or_default(), req.url.unwrap_or_default());
    if name.is_empty() || url.is_empty() {
        return ImAdminDiscoveryAddRsp {
            result_code: Some(AdminResult::AdminBadRequest as i32),
            result_string: Some("name and url are required".into()),
            id: None,
        };
    }
    match store
        .add_discovery(&name, &url, req.priority.unwrap_or(0))
        .await
    {
        Ok(id) => ImAdminDiscoveryAddRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            result_string: None,
            id: Some(id),
        },
        Err(e) => ImAdminDiscoveryAddRsp {
            result_code: Some(storage_result(&e) as i32),
            result_string: Some(e.to_string()),
            id: None,
        },
    }
}

/// IMAdminDiscoveryRemoveReq: hides the item.
pub async fn discovery_remove<S: Store>(
    store: &S,
    req: ImAdminDiscoveryRemoveReq,
) -> ImAdminDiscoveryRemoveRsp {
    let id = req.id.unwrap_or(0);
    let (code, why) = match store.remove_discovery(id).await {
        Ok(true) => (AdminResult::AdminOk, None),
        Ok(false) => (
            AdminResult::AdminNotFound,
            Some(format!("no discovery item {id}")),
        ),
        Err(e) => (storage_result(&e), Some(e.to_string())),
    };
    ImAdminDiscoveryRemoveRsp {
        result_code: Some(code as i32),
        result_string: why,
    }
}

/// IMAdminRemoveTokenReq: removes the user's device token only if it is still `token`
/// (push_server reports dead tokens; a newer one must survive). Also answered on the main
/// port.
pub async fn remove_token<S: Store>(
    store: &S,
    req: ImAdminRemoveTokenReq,
) -> ImAdminRemoveTokenRsp {
    let (user, token) = (req.user_id.unwrap_or(0), req.token.unwrap_or_default());
    if user == 0 || token.is_empty() {
        return ImAdminRemoveTokenRsp {
            result_code: Some(AdminResult::AdminBadRequest as i32),
            removed: Some(false),
        };
    }
    match store.remove_device_token_if(user, &token).await {
        Ok(removed) => {
            tracing::debug!(user_id = user, removed, "dead device token reported");
            ImAdminRemoveTokenRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                removed: Some(removed),
            }
        }
        Err(e) => {
            tracing::warn!(user_id = user, error = %e, "device token not removed");
            ImAdminRemoveTokenRsp {
                result_code: Some(storage_result(&e) as i32),
                removed: Some(false),
            }
        }
    }
}
