//! The legacy TCP client port (FLOWS.md 2, "Legacy TCP path"): IMMsgServReq is answered with
//! IMMsgServRsp carrying the request's seq, then the connection is closed once the answer is
//! written. The original never read from these connections (WEAKNESSES 19); this one works.

use std::sync::Arc;

use im_common::conn::CloseReason;
use im_common::{Conn, Handler};
use im_proto::base::ResultType;
use im_proto::login::{ImMsgServReq, ImMsgServRsp};
use im_proto::{Pdu, cid};

use crate::server::Shared;
use crate::table::Refusal;

/// One legacy client connection.
pub(crate) struct LegacyClient {
    pub shared: Arc<Shared>,
}

impl Handler for LegacyClient {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if pdu.command_id() != cid::CID_LOGIN_REQ_MSGSERVER {
            tracing::debug!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_id(),
                name = pdu.command_name(), "ignoring command on the legacy client port");
            return;
        }
        if let Err(e) = pdu.decode::<ImMsgServReq>() {
            self.shared.metrics.bad_bodies.inc();
            tracing::warn!(conn_id = conn.id(), peer = %conn.peer(), error = %e,
                "dropping an IMMsgServReq that does not decode");
            return;
        }
        let rsp = msg_serv_rsp(self.shared.assign());
        self.shared.metrics.legacy_answered.inc();
        if let Err(e) = conn.reply(&pdu, &rsp) {
            tracing::debug!(conn_id = conn.id(), error = %e, "IMMsgServRsp not sent");
        }
        conn.close_after_flush(CloseReason::Server("msg_server answered"));
    }
}

/// The answer for an assignment or a refusal.
fn msg_serv_rsp(result: Result<crate::table::Assignment, Refusal>) -> ImMsgServRsp {
    match result {
        Ok(a) => ImMsgServRsp {
            result_code: ResultType::RefuseReasonNone as i32,
            prior_ip: Some(a.ip1),
            backip_ip: Some(a.ip2),
            port: Some(a.port),
        },
        Err(r) => ImMsgServRsp {
            result_code: match r {
                Refusal::NoMsgServer => ResultType::RefuseReasonNoMsgServer,
                Refusal::Full => ResultType::RefuseReasonMsgServerFull,
            } as i32,
            prior_ip: None,
            backip_ip: None,
            port: None,
        },
    }
}
