//! SID_MSG history (FLOWS.md 9): a page of a conversation, messages by id, the latest id.
//!
//! Voice messages are read back from msfs and rebuilt as the client sent them (4-byte
//! big-endian duration + bytes). One whose bytes cannot be fetched is left out and logged,
//! never sent with its storage id as the payload (WEAKNESSES 35). Pages are capped at
//! [`MAX_PAGE`] messages and below the client frame limit (Decisions 2); the newest messages
//! are kept, so the client's next page (ids below the oldest it got) continues where this one
//! stopped.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use im_proto::Pdu;
use im_proto::base::MsgInfo;
use im_proto::message::{
    ImGetLatestMsgIdReq, ImGetLatestMsgIdRsp, ImGetMsgByIdReq, ImGetMsgByIdRsp, ImGetMsgListReq,
    ImGetMsgListRsp,
};
use im_storage::{MessageContent, Store, StoredMessage};
use prost::Message as _;

use super::message::session_type;
use super::{Dispatch, Req, decode};
use crate::convert::{CLIENT_BODY_BUDGET, entry_len};
use crate::server::Shared;

/// Most messages in one history answer (the original has no cap, WEAKNESSES 23).
pub const MAX_PAGE: u32 = 200;

/// Most ids looked up at once (the original's LIMIT 100).
pub const MAX_IDS: usize = 100;

/// Voice downloads running at once for one answer.
const DOWNLOADS_AT_ONCE: usize = 4;

/// CID_MSG_LIST_REQUEST: a page of history, newest first.
pub fn msg_list<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGetMsgListReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    // The original sends nothing for an invalid session type.
    let Some(st) = session_type(m.session_type) else {
        return req.finished(false);
    };
    let count = m.msg_cnt.min(MAX_PAGE);
    let history = sh
        .store
        .history(m.user_id, st, m.session_id, m.msg_id_begin, count);
    Dispatch::Work(Box::pin(async move {
        let msgs = match history.await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, session_id = m.session_id, error = %e, "history not read");
                return req.done(false);
            }
        };
        let mut rsp = ImGetMsgListRsp {
            user_id: m.user_id,
            session_type: m.session_type,
            session_id: m.session_id,
            msg_id_begin: m.msg_id_begin,
            msg_list: Vec::new(),
            attach_data: m.attach_data,
        };
        rsp.msg_list = expand(sh, msgs, rsp.encoded_len(), 5).await;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_MSG_GET_BY_MSG_ID_REQ: the messages with the given ids, newest first.
pub fn msgs_by_id<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(mut m) = decode::<ImGetMsgByIdReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let Some(st) = session_type(m.session_type) else {
        return req.finished(false);
    };
    m.msg_id_list.sort_unstable();
    m.msg_id_list.dedup();
    super::note_cut(sh, &req, "message ids", m.msg_id_list.len(), MAX_IDS);
    // The newest ids are the ones an answer of at most MAX_IDS keeps.
    let skip = m.msg_id_list.len().saturating_sub(MAX_IDS);
    let ids = m.msg_id_list.split_off(skip);
    Dispatch::Work(Box::pin(async move {
        let found = sh.store.messages_by_ids(m.user_id, st, m.session_id, &ids);
        let msgs = match found.await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, session_id = m.session_id, error = %e, "messages by id not read");
                return req.done(false);
            }
        };
        let mut rsp = ImGetMsgByIdRsp {
            user_id: m.user_id,
            session_type: m.session_type,
            session_id: m.session_id,
            msg_list: Vec::new(),
            attach_data: m.attach_data,
        };
        rsp.msg_list = expand(sh, msgs, rsp.encoded_len(), 4).await;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// CID_MSG_GET_LATEST_MSG_ID_REQ: the newest id of a conversation (0 if none).
pub fn latest_msg_id<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImGetLatestMsgIdReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let Some(st) = session_type(m.session_type) else {
        return req.finished(false);
    };
    let latest = sh.store.latest_msg_id(m.user_id, st, m.session_id);
    Dispatch::Work(Box::pin(async move {
        let id = match latest.await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, session_id = m.session_id, error = %e, "latest msg id not read");
                return req.done(false);
            }
        };
        req.reply(&ImGetLatestMsgIdRsp {
            user_id: m.user_id,
            session_type: m.session_type,
            session_id: m.session_id,
            latest_msg_id: id,
            attach_data: m.attach_data,
        });
        req.done(true)
    }))
}

/// Turns stored messages (newest first) into wire entries of a repeated field with tag
/// `tag`, fetching voice bytes, until the client budget is used (`base` bytes already are).
async fn expand<S: Store>(
    sh: &Shared<S>,
    msgs: Vec<StoredMessage>,
    base: usize,
    tag: u32,
) -> Vec<MsgInfo> {
    let mut used = base;
    let mut out = Vec::with_capacity(msgs.len());
    let mut infos = futures_util::stream::iter(msgs)
        .map(|m| to_msg_info(sh, m))
        .buffered(DOWNLOADS_AT_ONCE);
    while let Some(info) = infos.next().await {
        let Some(info) = info else {
            continue;
        };
        used += entry_len(tag, &info);
        if used > CLIENT_BODY_BUDGET {
            break;
        }
        out.push(info);
    }
    out
}

async fn to_msg_info<S: Store>(sh: &Shared<S>, m: StoredMessage) -> Option<MsgInfo> {
    let msg_data = match &m.content {
        MessageContent::Text(t) => Bytes::copy_from_slice(t),
        MessageContent::Audio(a) => match sh.msfs.download(&a.path, a.size).await {
            Ok(bytes) => {
                let mut b = BytesMut::with_capacity(4 + bytes.len());
                b.put_u32(a.duration);
                b.extend_from_slice(&bytes);
                b.freeze()
            }
            Err(e) => {
                tracing::warn!(msg_id = m.msg_id, audio_id = a.id, error = %e,
                    "voice message left out of history: its bytes could not be fetched");
                return None;
            }
        },
    };
    Some(MsgInfo {
        msg_id: m.msg_id,
        from_session_id: m.from_id,
        create_time: m.created,
        msg_type: m.msg_type.as_u32() as i32,
        msg_data,
    })
}
