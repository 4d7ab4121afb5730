//! The admin port's login_server commands: stats, the msg_server list, drain and undrain.

use std::time::Instant;

use im_common::admin::{AdminService, conn_list, unsupported};
use im_proto::admin::{
    AdminResult, ClientTypeCount, ImAdminConnListReq, ImAdminConnListRsp, ImAdminDrainReq,
    ImAdminDrainRsp, ImAdminMsgServerListReq, ImAdminMsgServerListRsp, Metric, MsgServerLoad,
    ServerState, ServerStats,
};
use im_proto::{Command, Pdu, cid};
use tokio_util::sync::CancellationToken;

use crate::server::LoginServer;
use crate::table::DrainOutcome;

/// login_server's [`AdminService`].
pub(crate) struct Admin {
    pub server: LoginServer,
    pub shutdown: CancellationToken,
}

impl AdminService for Admin {
    fn kind(&self) -> &'static str {
        "login_server"
    }

    fn name(&self) -> String {
        self.server.shared.config.display_name()
    }

    async fn stats(&self) -> ServerStats {
        let s = &self.server.shared;
        let m = &s.metrics;
        let open = m.http_open.get().max(0) as u64 + s.legacy_links.len() as u64;
        ServerStats {
            state: Some(if self.shutdown.is_cancelled() {
                ServerState::Stopping
            } else {
                ServerState::Up
            } as i32),
            listen_addr: s.http_addr.get().cloned(),
            // Clients here have no type yet: everything is "not logged in" (0).
            connections: vec![ClientTypeCount {
                client_type: Some(0),
                count: Some(u32::try_from(open).unwrap_or(u32::MAX)),
            }],
            logins_total: Some(self.server.assignments_total()),
            login_failures_total: Some(self.server.refusals_total()),
            table_size: Some(s.table.len() as u64),
            metrics: m
                .registry
                .values()
                .into_iter()
                .map(|(name, value, monotonic)| Metric {
                    name: Some(name),
                    value: Some(value),
                    monotonic: Some(monotonic),
                })
                .collect(),
            ..Default::default()
        }
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        match pdu.command_id() {
            cid::CID_ADMIN_MSG_SERVER_LIST_REQ => {
                Some(match decode::<ImAdminMsgServerListReq>(pdu) {
                    Ok(_) => pdu.reply(&self.msg_server_list()),
                    Err(code) => pdu.reply(&ImAdminMsgServerListRsp {
                        result_code: Some(code),
                        ..Default::default()
                    }),
                })
            }
            cid::CID_ADMIN_DRAIN_REQ => Some(pdu.reply(&match decode::<ImAdminDrainReq>(pdu) {
                Ok(req) => self.drain(&req),
                Err(code) => ImAdminDrainRsp {
                    result_code: Some(code),
                    result_string: Some("body does not decode".to_owned()),
                },
            })),
            cid::CID_ADMIN_CONN_LIST_REQ => Some(match decode::<ImAdminConnListReq>(pdu) {
                // The msg_server links: the connections worth drilling into here.
                Ok(req) => pdu.reply(&conn_list(&self.server.shared.msg_server_links, &req)),
                Err(code) => pdu.reply(&ImAdminConnListRsp {
                    result_code: Some(code),
                    ..Default::default()
                }),
            }),
            _ => unsupported(pdu),
        }
    }
}

fn decode<M: Command>(pdu: &Pdu) -> Result<M, i32> {
    pdu.decode::<M>().map_err(|e| {
        tracing::warn!(cmd = M::NAME, error = %e, "admin request does not decode");
        AdminResult::AdminBadRequest as i32
    })
}

impl Admin {
    fn msg_server_list(&self) -> ImAdminMsgServerListRsp {
        let s = &self.server.shared;
        ImAdminMsgServerListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            servers: s
                .table
                .snapshot(Instant::now())
                .into_iter()
                .map(|m| MsgServerLoad {
                    host_name: Some(m.host_name),
                    ip1: Some(m.ip1),
                    ip2: Some(m.ip2),
                    port: Some(m.port),
                    cur_conn_cnt: Some(m.cur_conn_cnt),
                    max_conn_cnt: Some(m.max_conn_cnt),
                    pending_logins: Some(m.pending_logins),
                    draining: Some(m.draining),
                    registered_ms: Some(m.registered.as_millis() as u64),
                    assignments_total: Some(m.assignments_total),
                })
                .collect(),
            assignments_total: Some(s.table.assignments_total()),
        }
    }

    fn drain(&self, req: &ImAdminDrainReq) -> ImAdminDrainRsp {
        let target = req.msg_server.as_deref().unwrap_or_default().trim();
        let undrain = req.undrain.unwrap_or(false);
        let known = || {
            let names: Vec<String> = self
                .server
                .msg_servers()
                .iter()
                .map(|m| format!("{} ({})", m.host_name, m.addr()))
                .collect();
            if names.is_empty() {
                "no msg_server is registered".to_owned()
            } else {
                format!("registered: {}", names.join(", "))
            }
        };
        if target.is_empty() {
            return ImAdminDrainRsp {
                result_code: Some(AdminResult::AdminBadRequest as i32),
                result_string: Some(format!(
                    "login_server drains msg_servers: set msg_server to a host name or ip:port; {}",
                    known()
                )),
            };
        }
        match self.server.drain(target, undrain) {
            DrainOutcome::Applied(names) => ImAdminDrainRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                result_string: Some(format!(
                    "{} {}",
                    if undrain { "undrained" } else { "draining" },
                    names.join(", ")
                )),
            },
            DrainOutcome::NotFound { .. } => ImAdminDrainRsp {
                result_code: Some(AdminResult::AdminNotFound as i32),
                result_string: Some(format!("no msg_server named {target:?}; {}", known())),
            },
        }
    }
}
