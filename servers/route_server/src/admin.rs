//! The admin port: stats, route list, locate, kick, and the group member-change notify after
//! an admin change (IM.Admin, our extension).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use im_common::admin::{AdminService, conn_list, unsupported};
use im_proto::admin::{
    AdminResult, ClientTypeCount, ImAdminConnListReq, ImAdminGroupNotifyReq, ImAdminGroupNotifyRsp,
    ImAdminKickUserReq, ImAdminKickUserRsp, ImAdminLocateUserReq, ImAdminLocateUserRsp,
    ImAdminRouteListReq, ImAdminRouteListRsp, Metric, RouteEntry, ServerState, ServerStats,
    UserLocation,
};
use im_proto::base::{ClientType, GroupModifyType};
use im_proto::group::ImGroupChangeMemberNotify;
use im_proto::{Pdu, cid};

use crate::metrics::Class;
use crate::state::RouteState;
use crate::table::RouteView;

/// Page size when the request gives none.
const DEFAULT_PAGE: u32 = 100;
/// Largest page: keeps one answer far below the frame cap and one request cheap.
const MAX_PAGE: u32 = 1000;
/// Location name shown for connections held in the offline grace period.
const GRACE_LOCATION: &str = "(offline grace)";

/// route_server's [`AdminService`].
#[derive(Debug)]
pub struct RouteAdmin {
    state: Arc<RouteState>,
}

impl RouteAdmin {
    /// The admin service over `state`.
    pub fn new(state: Arc<RouteState>) -> Self {
        RouteAdmin { state }
    }

    fn answer(&self, pdu: &Pdu) -> Option<Pdu> {
        match pdu.command_id() {
            cid::CID_ADMIN_ROUTE_LIST_REQ => Some(match pdu.decode::<ImAdminRouteListReq>() {
                Ok(req) => pdu.reply(&self.route_list(&req)),
                Err(_) => pdu.reply(&ImAdminRouteListRsp {
                    result_code: Some(AdminResult::AdminBadRequest as i32),
                    ..Default::default()
                }),
            }),
            cid::CID_ADMIN_LOCATE_USER_REQ => Some(match pdu.decode::<ImAdminLocateUserReq>() {
                Ok(req) => pdu.reply(&locate(&self.state, &req)),
                Err(_) => pdu.reply(&ImAdminLocateUserRsp {
                    result_code: Some(AdminResult::AdminBadRequest as i32),
                    ..Default::default()
                }),
            }),
            cid::CID_ADMIN_KICK_USER_REQ => {
                let rsp = match pdu.decode::<ImAdminKickUserReq>() {
                    Ok(req) => self.kick(&req),
                    Err(e) => kick_refused(AdminResult::AdminBadRequest, e.to_string()),
                };
                Some(pdu.reply(&rsp))
            }
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                Some(pdu.reply(&conn_list(&self.state.conns, &req)))
            }
            cid::CID_ADMIN_GROUP_NOTIFY_REQ => {
                let rsp = match pdu.decode::<ImAdminGroupNotifyReq>() {
                    Ok(req) => self.group_notify(&req),
                    Err(_) => ImAdminGroupNotifyRsp {
                        result_code: Some(AdminResult::AdminBadRequest as i32),
                        msg_servers: Some(0),
                    },
                };
                Some(pdu.reply(&rsp))
            }
            _ => unsupported(pdu),
        }
    }

    fn route_list(&self, req: &ImAdminRouteListReq) -> ImAdminRouteListRsp {
        let limit = match req.limit.unwrap_or(0) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let (ids, more) = self
            .state
            .table
            .ids_after(req.after_user_id.unwrap_or(0), limit as usize);
        let next = if more {
            ids.last().copied().unwrap_or(0)
        } else {
            0
        };
        let entries = ids
            .into_iter()
            .filter_map(|u| self.state.table.view(u))
            .map(route_entry)
            .collect();
        ImAdminRouteListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            entries,
            next_after_user_id: Some(next),
            total_users: Some(self.state.table.len() as u64),
            msg_server_links: Some(self.state.links.len() as u32),
        }
    }

    /// Sends our IMAdminKickUserReq extension PDU to every msg_server link holding a
    /// matching connection; that msg_server sends IMKickUser (reason 1) and closes them.
    /// An original msg_server ignores the unknown command.
    fn kick(&self, req: &ImAdminKickUserReq) -> ImAdminKickUserRsp {
        let user = req.user_id.unwrap_or(0);
        if user == 0 {
            return kick_refused(AdminResult::AdminBadRequest, "user_id is required".into());
        }
        let filter = match req.client_type.unwrap_or(0) {
            0 => None,
            ct => match ClientType::try_from(ct as i32) {
                Ok(ct) => Some(ct),
                Err(_) => {
                    return kick_refused(
                        AdminResult::AdminBadRequest,
                        format!(
                            "client_type {ct} is not one of 0 (all), 1 (Windows), 2 (Mac), \
                             17 (iOS), 18 (Android)"
                        ),
                    );
                }
            },
        };
        let frame = Pdu::from_msg(
            &ImAdminKickUserReq {
                user_id: Some(user),
                client_type: Some(filter.map_or(0, |ct| ct as u32)),
            },
            0,
        )
        .to_frame();
        let (mut kicked, mut links) = (0u32, 0u64);
        self.state.table.for_each_location(user, |loc| {
            let matching = match filter {
                None => loc.counts.total(),
                Some(ct) => loc.counts.get(ct),
            };
            if matching > 0 && loc.link.send(&frame) {
                kicked = kicked.saturating_add(matching);
                links += 1;
            }
        });
        self.state.metrics.routed_out(Class::Kick, links);
        if kicked == 0 {
            return kick_refused(
                AdminResult::AdminNotFound,
                format!("user {user} has no matching connection"),
            );
        }
        tracing::info!(
            user_id = user,
            client_type = req.client_type.unwrap_or(0),
            kicked,
            links,
            "admin kick sent to msg_servers"
        );
        ImAdminKickUserRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            result_string: None,
            kicked: Some(kicked),
        }
    }

    /// Broadcasts IMGroupChangeMemberNotify (requester 0: the administrator) to every
    /// msg_server link after an admin member change made through db_proxy (Decisions 10):
    /// each msg_server refreshes its member cache and tells the local connections of the
    /// members, current and changed, as for a change relayed from another msg_server.
    fn group_notify(&self, req: &ImAdminGroupNotifyReq) -> ImAdminGroupNotifyRsp {
        let change = req.change_type.unwrap_or(0);
        let group = req.group_id.unwrap_or(0);
        let valid = GroupModifyType::try_from(change as i32).is_ok();
        if !valid || group == 0 {
            tracing::info!(
                group_id = group,
                change_type = change,
                "admin group notify refused"
            );
            return ImAdminGroupNotifyRsp {
                result_code: Some(AdminResult::AdminBadRequest as i32),
                msg_servers: Some(0),
            };
        }
        let notify = ImGroupChangeMemberNotify {
            user_id: 0,
            change_type: change as i32,
            group_id: group,
            cur_user_id_list: req.cur_user_ids.clone(),
            chg_user_id_list: req.chg_user_ids.clone(),
        };
        let frame = Pdu::from_msg(&notify, 0).to_frame();
        let links = self.state.broadcast(Class::GroupMember, &frame, None);
        tracing::info!(
            group_id = group,
            change_type = change,
            links,
            "admin group notify sent"
        );
        ImAdminGroupNotifyRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            msg_servers: Some(links as u32),
        }
    }

    fn server_stats(&self) -> ServerStats {
        let s = &self.state;
        let links = s.links.all();
        let depths: Vec<u64> = links.iter().map(|l| l.conn.queue_depth() as u64).collect();
        let mut metrics: Vec<Metric> = s
            .metrics
            .registry
            .values()
            .into_iter()
            .map(|(name, value, monotonic)| Metric {
                name: Some(name),
                value: Some(value),
                monotonic: Some(monotonic),
            })
            .collect();
        metrics.push(Metric {
            name: Some("master_links".into()),
            value: Some(links.iter().filter(|l| l.is_master()).count() as f64),
            monotonic: Some(false),
        });
        ServerStats {
            state: Some(if s.shutdown.is_cancelled() {
                ServerState::Stopping as i32
            } else {
                ServerState::Up as i32
            }),
            listen_addr: Some(s.listen.to_string()),
            // Our "connections" are msg_server links; they have no client type.
            connections: vec![ClientTypeCount {
                client_type: Some(0),
                count: Some(links.len() as u32),
            }],
            routed_in_total: Some(s.metrics.routed_in_total()),
            routed_out_total: Some(s.metrics.routed_out_total()),
            outbound_queue_depth: Some(depths.iter().sum()),
            outbound_queue_max: Some(depths.iter().copied().max().unwrap_or(0)),
            slow_consumer_disconnects_total: Some(
                s.conns.stats().slow_consumers.load(Ordering::Relaxed),
            ),
            metrics,
            table_size: Some(s.table.len() as u64),
            ..Default::default()
        }
    }
}

