//! What is left: file transfer requests, refused until file_server support exists.

use im_common::Conn;
use im_proto::Pdu;
use im_proto::file::{ImFileReq, ImFileRsp};

use super::{Auth, ClientHandler};

/// `CID_FILE_REQUEST`: no file_server is configured, so FLOWS.md 14.1 step 2's failure.
pub(super) fn file_request(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(req) = h.decode::<ImFileReq>(conn, &pdu) else {
        return;
    };
    let rsp = ImFileRsp {
        result_code: 1,
        from_user_id: auth.user_id,
        to_user_id: req.to_user_id,
        file_name: req.file_name,
        task_id: String::new(),
        ip_addr_list: Vec::new(),
        trans_mode: req.trans_mode,
    };
    let _ = conn.reply(&pdu, &rsp);
}
