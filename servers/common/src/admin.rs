//! The admin port: our `IM.Admin` extension (service id 0x0010) over ordinary PDU framing.
//!
//! The first PDU on a connection must be `IMAdminAuthReq` carrying the configured token
//! (compared in constant time). A wrong or missing token is answered with
//! `ADMIN_AUTH_FAILED`, logged with the peer address, and the connection is closed; no other
//! command is looked at before authentication. After that, `IMAdminStatsReq` is answered here
//! (common fields: version, uptime, RSS, CPU) merged with what the server reports, and every
//! other command goes to the server's [`AdminService::handle`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminAuthRsp, ImAdminConnListReq, ImAdminConnListRsp,
    ImAdminStatsRsp, ServerStats,
};
use im_proto::{Pdu, cid};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::conn::{CloseReason, Conn, ConnRegistry};
use crate::serve::{Handler, ServeOptions, serve};

/// What a server offers on its admin port.
pub trait AdminService: Send + Sync + 'static {
    /// Server kind ("msg_server", ...).
    fn kind(&self) -> &'static str;

    /// Server name from its config.
    fn name(&self) -> String;

    /// Server-specific statistics; version, uptime, RSS and CPU are filled in by the caller.
    fn stats(&self) -> impl Future<Output = ServerStats> + Send;

    /// Every other admin command; `None` sends no reply. The default answers
    /// `ADMIN_UNSUPPORTED`.
    fn handle(&self, pdu: &Pdu) -> impl Future<Output = Option<Pdu>> + Send {
        let reply = unsupported(pdu);
        async move { reply }
    }
}

/// The `ADMIN_UNSUPPORTED` reply to an admin request this server does not implement.
///
/// Every admin response is the request's command id + 1 and has `result_code` as field 1, so
/// the reply can be built without knowing the request's type: a body of just that field.
pub fn unsupported(req: &Pdu) -> Option<Pdu> {
    let rsp_cid = req.command_id().checked_add(1)?;
    let is_admin_request = req.command_id() & 1 == 1
        && im_proto::command::service_of(rsp_cid) == Some(im_proto::sid::SID_ADMIN);
    if !is_admin_request {
        return None;
    }
    // Field 1, varint: ADMIN_UNSUPPORTED.
    let body = bytes::Bytes::from(vec![0x08, AdminResult::AdminUnsupported as u8]);
    Some(Pdu::new(
        im_proto::Header::new(im_proto::sid::SID_ADMIN, rsp_cid, req.seq_num()),
        body,
    ))
}

/// A page of a listener's connections, most recent first (the generic conn-list answer).
pub fn conn_list(registry: &ConnRegistry, req: &ImAdminConnListReq) -> ImAdminConnListRsp {
    let mut conns: Vec<_> = registry
        .all()
        .into_iter()
        .map(|c| c.stats())
        .filter(|s| req.user_id.unwrap_or(0) == 0 || s.user_id == req.user_id.unwrap_or(0))
        .collect();
    // Busiest first: what an operator drilling down wants to see.
    conns.sort_by_key(|s| std::cmp::Reverse(s.pdus_in + s.pdus_out));
    let total = conns.len() as u64;
    let offset = req.offset.unwrap_or(0) as usize;
    let limit = req.limit.unwrap_or(100).clamp(1, 1000) as usize;
    ImAdminConnListRsp {
        result_code: Some(AdminResult::AdminOk as i32),
        conns: conns
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|s| im_proto::admin::ConnInfo {
                conn_id: Some(s.id),
                user_id: Some(s.user_id),
                client_type: Some(s.client_type),
                peer_addr: Some(s.peer.to_string()),
                age_ms: Some(s.age.as_millis() as u64),
                bytes_in: Some(s.bytes_in),
                bytes_out: Some(s.bytes_out),
                msgs_in: Some(s.pdus_in),
                msgs_out: Some(s.pdus_out),
                queue_depth: Some(s.queue_depth as u32),
                pending_acks: None,
            })
            .collect(),
        total: Some(total),
    }
}

struct AdminState<S> {
    token: String,
    service: Arc<S>,
    started: Instant,
}

struct AdminConn<S> {
    state: Arc<AdminState<S>>,
    authed: bool,
}

