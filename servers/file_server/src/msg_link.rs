//! The msg_server links (FLOWS.md 1.4, 14.1): the address list clients are given, and task
//! creation. A failed creation is answered with result 1 and the link stays (the original
//! closed it, WEAKNESSES 51).

use std::sync::Arc;

use im_common::{Conn, Handler};
use im_proto::server::{
    ImFileServerIpReq, ImFileServerIpRsp, ImFileTransferReq, ImFileTransferRsp,
};
use im_proto::{Command, Pdu, cid};

use crate::state::Shared;
use crate::task::{Mode, Task};

/// Longest file name accepted in bytes (the IMTransmitFile column is 512).
pub const MAX_FILE_NAME_BYTES: usize = 512;

/// The handler of one msg_server link.
#[derive(Debug)]
pub struct MsgLinkHandler {
    shared: Arc<Shared>,
}

impl MsgLinkHandler {
    /// A handler for a just-accepted link.
    pub fn new(shared: Arc<Shared>) -> Self {
        MsgLinkHandler { shared }
    }

    fn decode<M: Command>(&self, conn: &Conn, pdu: &Pdu) -> Option<M> {
        match pdu.decode::<M>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.shared.metrics.decode_errors.inc();
                tracing::info!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_name(),
                    error = %e, "dropping a msg_server PDU whose body does not decode");
                None
            }
        }
    }

    /// `CID_OTHER_FILE_SERVER_IP_REQ`: the client addresses.
    fn server_ip(&self, conn: &Conn, pdu: &Pdu) {
        if self.decode::<ImFileServerIpReq>(conn, pdu).is_none() {
            return;
        }
        let rsp = ImFileServerIpRsp {
            ip_addr_list: self.shared.advertise.clone(),
        };
        let _ = conn.reply(pdu, &rsp);
    }

    /// `CID_OTHER_FILE_TRANSFER_REQ`: a new task with a random UUID.
    fn transfer(&self, conn: &Conn, pdu: &Pdu) {
        let Some(req) = self.decode::<ImFileTransferReq>(conn, pdu) else {
            return;
        };
        let s = &self.shared;
        let mut rsp = ImFileTransferRsp {
            result_code: 1,
            from_user_id: req.from_user_id,
            to_user_id: req.to_user_id,
            file_name: Some(req.file_name.clone()),
            file_size: Some(req.file_size),
            task_id: Some(String::new()),
            trans_mode: Some(req.trans_mode),
            attach_data: req.attach_data.clone(),
        };
        let refused = match Mode::from_wire(req.trans_mode) {
            _ if req.from_user_id == 0 || req.to_user_id == 0 => Err("a user id is 0".to_owned()),
            _ if req.file_name.len() > MAX_FILE_NAME_BYTES => Err(format!(
                "file name of {} bytes is over {MAX_FILE_NAME_BYTES}",
                req.file_name.len()
            )),
            None => Err(format!(
                "trans_mode {} is neither 1 (online) nor 2 (offline)",
                req.trans_mode
            )),
            Some(mode) => {
                let id = uuid::Uuid::new_v4().hyphenated().to_string();
                let task = Task::new(
                    id.clone(),
                    req.from_user_id,
                    req.to_user_id,
                    mode,
                    req.file_name.clone(),
                    req.file_size,
                );
                match s.tasks.insert(Arc::new(task)) {
                    Ok(()) => {
                        s.metrics.task_created(mode);
                        tracing::debug!(
                            task = Shared::short_id(&id),
                            from = req.from_user_id,
                            to = req.to_user_id,
                            mode = mode.as_str(),
                            size = req.file_size,
                            "task created"
                        );
                        rsp.result_code = 0;
                        rsp.task_id = Some(id);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(why) = refused {
            s.metrics.task_create_failures.inc();
            tracing::info!(conn_id = conn.id(), from = req.from_user_id, to = req.to_user_id,
                reason = %why, "task creation refused");
        }
        let _ = conn.reply(pdu, &rsp);
    }
}

impl Handler for MsgLinkHandler {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        match pdu.command_id() {
            cid::CID_OTHER_FILE_SERVER_IP_REQ => self.server_ip(conn, &pdu),
            cid::CID_OTHER_FILE_TRANSFER_REQ => self.transfer(conn, &pdu),
            other => {
                self.shared.metrics.unknown_commands.inc();
                tracing::debug!(
                    conn_id = conn.id(),
                    cmd = other,
                    name = pdu.command_name(),
                    "ignoring a msg_server command file_server does not handle"
                );
            }
        }
    }
}
