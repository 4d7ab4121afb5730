//! Sending a message as a user (FLOWS.md 6, 12.6): the checks, the store through db_proxy
//! (tagged, so a retry is never stored twice: Decisions 4), and only once it is stored the
//! sender's acknowledgement, local delivery, routing and the push round.
//!
//! A client's IMMsgData and the admin port's IMAdminSendMsgReq both come through here, so a
//! message an operator sends on a user's behalf is stored, delivered, routed and pushed
//! exactly like one the user sent from a client; only who hears the acknowledgement differs.

use std::sync::Arc;

use im_proto::Pdu;
use im_proto::base::MsgType;
use im_proto::message::ImMsgData;

use crate::server::{Server, now_secs};
use crate::upstream::db::{DbError, Key};

/// Longest text body accepted, in bytes of the (base64) `msg_data`: the database column
/// holds 4096 characters and the original never checked (WEAKNESSES 22).
pub const MAX_TEXT_BYTES: usize = 4096;

/// Longest audio body accepted: every receiver must get the message in one PDU below the
/// client outbound cap (400 KiB, Decisions 2), and an IMMsgData adds under 64 bytes of
/// header and fields to its body. The original has no limit but the 1 MiB frame; its clients
/// record at most 60 s of speex, a few tens of KiB.
pub const MAX_AUDIO_BYTES: usize = im_proto::codec::CLIENT_OUTBOUND_CAP - 1024;

/// Why a message is refused before it is stored (the sender gets no ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No body.
    #[error("the message body is empty")]
    Empty,
    /// Not one of the four TeamTalk message types.
    #[error(
        "msg_type {0:#x} is not 1 (single text), 2 (single audio), 0x11 (group text) or 0x12 (group audio)"
    )]
    BadType(i32),
    /// A single message to oneself.
    #[error("a single message must go to another user")]
    ToSelf,
    /// A text body over [`MAX_TEXT_BYTES`].
    #[error("a text body of {0} bytes; at most {MAX_TEXT_BYTES}")]
    TooLong(usize),
    /// An audio body over [`MAX_AUDIO_BYTES`].
    #[error("an audio body of {0} bytes; at most {MAX_AUDIO_BYTES}")]
    AudioTooLong(usize),
}

/// Group message types (0x11 text, 0x12 audio).
pub fn is_group_type(t: i32) -> bool {
    t == MsgType::GroupText as i32 || t == MsgType::GroupAudio as i32
}

fn is_text_type(t: i32) -> bool {
    t == MsgType::SingleText as i32 || t == MsgType::GroupText as i32
}

/// Checks `msg` as sent by `from` and stamps it: the sender is `from` whatever the body
/// claims, the time is the server's, the id is db_proxy's to give. Returns whether it is a
/// group message.
pub fn prepare(msg: &mut ImMsgData, from: u32) -> Result<bool, Refusal> {
    let group = is_group_type(msg.msg_type);
    if msg.msg_data.is_empty() {
        return Err(Refusal::Empty);
    }
    if MsgType::try_from(msg.msg_type).is_err() {
        return Err(Refusal::BadType(msg.msg_type));
    }
    if !group && (msg.from_user_id == msg.to_session_id || msg.to_session_id == from) {
        return Err(Refusal::ToSelf);
    }
    if is_text_type(msg.msg_type) && msg.msg_data.len() > MAX_TEXT_BYTES {
        return Err(Refusal::TooLong(msg.msg_data.len()));
    }
    if !is_text_type(msg.msg_type) && msg.msg_data.len() > MAX_AUDIO_BYTES {
        return Err(Refusal::AudioTooLong(msg.msg_data.len()));
    }
    msg.from_user_id = from;
    msg.create_time = now_secs();
    msg.msg_id = 0;
    Ok(group)
}

/// Stores a [`prepare`]d message, then calls `on_stored` with db_proxy's answer (the ack
/// goes out there, before anything else sees the message) and, once stored, delivers it.
/// `sender_conn` is the connection it came from, which gets no copy; every other connection
/// of the sender gets one as "another device". A failed store is counted and reaches only
/// `on_stored` (Decisions 4: no ack, nothing delivered).
pub async fn store_and_deliver(
    s: Arc<Server>,
    msg: ImMsgData,
    group: bool,
    seq: u16,
    sender_conn: Option<u64>,
    turn: Option<Turn>,
    on_stored: impl FnOnce(Result<&ImMsgData, &DbError>) + Send,
) {
    let from = msg.from_user_id;
    let key = Key::session(from, group, msg.to_session_id);
    let stored = s.db.store(key, msg, seq).await;
    // Stores are submitted in the client's order and db_proxy answers a conversation in
    // order, but each answer is awaited in its own task: wait for the previous message of
    // this connection to be acked and delivered before this one (Decisions 6).
    let _done = match turn {
        Some(t) => Some(t.wait().await),
        None => None,
    };
    let stored = match stored {
        Ok(m) => m,
        Err(e) => {
            s.metrics.store_failures.inc();
            tracing::info!(conn_id = sender_conn, user_id = from, error = %e,
                "message not stored; no ack");
            on_stored(Err(&e));
            return;
        }
    };
    on_stored(Ok(&stored));
    deliver_stored(&s, stored, group, sender_conn).await;
}