impl<S: AdminService> Handler for AdminConn<S> {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if !self.authed {
            let presented = (pdu.command_id() == cid::CID_ADMIN_AUTH_REQ)
                .then(|| pdu.decode::<ImAdminAuthReq>().ok())
                .flatten();
            let token = presented
                .as_ref()
                .and_then(|r| r.token.clone())
                .unwrap_or_default();
            let ok = !self.state.token.is_empty()
                && bool::from(token.as_bytes().ct_eq(self.state.token.as_bytes()));
            let s = &self.state.service;
            if !ok {
                tracing::warn!(
                    peer = %conn.peer(), server_kind = s.kind(), cmd = pdu.command_name(),
                    "admin authentication failed: wrong or missing token"
                );
                let rsp = ImAdminAuthRsp {
                    result_code: Some(AdminResult::AdminAuthFailed as i32),
                    result_string: Some("authentication failed".to_owned()),
                    ..Default::default()
                };
                let _ = conn.send_pdu(&Pdu::from_msg(&rsp, pdu.seq_num()));
                conn.close_after_flush(CloseReason::Server("admin authentication failed"));
                return;
            }
            self.authed = true;
            let client = presented.and_then(|r| r.client_name).unwrap_or_default();
            tracing::info!(peer = %conn.peer(), client = %client, "admin client authenticated");
            let rsp = ImAdminAuthRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                result_string: None,
                server_kind: Some(s.kind().to_owned()),
                server_name: Some(s.name()),
                version: Some(crate::VERSION.to_owned()),
            };
            let _ = conn.reply(&pdu, &rsp);
            return;
        }
        let reply = match pdu.command_id() {
            cid::CID_ADMIN_AUTH_REQ => Some(pdu.reply(&ImAdminAuthRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                ..Default::default()
            })),
            cid::CID_ADMIN_STATS_REQ => {
                let stats = self.full_stats().await;
                Some(pdu.reply(&ImAdminStatsRsp {
                    result_code: Some(AdminResult::AdminOk as i32),
                    stats: Some(stats),
                }))
            }
            _ => self.state.service.handle(&pdu).await,
        };
        if let Some(r) = reply {
            let _ = conn.send_pdu(&r);
        }
    }
}

impl<S: AdminService> AdminConn<S> {
    async fn full_stats(&self) -> ServerStats {
        let s = &self.state.service;
        let mut stats = s.stats().await;
        stats.server_kind = Some(s.kind().to_owned());
        stats.server_name = Some(s.name());
        stats.version = Some(crate::VERSION.to_owned());
        stats.uptime_ms = Some(self.state.started.elapsed().as_millis() as u64);
        stats.rss_bytes = Some(crate::process::rss_bytes());
        stats.cpu_time_ms = Some(crate::process::cpu_time_ms());
        stats
    }
}

/// The admin port's connection handler and listener options, as [`serve_admin`] runs them
/// (for the admin fuzz target, `crate::fuzzing::check_admin`).
#[doc(hidden)]
pub fn admin_handler<S: AdminService>(
    token: String,
    service: Arc<S>,
) -> (impl Handler + use<S>, ServeOptions) {
    let state = Arc::new(AdminState {
        token,
        service,
        started: Instant::now(),
    });
    (
        AdminConn {
            state,
            authed: false,
        },
        admin_options(),
    )
}

fn admin_options() -> ServeOptions {
    let mut opts = ServeOptions::server("admin");
    opts.max_connections = 64;
    opts.echo_heartbeat = true;
    opts
}

/// Serves the admin port until `shutdown`.
pub async fn serve_admin<S: AdminService>(
    listener: TcpListener,
    token: String,
    service: Arc<S>,
    shutdown: CancellationToken,
) {
    let state = Arc::new(AdminState {
        token,
        service,
        started: Instant::now(),
    });
    let opts = admin_options();
    serve(listener, opts, ConnRegistry::new(), shutdown, move |_| {
        AdminConn {
            state: state.clone(),
            authed: false,
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_proto::command::{BodyVisitor, Command, visit_body_type};

    struct ResultCodeIs(u16, Option<i32>);

    impl BodyVisitor for ResultCodeIs {
        fn visit<M: Command + std::fmt::Debug>(&mut self) {
            // Decode the generic reply as the real response type and read field 1 back
            // through prost's own encoding of it.
            let pdu = Pdu::new(
                im_proto::Header::new(M::SERVICE_ID, self.0, 1),
                bytes::Bytes::from(vec![0x08, AdminResult::AdminUnsupported as u8]),
            );
            let msg = pdu.decode::<M>().ok();
            let text = format!("{msg:?}");
            self.1 = text
                .contains("result_code: Some(AdminUnsupported)")
                .then_some(3);
        }
    }

    #[test]
    fn unsupported_fits_every_admin_response() {
        for &cid in im_proto::command::ALL_COMMANDS {
            if im_proto::command::service_of(cid) != Some(im_proto::sid::SID_ADMIN) || cid & 1 == 0
            {
                continue;
            }
            let req = Pdu::new(
                im_proto::Header::new(im_proto::sid::SID_ADMIN, cid, 9),
                bytes::Bytes::new(),
            );
            let rsp = unsupported(&req).expect("reply");
            assert_eq!(rsp.command_id(), cid + 1);
            assert_eq!(rsp.seq_num(), 9);
            let mut v = ResultCodeIs(cid + 1, None);
            assert!(visit_body_type(cid + 1, &mut v));
            assert_eq!(v.1, Some(3), "response {:#06x}", cid + 1);
        }
        let heartbeat = Pdu::from_msg(&im_proto::other::ImHeartBeat {}, 0);
        assert!(unsupported(&heartbeat).is_none());
    }
}
