//! SID_FILE (FLOWS.md 14): file transfer tasks on a file_server, and the records of offline
//! files in db_proxy. The sender is always the authenticated user.

use im_common::Conn;
use im_proto::attach::AttachRecord;
use im_proto::base::{TransferFileType, UserStatType};
use im_proto::buddy::{ImUsersStatReq, ImUsersStatRsp};
use im_proto::file::{
    ImFileAddOfflineReq, ImFileDelOfflineReq, ImFileHasOfflineReq, ImFileHasOfflineRsp,
    ImFileNotify, ImFileReq, ImFileRsp,
};
use im_proto::server::{ImFileTransferReq, ImFileTransferRsp};
use im_proto::{Pdu, cid};

use super::{Auth, ClientHandler, forward, submit};
use crate::server::Server;
use crate::state::PcLogin;
use crate::upstream::db::Key;

const ONLINE: i32 = TransferFileType::FileTypeOnline as i32;
const OFFLINE: i32 = TransferFileType::FileTypeOffline as i32;

/// Sends IMFileNotify to the receiver's PC-class connections here and, through route_server,
/// to its connections elsewhere (FLOWS.md 14.1 step 5, 14.3 step 4; Decisions 7).
fn notify_receiver(s: &Server, notify: &ImFileNotify) {
    let pdu = Pdu::from_msg(notify, 0);
    let frame = pdu.to_frame();
    s.sessions
        .send_where(notify.to_user_id, &frame, false, |c| !c.is_mobile());
    s.routes.send_notify(pdu);
}

/// True when `to` has a PC client online (the wire's presence, Decisions 8): a PC
/// connection here, else route_server's answer, else what route_server last told us. The
/// original counted any locally known user as online (WEAKNESSES 41).
async fn receiver_on_pc(s: &Server, from: u32, to: u32) -> bool {
    if s.sessions.matching(to, 0).iter().any(|c| !c.is_mobile()) {
        return true;
    }
    if let Some(route) = s.routes.target() {
        let req = ImUsersStatReq {
            user_id: from,
            user_id_list: vec![to],
            attach_data: None,
        };
        let asked = route
            .request_pdu(
                Pdu::from_msg(&req, 0),
                cid::CID_BUDDY_LIST_USERS_STATUS_RESPONSE,
                s.cfg.request_timeout,
            )
            .await;
        match asked.map(|p| p.decode::<ImUsersStatRsp>()) {
            Ok(Ok(rsp)) => {
                return rsp
                    .user_stat_list
                    .iter()
                    .any(|u| u.user_id == to && u.status == UserStatType::UserStatusOnline as i32);
            }
            other => tracing::debug!(user_id = to, error = ?other.err(),
                "route_server did not answer a presence query for a file transfer"),
        }
    }
    s.sessions.pc_login(to) == Some(PcLogin::Online)
}

/// `CID_FILE_REQUEST` (FLOWS.md 14.1): ONLINE becomes OFFLINE when the receiver has no PC
/// client online; a task is created on a file_server; the sender gets IMFileRsp with its
/// addresses, the receiver IMFileNotify. Any failure answers result 1.
pub(super) async fn request(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(req) = h.decode::<ImFileReq>(conn, &pdu) else {
        return;
    };
    let s = h.server.clone();
    let from = auth.user_id;
    let seq = pdu.seq_num();
    let failed = move |conn: &Conn, req: &ImFileReq, mode: i32| {
        let rsp = ImFileRsp {
            result_code: 1,
            from_user_id: from,
            to_user_id: req.to_user_id,
            file_name: req.file_name.clone(),
            task_id: String::new(),
            ip_addr_list: Vec::new(),
            trans_mode: mode,
        };
        let _ = conn.send_msg(&rsp, seq);
    };
    if req.to_user_id == 0 || s.files.live_count() == 0 {
        // FLOWS.md 14.1 step 2: no file_server (or no receiver).
        failed(conn, &req, req.trans_mode);
        return;
    }
    let conn = conn.clone();
    submit(&h.server, async move {
        let mode = if req.trans_mode == ONLINE && !receiver_on_pc(&s, from, req.to_user_id).await
        {
            OFFLINE
        } else {
            req.trans_mode
        };
        let Some(link) = s.files.pick() else {
            failed(&conn, &req, mode);
            return;
        };
        let treq = ImFileTransferReq {
            from_user_id: from,
            to_user_id: req.to_user_id,
            file_name: req.file_name.clone(),
            file_size: req.file_size,
            trans_mode: mode,
            // The original's 12-byte handle record, for an original file_server that copies
            // it back; we match the answer by seq.
            attach_data: Some(AttachRecord::handle(conn.id() as u32).encode()),
        };
        let answer = link
            .up
            .request(Pdu::from_msg(&treq, 0), cid::CID_OTHER_FILE_TRANSFER_RSP)
            .await;
        let task_id = match answer.map(|p| p.decode::<ImFileTransferRsp>()) {
            Ok(Ok(rsp)) if rsp.result_code == 0 && rsp.task_id.as_deref().is_some_and(|t| !t.is_empty()) => {
                rsp.task_id.unwrap_or_default()
            }
            other => {
                tracing::info!(user_id = from, to = req.to_user_id, answer = ?other.map(|r| r.map(|r| r.result_code)),
                    "file_server did not create a task");
                failed(&conn, &req, mode);
                return;
            }
        };
        let addrs = link.addrs();
        let rsp = ImFileRsp {
            result_code: 0,
            from_user_id: from,
            to_user_id: req.to_user_id,
            file_name: req.file_name.clone(),
            task_id: task_id.clone(),
            ip_addr_list: addrs.clone(),
            trans_mode: mode,
        };
        let _ = conn.send_msg(&rsp, seq);
        tracing::debug!(user_id = from, to = req.to_user_id, mode, "file task created");
        notify_receiver(
            &s,
            &ImFileNotify {
                from_user_id: from,
                to_user_id: req.to_user_id,
                file_name: req.file_name,
                file_size: req.file_size,
                task_id,
                ip_addr_list: addrs,
                trans_mode: mode,
                offline_ready: 0,
            },
        );
    })
    .await;
}