/// The place of one message in its connection's completion order.
///
/// Each message of a connection gets the previous message's completion signal and its own;
/// it acks and delivers only after the previous one has, and signals its own completion
/// when it is done (or dropped), so that a client's messages are acked and delivered in the
/// order it sent them.
#[derive(Debug)]
pub struct Turn {
    previous: Option<tokio::sync::oneshot::Receiver<()>>,
    done: tokio::sync::oneshot::Sender<()>,
}

impl Turn {
    /// The next turn after `last` (the previous message's signal, replaced by ours).
    pub fn next(last: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> Turn {
        let (done, rx) = tokio::sync::oneshot::channel();
        Turn {
            previous: last.replace(rx),
            done,
        }
    }

    /// Waits for the previous message; the returned guard signals ours when dropped.
    async fn wait(self) -> tokio::sync::oneshot::Sender<()> {
        if let Some(p) = self.previous {
            // Err = the previous message's task ended without signalling: it is done too.
            let _ = p.await;
        }
        self.done
    }
}

/// After the ack: the stored message goes, encoded once with seq 0 and no attach_data, to
/// route_server and to the local connections of the receivers and of the sender's other
/// devices; then the push round for offline mobile receivers.
async fn deliver_stored(
    s: &Arc<Server>,
    mut stored: ImMsgData,
    group: bool,
    sender_conn: Option<u64>,
) {
    stored.attach_data = None;
    let frame = Pdu::from_msg(&stored, 0).to_frame();
    s.routes.send(frame.clone(), true);
    let from = stored.from_user_id;
    if group {
        let Some(members) = s.group_members(stored.to_session_id, from).await else {
            return;
        };
        s.deliver_msg_many(&members.ids, &frame, sender_conn).await;
        crate::push::spawn_round(s, stored, Some(members));
    } else {
        s.deliver_msg(stored.to_session_id, &frame, None);
        s.deliver_msg(from, &frame, sender_conn);
        crate::push::spawn_round(s, stored, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u32, to: u32, t: MsgType, len: usize) -> ImMsgData {
        ImMsgData {
            from_user_id: from,
            to_session_id: to,
            msg_id: 7,
            create_time: 1,
            msg_type: t as i32,
            msg_data: bytes::Bytes::from(vec![b'a'; len]),
            attach_data: None,
        }
    }

    #[test]
    fn prepare_checks_and_stamps() {
        let mut m = msg(99, 2, MsgType::SingleText, 10);
        assert_eq!(prepare(&mut m, 1), Ok(false));
        assert_eq!((m.from_user_id, m.msg_id), (1, 0));
        assert!(m.create_time > 1);
        assert_eq!(prepare(&mut msg(1, 5, MsgType::GroupText, 3), 1), Ok(true));
        assert_eq!(
            prepare(&mut msg(1, 1, MsgType::SingleText, 3), 1),
            Err(Refusal::ToSelf)
        );
        assert_eq!(
            prepare(&mut msg(9, 1, MsgType::SingleText, 3), 1),
            Err(Refusal::ToSelf)
        );
        assert_eq!(
            prepare(&mut msg(1, 2, MsgType::SingleText, 0), 1),
            Err(Refusal::Empty)
        );
        assert_eq!(
            prepare(&mut msg(1, 2, MsgType::GroupText, MAX_TEXT_BYTES + 1), 1),
            Err(Refusal::TooLong(MAX_TEXT_BYTES + 1))
        );
        // Audio is not limited by the text bound.
        assert_eq!(
            prepare(&mut msg(1, 2, MsgType::SingleAudio, MAX_TEXT_BYTES + 1), 1),
            Ok(false)
        );
        let mut bad = msg(1, 2, MsgType::SingleText, 3);
        bad.msg_type = 0x33;
        assert_eq!(prepare(&mut bad, 1), Err(Refusal::BadType(0x33)));
        assert!(Refusal::BadType(0x33).to_string().contains("0x33"));
    }
}
