//! SID_MSG: storing messages (FLOWS.md 6 and 12.6), read acks and unread counts (FLOWS.md 7).
//! History is in [`super::history`].
//!
//! A message is answered with its id only once it is durably stored (the store's contract);
//! anything that prevents storing it is answered with msg_id 0, which msg_server treats as
//! "not stored" and never acks to the sender (Decisions 4). Where the original sends no reply
//! at all (unknown type, empty body, group message from a non-member, WEAKNESSES 20) we answer
//! 0 too, so the sender's server learns at once that nothing was stored.

use im_proto::Pdu;
use im_proto::attach::RequestTag;
use im_proto::base::UnreadInfo;
use im_proto::message::{ImMsgData, ImMsgDataReadAck, ImUnreadMsgCntReq, ImUnreadMsgCntRsp};
use im_storage::{
    MsgType, NewContent, NewMessage, RequestId, SessionType, Store, StoreOutcome, Timestamp,
};
use prost::Message as _;

use super::{Dispatch, Req, Step, Work, decode};
use crate::convert::{CLIENT_BODY_BUDGET, fitting, latest_msg_data};
use crate::msfs::MAX_AUDIO_BYTES;
use crate::server::Shared;

/// Longest text body stored (`MAX_MSG_LEN` of the original, the size of the `content`
/// column; WEAKNESSES 22). Longer ones are refused with msg_id 0.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Identifies a conversation for ordering: a user pair (either direction) or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvKey {
    /// One-to-one, smaller id first.
    Pair(u32, u32),
    /// A group.
    Group(u32),
}

impl ConvKey {
    fn of(msg_type: MsgType, from: u32, to: u32) -> ConvKey {
        if msg_type.is_group() {
            ConvKey::Group(to)
        } else {
            ConvKey::Pair(from.min(to), from.max(to))
        }
    }
}

/// A checked message, ready for its store call.
#[derive(Debug)]
pub struct PreparedStore {
    /// Where the answer goes.
    pub req: Req,
    /// Its conversation.
    pub key: ConvKey,
    /// The request, echoed back with msg_id set (attach_data included).
    pub msg: ImMsgData,
    /// What to store.
    pub new: NewMessage,
}

impl PreparedStore {
    /// The "not stored" answer.
    pub fn failed_reply(&self) -> ImMsgData {
        ImMsgData {
            msg_id: 0,
            ..self.msg.clone()
        }
    }
}

/// A voice message whose bytes must reach msfs before it can be stored.
#[derive(Debug)]
pub struct AudioUpload {
    /// Its conversation (later stores of it wait for this one).
    pub key: ConvKey,
    req: Req,
    msg: ImMsgData,
    msg_type: MsgType,
    created: Timestamp,
    request_id: Option<RequestId>,
}

impl AudioUpload {
    /// Uploads the bytes; the driver then issues the store in the conversation's order.
    pub fn start<'a, S: Store>(self, sh: &'a Shared<S>, slot: u64) -> Work<'a> {
        Box::pin(async move {
            let AudioUpload {
                key,
                req,
                msg,
                msg_type,
                created,
                request_id,
            } = self;
            // Checked before: more than 4 bytes.
            let duration = u32::from_be_bytes([
                msg.msg_data[0],
                msg.msg_data[1],
                msg.msg_data[2],
                msg.msg_data[3],
            ]);
            let audio = msg.msg_data.slice(4..);
            let outcome = match sh.msfs.upload(&audio).await {
                Ok(url) => Ok(Box::new(PreparedStore {
                    new: NewMessage {
                        from_id: msg.from_user_id,
                        to_id: msg.to_session_id,
                        msg_type,
                        content: NewContent::Audio {
                            path: url,
                            size: audio.len() as u32,
                            duration,
                        },
                        created,
                        request_id,
                    },
                    req,
                    key,
                    msg,
                })),
                Err(e) => {
                    tracing::warn!(conn_id = req.conn.id(), from = msg.from_user_id,
                        to = msg.to_session_id, error = %e, "voice message not stored: upload failed");
                    req.reply(&ImMsgData { msg_id: 0, ..msg });
                    Err(Box::new(req.done(false)))
                }
            };
            Step::AudioReady { key, slot, outcome }
        })
    }
}

