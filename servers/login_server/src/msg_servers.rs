//! The msg_server port (FLOWS.md 3): registration with IMMsgServInfo, load reports with
//! IMUserCntUpdate. Heartbeats (both directions, 5 s) and the 30 s receive timeout are the
//! serve loop's (`ServeOptions::server`); a closed or timed-out link removes its record, so a
//! msg_server that is down is no longer offered.

use std::sync::Arc;
use std::time::Instant;

use im_common::{Conn, Handler};
use im_proto::admin::ImAdminMsgServTlsInfo;
use im_proto::server::{ImMsgServInfo, ImUserCntUpdate};
use im_proto::{Command, Pdu, cid};

use crate::server::Shared;
use crate::table::Registration;

/// One msg_server link.
pub(crate) struct MsgServerLink {
    pub shared: Arc<Shared>,
}

impl Handler for MsgServerLink {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        match pdu.command_id() {
            cid::CID_OTHER_MSG_SERV_INFO => self.msg_serv_info(conn, &pdu),
            cid::CID_OTHER_USER_CNT_UPDATE => self.user_cnt_update(conn, &pdu),
            cid::CID_ADMIN_MSG_SERV_TLS_INFO => self.tls_info(conn, &pdu),
            other => tracing::debug!(
                conn_id = conn.id(), peer = %conn.peer(), cmd = other, name = pdu.command_name(),
                "ignoring command on the msg_server port"
            ),
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        if let Some(s) = self.shared.table.remove(conn.id(), Instant::now()) {
            tracing::info!(
                conn_id = conn.id(), peer = %conn.peer(), host_name = %s.host_name,
                addr = %s.addr(), reason = %conn.close_reason().map(|r| r.to_string()).unwrap_or_default(),
                "msg_server unregistered"
            );
        }
    }
}

impl MsgServerLink {
    fn decode<M: Command>(&self, conn: &Conn, pdu: &Pdu) -> Option<M> {
        match pdu.decode::<M>() {
            Ok(m) => Some(m),
            Err(e) => {
                // Decisions 1: logged, counted, dropped; the link stays.
                self.shared.metrics.bad_bodies.inc();
                tracing::warn!(conn_id = conn.id(), peer = %conn.peer(), cmd = M::NAME,
                    error = %e, "dropping a body that does not decode");
                None
            }
        }
    }

    fn msg_serv_info(&self, conn: &Conn, pdu: &Pdu) {
        let Some(info) = self.decode::<ImMsgServInfo>(conn, pdu) else {
            return;
        };
        let (host, ip1, ip2, port) = (
            info.host_name.clone(),
            info.ip1.clone(),
            info.ip2.clone(),
            info.port,
        );
        let (cur, max) = (info.cur_conn_cnt, info.max_conn_cnt);
        self.shared.metrics.registrations.inc();
        let how = self.shared.table.register(conn.id(), info, Instant::now());
        tracing::info!(
            conn_id = conn.id(), peer = %conn.peer(), host_name = %host, %ip1, %ip2, port,
            cur_conn_cnt = cur, max_conn_cnt = max,
            replaced = how == Registration::Replaced, "msg_server registered"
        );
    }

    /// Our extension: the msg_server's TLS client port, sent right after IMMsgServInfo.
    fn tls_info(&self, conn: &Conn, pdu: &Pdu) {
        let Some(info) = self.decode::<ImAdminMsgServTlsInfo>(conn, pdu) else {
            return;
        };
        let port = info.tls_port.unwrap_or(0);
        if self.shared.table.set_tls_port(conn.id(), port) {
            tracing::info!(conn_id = conn.id(), peer = %conn.peer(), tls_port = port,
                "msg_server has a TLS client port");
        } else {
            tracing::debug!(conn_id = conn.id(), peer = %conn.peer(), tls_port = port,
                "TLS port before IMMsgServInfo or 0, ignored");
        }
    }

    fn user_cnt_update(&self, conn: &Conn, pdu: &Pdu) {
        let Some(update) = self.decode::<ImUserCntUpdate>(conn, pdu) else {
            return;
        };
        let known =
            self.shared
                .table
                .user_cnt_update(conn.id(), update.user_action, Instant::now());
        if !known {
            // As the original: counts only mean something for a registered server.
            tracing::debug!(conn_id = conn.id(), peer = %conn.peer(),
                "IMUserCntUpdate before IMMsgServInfo, ignored");
        }
    }
}
