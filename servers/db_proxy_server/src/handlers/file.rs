//! SID_FILE: the records of offline file transfers (FLOWS.md 14.3 steps 4, 5 and 7). The
//! files themselves stay on file_server.

use im_proto::Pdu;
use im_proto::base::OfflineFileInfo;
use im_proto::file::{
    ImFileAddOfflineReq, ImFileDelOfflineReq, ImFileHasOfflineReq, ImFileHasOfflineRsp,
};
use im_storage::Store;
use prost::Message as _;

use super::{Dispatch, Req, decode};
use crate::convert::{CLIENT_BODY_BUDGET, fitting};
use crate::server::Shared;

/// Longest task id stored (file_server's are 36-character UUIDs; the column is 128).
pub const MAX_TASK_ID_BYTES: usize = 128;

/// Longest file name stored (the proposed column is varchar(512)).
pub const MAX_FILE_NAME_BYTES: usize = 512;

/// CID_FILE_HAS_OFFLINE_REQ: offline files waiting for the user, oldest first. msg_server
/// adds file_server addresses before relaying.
pub fn has_offline<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImFileHasOfflineReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let files = sh.store.offline_files(m.user_id);
    Dispatch::Work(Box::pin(async move {
        let files = match files.await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "offline files not read");
                return req.done(false);
            }
        };
        let list: Vec<OfflineFileInfo> = files
            .into_iter()
            .map(|f| OfflineFileInfo {
                from_user_id: f.from_id,
                task_id: f.task_id,
                file_name: f.file_name,
                file_size: f.size,
            })
            .collect();
        let mut rsp = ImFileHasOfflineRsp {
            user_id: m.user_id,
            offline_file_list: Vec::new(),
            ip_addr_list: Vec::new(),
            attach_data: m.attach_data,
        };
        let n = fitting(rsp.encoded_len(), 2, &list, CLIENT_BODY_BUDGET);
        let mut list = list;
        list.truncate(n);
        rsp.offline_file_list = list;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_FILE_ADD_OFFLINE_REQ: records a finished offline upload (no reply).
pub fn add_offline<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImFileAddOfflineReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    if m.task_id.is_empty()
        || m.task_id.len() > MAX_TASK_ID_BYTES
        || m.file_name.len() > MAX_FILE_NAME_BYTES
    {
        tracing::debug!(
            from = m.from_user_id,
            to = m.to_user_id,
            "offline file record refused: bad task id or name"
        );
        return req.finished(false);
    }
    Dispatch::Work(Box::pin(async move {
        let stored = sh.store.add_offline_file(
            m.from_user_id,
            m.to_user_id,
            &m.task_id,
            &m.file_name,
            m.file_size,
        );
        match stored.await {
            Ok(()) => req.done(true),
            Err(e) => {
                tracing::warn!(from = m.from_user_id, to = m.to_user_id, error = %e, "offline file not recorded");
                req.done(false)
            }
        }
    }))
}

/// CID_FILE_DEL_OFFLINE_REQ: forgets a downloaded offline file (no reply).
pub fn del_offline<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImFileDelOfflineReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    Dispatch::Work(Box::pin(async move {
        let deleted = sh
            .store
            .delete_offline_file(m.from_user_id, m.to_user_id, &m.task_id);
        match deleted.await {
            Ok(_) => req.done(true),
            Err(e) => {
                tracing::warn!(from = m.from_user_id, to = m.to_user_id, error = %e, "offline file record not deleted");
                req.done(false)
            }
        }
    }))
}