/// Why a message is refused before storing.
fn refusal(msg: &ImMsgData) -> Result<MsgType, &'static str> {
    let Some(msg_type) = u32::try_from(msg.msg_type).ok().and_then(MsgType::from_u32) else {
        return Err("unknown msg_type");
    };
    if msg.msg_data.is_empty() {
        return Err("empty msg_data");
    }
    if msg.to_session_id == 0 {
        return Err("to_session_id 0");
    }
    if !msg_type.is_group() && msg.from_user_id == msg.to_session_id {
        return Err("message to oneself");
    }
    if msg_type.is_audio() {
        if msg.msg_data.len() <= 4 {
            return Err("voice message of 4 bytes or less");
        }
        if msg.msg_data.len() - 4 > MAX_AUDIO_BYTES {
            return Err("voice message larger than msfs accepts");
        }
    } else if msg.msg_data.len() > MAX_TEXT_BYTES {
        return Err("text longer than 4096 bytes");
    }
    Ok(msg_type)
}

/// CID_MSG_DATA: stores a single or group message; answers with the same IMMsgData and its
/// msg_id (0 = not stored).
pub fn msg_data<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(msg) = decode::<ImMsgData, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let msg_type = match refusal(&msg) {
        Ok(t) => t,
        Err(why) => {
            tracing::debug!(
                conn_id = req.conn.id(),
                from = msg.from_user_id,
                to = msg.to_session_id,
                why,
                "message refused"
            );
            req.reply(&ImMsgData { msg_id: 0, ..msg });
            return req.finished(false);
        }
    };
    let created = if msg.create_time == 0 {
        now()
    } else {
        msg.create_time
    };
    let request_id = msg
        .attach_data
        .as_deref()
        .and_then(RequestTag::decode)
        .map(|t| RequestId {
            origin: t.origin,
            seq: t.seq,
        });
    let key = ConvKey::of(msg_type, msg.from_user_id, msg.to_session_id);
    if msg_type.is_audio() {
        return Dispatch::Audio(AudioUpload {
            key,
            req,
            msg,
            msg_type,
            created,
            request_id,
        });
    }
    let new = NewMessage {
        from_id: msg.from_user_id,
        to_id: msg.to_session_id,
        msg_type,
        content: NewContent::Text(msg.msg_data.to_vec()),
        created,
        request_id,
    };
    Dispatch::Store(PreparedStore { req, key, msg, new })
}

/// Makes the store call now (the write is queued in call order) and returns the wait for
/// its outcome and the answer.
pub fn issue<'a, S: Store>(sh: &'a Shared<S>, p: PreparedStore) -> Work<'a> {
    let PreparedStore {
        req, mut msg, new, ..
    } = p;
    let stored = sh.store.store_message(new);
    Box::pin(async move {
        let (id, ok) = match stored.await {
            Ok(StoreOutcome::Stored(id)) => {
                sh.metrics.messages_stored.inc();
                (id, true)
            }
            Ok(StoreOutcome::Duplicate(id)) => {
                sh.metrics.duplicates.inc();
                tracing::debug!(
                    conn_id = req.conn.id(),
                    msg_id = id,
                    "retried store answered with its first id"
                );
                (id, true)
            }
            Ok(refused @ (StoreOutcome::NoSuchGroup | StoreOutcome::NotMember)) => {
                tracing::debug!(conn_id = req.conn.id(), from = msg.from_user_id,
                    group = msg.to_session_id, outcome = ?refused, "group message refused");
                (0, false)
            }
            Err(e) => {
                tracing::warn!(conn_id = req.conn.id(), from = msg.from_user_id,
                    to = msg.to_session_id, error = %e, "message not stored");
                (0, false)
            }
        };
        msg.msg_id = id;
        req.reply(&msg);
        req.done(ok)
    })
}

