//! SID_OTHER lookups msg_server makes before a push (FLOWS.md 15.1 and 15.2): the members'
//! group push mute, and the receivers' device tokens with their unread badge. Also the two
//! IM.Admin requests our http_msg_server and push_server make on their server links (read-only
//! discovery items, and a dead token's compare-and-delete), answered as on the admin port.

use std::collections::{HashMap, HashSet};

use im_proto::Pdu;
use im_proto::admin::{AdminResult, ImAdminDiscoveryListReq, ImAdminRemoveTokenReq};
use im_proto::base::{ClientType, ShieldStatus, UserTokenInfo};
use im_proto::server::{
    ImGetDeviceTokenReq, ImGetDeviceTokenRsp, ImGroupGetShieldReq, ImGroupGetShieldRsp,
};
use im_storage::{DeviceToken, Store, TokenKind};

use super::{Dispatch, Req, decode};
use crate::server::Shared;

/// Most users looked up by one request (a large group's members).
pub const MAX_LOOKUP_USERS: usize = 20_000;

/// The original's push_type for every token it returns (msg_server later sets 2 for users
/// with a PC client online).
const PUSH_TYPE_NORMAL: u32 = 1;

fn dedup<S: Store>(sh: &Shared<S>, req: &Req, mut ids: Vec<u32>) -> Vec<u32> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(*id));
    super::note_cut(sh, req, "user ids", ids.len(), MAX_LOOKUP_USERS);
    ids.truncate(MAX_LOOKUP_USERS);
    ids
}

/// True between 22:00 and 07:59 (the night-time mute of iOS pushes, FLOWS.md 15.2).
pub fn is_night(hour: u32) -> bool {
    !(8..22).contains(&hour)
}

/// CID_OTHER_GET_DEVICE_TOKEN_REQ: the iOS and Android tokens of the users, with their
/// unread totals as the badge; iOS users who muted the night are left out at night.
pub fn device_tokens<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGetDeviceTokenReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let users = dedup(sh, &req, m.user_id);
    Dispatch::Work(Box::pin(async move {
        let tokens = sh.store.device_tokens(&users);
        let reply = |req: &Req, list: Vec<UserTokenInfo>, attach| {
            req.reply(&ImGetDeviceTokenRsp {
                user_token_info: list,
                attach_data: attach,
            });
        };
        let tokens: Vec<DeviceToken> = match tokens.await {
            Ok(t) => t
                .into_iter()
                .filter(|t| matches!(t.kind, TokenKind::Ios | TokenKind::Android))
                .filter(|t| !t.token.is_empty())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "device tokens not read");
                return req.done(false);
            }
        };
        if tokens.is_empty() {
            reply(&req, Vec::new(), m.attach_data);
            return req.done(true);
        }
        let now = crate::handlers::message::now();
        let muted: HashSet<u32> = if is_night(sh.zone.hour_at(i64::from(now))) {
            let ios: Vec<u32> = tokens
                .iter()
                .filter(|t| t.kind == TokenKind::Ios)
                .map(|t| t.user_id)
                .collect();
            if ios.is_empty() {
                HashSet::new()
            } else {
                match sh.store.users_by_ids(&ios).await {
                    Ok(us) => us
                        .into_iter()
                        .filter(|u| u.push_shield)
                        .map(|u| u.id)
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "push shield not read");
                        return req.done(false);
                    }
                }
            }
        } else {
            HashSet::new()
        };
        let tokens: Vec<DeviceToken> = tokens
            .into_iter()
            .filter(|t| !(t.kind == TokenKind::Ios && muted.contains(&t.user_id)))
            .collect();
        let ids: Vec<u32> = tokens.iter().map(|t| t.user_id).collect();
        let totals: HashMap<u32, u32> = if ids.is_empty() {
            HashMap::new()
        } else {
            match sh.store.unread_totals(&ids).await {
                Ok(t) => t.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "unread totals not read");
                    return req.done(false);
                }
            }
        };
        let list = tokens
            .into_iter()
            .map(|t| UserTokenInfo {
                user_id: t.user_id,
                user_type: match t.kind {
                    TokenKind::Ios => ClientType::Ios as i32,
                    _ => ClientType::Android as i32,
                },
                push_count: totals.get(&t.user_id).copied().unwrap_or(0),
                token: t.token,
                push_type: PUSH_TYPE_NORMAL,
            })
            .collect();
        reply(&req, list, m.attach_data);
        req.done(true)
    }))
}

/// CID_OTHER_GET_SHIELD_REQ: each member's push mute for a group (0 when never set; an
/// empty list for an unknown group, so nobody is pushed).
pub fn group_shields<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGroupGetShieldReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let users = dedup(sh, &req, m.user_id);
    Dispatch::Work(Box::pin(async move {
        let shields = sh.store.group_shields(m.group_id, &users);
        let list = match shields.await {
            Ok(Some(list)) => list
                .into_iter()
                .map(|(user_id, on)| ShieldStatus {
                    user_id,
                    group_id: m.group_id,
                    shield_status: u32::from(on),
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(group_id = m.group_id, error = %e, "group shields not read");
                return req.done(false);
            }
        };
        req.reply(&ImGroupGetShieldRsp {
            group_id: m.group_id,
            shield_status_list: list,
            attach_data: m.attach_data,
        });
        req.done(true)
    }))
}

/// CID_ADMIN_DISCOVERY_LIST_REQ on a server link: the visible discovery items.
pub fn discovery_list<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImAdminDiscoveryListReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    Dispatch::Work(Box::pin(async move {
        let rsp = crate::admin::discovery_list(&sh.store, m).await;
        let ok = rsp.result_code() == AdminResult::AdminOk;
        req.reply(&rsp);
        req.done(ok)
    }))
}

/// CID_ADMIN_REMOVE_TOKEN_REQ on a server link: removes a dead token if it is still the
/// user's. Issued at dispatch, so it is ordered after the link's earlier token writes.
pub fn remove_token<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImAdminRemoveTokenReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let removed = crate::admin::remove_token(&sh.store, m);
    Dispatch::Work(Box::pin(async move {
        let rsp = removed.await;
        let ok = rsp.result_code() == AdminResult::AdminOk;
        req.reply(&rsp);
        req.done(ok)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn night_is_22_to_7() {
        let night: Vec<u32> = (0..24).filter(|h| is_night(*h)).collect();
        assert_eq!(night, vec![0, 1, 2, 3, 4, 5, 6, 7, 22, 23]);
    }
}