/// `CID_FILE_HAS_OFFLINE_REQ` (FLOWS.md 14.3 step 5): db_proxy's list with file_server
/// addresses added.
pub(super) async fn has_offline(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImFileHasOfflineReq>(conn, &pdu) else {
        return;
    };
    req.user_id = auth.user_id;
    req.attach_data = None;
    let s = h.server.clone();
    let conn = conn.clone();
    let seq = pdu.seq_num();
    let fwd = forward(&req, &pdu);
    submit(&h.server, async move {
        let expect = cid::CID_FILE_HAS_OFFLINE_RES;
        let answer = s.db.request(Key::User(req.user_id), fwd, expect).await;
        match answer.map(|p| p.decode::<ImFileHasOfflineRsp>()) {
            Ok(Ok(mut rsp)) => {
                rsp.attach_data = None;
                rsp.ip_addr_list = s.files.any_addrs();
                let _ = conn.send_msg(&rsp, seq);
            }
            Ok(Err(e)) => tracing::info!(conn_id = conn.id(), error = %e,
                "db_proxy's offline file list did not decode"),
            Err(e) => tracing::info!(conn_id = conn.id(), error = %e,
                "offline file list request failed; the client gets no answer"),
        }
    })
    .await;
}

/// `CID_FILE_ADD_OFFLINE_REQ` (FLOWS.md 14.3 step 4): recorded in db_proxy (no answer) and
/// announced to the receiver (offline_ready 1).
pub(super) fn add_offline(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut req) = h.decode::<ImFileAddOfflineReq>(conn, &pdu) else {
        return;
    };
    req.from_user_id = auth.user_id;
    if req.to_user_id == 0 || req.task_id.is_empty() {
        tracing::debug!(
            user_id = auth.user_id,
            "offline file record without receiver or task dropped"
        );
        return;
    }
    let s = &h.server;
    // The receiver's key: its later list and delete requests travel on the same link, so
    // db_proxy sees them after this insert.
    s.db.send(Key::User(req.to_user_id), forward(&req, &pdu));
    notify_receiver(
        s,
        &ImFileNotify {
            from_user_id: req.from_user_id,
            to_user_id: req.to_user_id,
            file_name: req.file_name,
            file_size: req.file_size,
            task_id: req.task_id,
            ip_addr_list: s.files.any_addrs(),
            trans_mode: OFFLINE,
            offline_ready: 1,
        },
    );
}

/// `CID_FILE_DEL_OFFLINE_REQ` (FLOWS.md 14.3 step 7): forwarded as the client sent it
/// (from = the uploader), but only by the receiver or the uploader of that record.
pub(super) fn del_offline(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(req) = h.decode::<ImFileDelOfflineReq>(conn, &pdu) else {
        return;
    };
    if auth.user_id != req.to_user_id && auth.user_id != req.from_user_id {
        tracing::info!(
            user_id = auth.user_id,
            from = req.from_user_id,
            to = req.to_user_id,
            "refused to delete another user's offline file record"
        );
        return;
    }
    h.server
        .db
        .send(Key::User(req.to_user_id), forward(&req, &pdu));
}