/// Answers IMAdminLocateUserReq, on the admin port and on msg_server links (our msg_servers
/// ask before a push: the wire's presence is PC-only, the locations show mobile clients).
/// `entry` answers `user_id`; `entries` holds the online ones of `user_ids`, in request
/// order. Not found only when the single user asked for is offline.
pub fn locate(state: &RouteState, req: &ImAdminLocateUserReq) -> ImAdminLocateUserRsp {
    let entry = match req.user_id.unwrap_or(0) {
        0 => None,
        user => state.table.view(user).map(route_entry),
    };
    let entries: Vec<RouteEntry> = req
        .user_ids
        .iter()
        .filter_map(|u| state.table.view(*u))
        .map(route_entry)
        .collect();
    let not_found = entry.is_none() && req.user_ids.is_empty();
    ImAdminLocateUserRsp {
        result_code: Some(if not_found {
            AdminResult::AdminNotFound as i32
        } else {
            AdminResult::AdminOk as i32
        }),
        entry,
        entries,
    }
}

fn kick_refused(code: AdminResult, why: String) -> ImAdminKickUserRsp {
    ImAdminKickUserRsp {
        result_code: Some(code as i32),
        result_string: Some(why),
        kicked: Some(0),
    }
}

fn route_entry(view: RouteView) -> RouteEntry {
    let mut locations: Vec<UserLocation> = view
        .locations
        .into_iter()
        .map(|(name, ct, n)| UserLocation {
            msg_server: Some(name),
            client_type: Some(ct as i32),
            connections: Some(n),
        })
        .collect();
    locations.extend(view.grace.iter().map(|(ct, n)| UserLocation {
        msg_server: Some(GRACE_LOCATION.to_owned()),
        client_type: Some(ct as i32),
        connections: Some(n),
    }));
    RouteEntry {
        user_id: Some(view.user_id),
        locations,
        wire_status: Some(if view.wire_online { 1 } else { 2 }),
    }
}

impl AdminService for RouteAdmin {
    fn kind(&self) -> &'static str {
        "route_server"
    }

    fn name(&self) -> String {
        self.state.name.clone()
    }

    async fn stats(&self) -> ServerStats {
        self.server_stats()
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        self.answer(pdu)
    }
}
