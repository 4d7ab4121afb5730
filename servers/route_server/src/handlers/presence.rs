//! Presence: registration of a link's users, status updates and status queries
//! (FLOWS.md 1.4, 11; Decisions 7 and 8).

use std::collections::HashMap;

use im_proto::Pdu;
use im_proto::admin::ImAdminLocateUserReq;
use im_proto::base::{ClientType, UserStat, UserStatType};
use im_proto::buddy::{ImUsersStatReq, ImUsersStatRsp};
use im_proto::server::{ImOnlineUserInfo, ImRoleSet, ImUserStatusUpdate};

use super::LinkHandler;
use crate::metrics::Class;
use crate::table::{Change, ClientCounts};

/// `CID_OTHER_ROLE_SET`: the peer elected us its master. Stored, not used (FLOWS.md 1.2).
pub(super) fn role_set(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::Registration);
    let Some(msg) = h.decode::<ImRoleSet>(pdu) else {
        return;
    };
    h.link.set_master(msg.master != 0);
    tracing::debug!(conn_id = h.link.id, peer = %h.link.name, master = msg.master, "role set");
}

/// `CID_OTHER_ONLINE_USER_INFO`: the link's complete list of connections. It replaces what
/// the link reported before: connections no longer listed count as gone (offline updates),
/// new ones as come (online updates, silent for users back from the grace set and during
/// the warm-up after start).
pub(super) fn online_user_info(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::Registration);
    let Some(msg) = h.decode::<ImOnlineUserInfo>(pdu) else {
        return;
    };
    let mut listed: HashMap<u32, ClientCounts> = HashMap::with_capacity(msg.user_stat_list.len());
    for stat in &msg.user_stat_list {
        if stat.status == UserStatType::UserStatusOffline as i32 {
            continue;
        }
        // The required-field check already refused undefined client types; stay defensive.
        let Ok(ct) = ClientType::try_from(stat.client_type) else {
            continue;
        };
        listed.entry(stat.user_id).or_default().add(ct);
    }
    let state = h.state.clone();
    let emit = |user, notices| state.emit_notices(user, notices);
    let gone: Vec<u32> = h
        .users
        .iter()
        .filter(|u| !listed.contains_key(u))
        .copied()
        .collect();
    for user in gone {
        state.table.update(
            user,
            &h.link,
            Change::Replace(ClientCounts::default()),
            false,
            emit,
        );
        h.users.remove(&user);
    }
    let quiet = state.in_warm_up();
    let mut recovered = 0u64;
    for (user, counts) in listed {
        let done = state
            .table
            .update(user, &h.link, Change::Replace(counts), quiet, emit);
        if done.holds {
            h.users.insert(user);
        }
        recovered += u64::from(done.reappeared);
    }
    state.metrics.grace_recovered_users.add(recovered);
    tracing::info!(conn_id = h.link.id, peer = %h.link.name, users = h.users.len(),
        connections = msg.user_stat_list.len(), recovered_from_grace = recovered,
        "msg_server registered its users");
}

/// `CID_OTHER_USER_STATUS_UPDATE`: one connection came or went; the notifies of FLOWS.md 11
/// go to every link.
pub(super) fn user_status_update(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::Status);
    let Some(msg) = h.decode::<ImUserStatusUpdate>(pdu) else {
        return;
    };
    let Ok(ct) = ClientType::try_from(msg.client_type) else {
        return;
    };
    let change = match UserStatType::try_from(msg.user_status as i32) {
        // "leave" is never sent by msg_servers; if it were, the connection is still there.
        Ok(UserStatType::UserStatusOnline | UserStatType::UserStatusLeave) => Change::Online(ct),
        Ok(UserStatType::UserStatusOffline) => Change::Offline(ct),
        Err(_) => {
            h.state.metrics.decode_errors.inc();
            tracing::warn!(conn_id = h.link.id, peer = %h.link.name, user_id = msg.user_id,
                user_status = msg.user_status, "dropping a status update with an unknown status \
                (valid: 1 online, 2 offline, 3 leave)");
            return;
        }
    };
    let state = h.state.clone();
    let done = state
        .table
        .update(msg.user_id, &h.link, change, false, |user, notices| {
            state.emit_notices(user, notices);
        });
    if done.reappeared {
        state.metrics.grace_recovered_users.inc();
    }
    if done.holds {
        h.users.insert(msg.user_id);
    } else {
        h.users.remove(&msg.user_id);
    }
}

/// `CID_BUDDY_LIST_USERS_STATUS_REQUEST`: one UserStat per requested id, in request order,
/// ONLINE only with a PC client somewhere (Decisions 8); attach_data and seq copied.
pub(super) fn users_status_request(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::UsersStat);
    let Some(req) = h.decode::<ImUsersStatReq>(pdu) else {
        return;
    };
    let table = &h.state.table;
    let user_stat_list = req
        .user_id_list
        .iter()
        .map(|&user_id| UserStat {
            user_id,
            status: if table.is_pc_online(user_id) {
                UserStatType::UserStatusOnline as i32
            } else {
                UserStatType::UserStatusOffline as i32
            },
        })
        .collect();
    let rsp = ImUsersStatRsp {
        user_id: req.user_id,
        user_stat_list,
        attach_data: req.attach_data,
    };
    match h.link.conn.reply(pdu, &rsp) {
        Ok(()) => h.state.metrics.routed_out(Class::UsersStat, 1),
        Err(e) => {
            h.state.metrics.send_failures.inc();
            tracing::warn!(conn_id = h.link.id, peer = %h.link.name, error = %e,
                "could not answer a status request");
        }
    }
}

/// `CID_ADMIN_LOCATE_USER_REQ` on a msg_server link (our extension): where users are
/// connected, mobile clients included, so that our msg_servers can decide on pushes (the
/// wire's IMUsersStatRsp reports PC presence only). Read-only; the admin port's other
/// commands are not accepted here.
pub(super) fn locate_users(h: &mut LinkHandler, pdu: &Pdu) {
    h.state.metrics.routed_in(Class::UsersStat);
    let Some(req) = h.decode::<ImAdminLocateUserReq>(pdu) else {
        return;
    };
    let rsp = crate::admin::locate(&h.state, &req);
    match h.link.conn.reply(pdu, &rsp) {
        Ok(()) => h.state.metrics.routed_out(Class::UsersStat, 1),
        Err(e) => {
            h.state.metrics.send_failures.inc();
            tracing::warn!(conn_id = h.link.id, peer = %h.link.name, error = %e,
                "could not answer a locate request");
        }
    }
}