/// CID_MSG_READ_ACK: clears the session's unread count (no reply).
pub fn read_ack<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(ack) = decode::<ImMsgDataReadAck, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let Some(session_type) = session_type(ack.session_type) else {
        tracing::debug!(
            conn_id = req.conn.id(),
            session_type = ack.session_type,
            "read ack with an unknown session type ignored"
        );
        return req.finished(false);
    };
    let cleared = sh
        .store
        .clear_unread(ack.user_id, session_type, ack.session_id);
    Dispatch::Work(Box::pin(async move {
        match cleared.await {
            Ok(()) => req.done(true),
            Err(e) => {
                tracing::warn!(user_id = ack.user_id, session_id = ack.session_id, error = %e, "read ack not applied");
                req.done(false)
            }
        }
    }))
}

/// CID_MSG_UNREAD_CNT_REQUEST: sessions with unread messages and their last message.
pub fn unread_count<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImUnreadMsgCntReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let unread = sh.store.unread(m.user_id);
    Dispatch::Work(Box::pin(async move {
        let list = match unread.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "unread counts not read");
                return req.done(false);
            }
        };
        let entries: Vec<UnreadInfo> = list
            .iter()
            .map(|u| UnreadInfo {
                session_id: u.peer_id,
                session_type: u.session_type as i32,
                unread_cnt: u.count,
                latest_msg_id: u.last.msg_id,
                latest_msg_data: latest_msg_data(&u.last.content, &sh.voice_placeholder),
                latest_msg_type: u.last.msg_type.as_u32() as i32,
                // The real sender, not always the peer (WEAKNESSES 30).
                latest_msg_from_user_id: u.last.from_id,
            })
            .collect();
        let mut rsp = ImUnreadMsgCntRsp {
            user_id: m.user_id,
            total_cnt: 0,
            unreadinfo_list: Vec::new(),
            attach_data: m.attach_data,
        };
        // total_cnt is at most 10 bytes whatever its value.
        let base = rsp.encoded_len() + 10;
        let n = fitting(base, 3, &entries, CLIENT_BODY_BUDGET);
        let mut entries = entries;
        entries.truncate(n);
        rsp.total_cnt = entries
            .iter()
            .fold(0u32, |sum, e| sum.saturating_add(e.unread_cnt));
        rsp.unreadinfo_list = entries;
        req.reply(&rsp);
        req.done(true)
    }))
}

/// The wire's session type, if valid.
pub fn session_type(v: i32) -> Option<SessionType> {
    u32::try_from(v).ok().and_then(SessionType::from_u32)
}

/// Now in unix seconds.
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(msg_type: i32, from: u32, to: u32, data: &[u8]) -> ImMsgData {
        ImMsgData {
            from_user_id: from,
            to_session_id: to,
            msg_id: 0,
            create_time: 1,
            msg_type,
            msg_data: Bytes::copy_from_slice(data),
            attach_data: None,
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(refusal(&msg(1, 1, 2, b"hi")), Ok(MsgType::SingleText));
        assert_eq!(refusal(&msg(0x11, 1, 1, b"hi")), Ok(MsgType::GroupText));
        assert!(refusal(&msg(3, 1, 2, b"hi")).is_err());
        assert!(refusal(&msg(-1, 1, 2, b"hi")).is_err());
        assert!(refusal(&msg(1, 1, 2, b"")).is_err());
        assert!(refusal(&msg(1, 1, 1, b"hi")).is_err());
        assert!(refusal(&msg(1, 1, 0, b"hi")).is_err());
        assert!(refusal(&msg(1, 1, 2, &[b'a'; MAX_TEXT_BYTES])).is_ok());
        assert!(refusal(&msg(1, 1, 2, &[b'a'; MAX_TEXT_BYTES + 1])).is_err());
        assert!(refusal(&msg(2, 1, 2, &[0, 0, 0, 1])).is_err());
        assert_eq!(
            refusal(&msg(2, 1, 2, &[0, 0, 0, 1, 9])),
            Ok(MsgType::SingleAudio)
        );
    }

    #[test]
    fn conversation_keys_ignore_direction() {
        assert_eq!(
            ConvKey::of(MsgType::SingleText, 5, 3),
            ConvKey::of(MsgType::SingleAudio, 3, 5)
        );
        assert_eq!(ConvKey::of(MsgType::GroupText, 5, 3), ConvKey::Group(3));
    }
}
