//! `/query/SendMessage` (ours): a text message from a user, encrypted as a stock client would,
//! stored through db_proxy and delivered through route_server.
//!
//! ```text
//! {"from_user_id": n, "to_session_id": n, "msg_type": 1 | 17 | "single" | "group", "text": "..."}
//! -> {"error_code":0,"error_msg":"成功","msg_id":n}
//! ```
//! The answer comes only once db_proxy has stored the message (Decisions 4); the store carries
//! a request tag, so a retry after a lost link never stores it twice. Then the stored
//! IMMsgData (seq 0, no attach_data) goes to route_server, which sends a single-chat message
//! to the msg_servers where the receiver or the sender's other devices are online and
//! broadcasts a group message; those msg_servers deliver it as if it had been routed from
//! another msg_server. Offline receivers find it among their unread messages at next login
//! (no push is sent from here).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use im_proto::Pdu;
use im_proto::base::MsgType;
use im_proto::message::ImMsgData;
use serde_json::Value;

use super::{Answer, BadParam, Code, string, uint};
use crate::server::Server;
use crate::upstream::{DbError, Key};

/// Longest stored text body (db_proxy refuses longer ones, as the original's `MAX_MSG_LEN`):
/// checked here on the encrypted form so the answer says "bad parameter" rather than "not
/// stored".
pub const MAX_STORED_TEXT_BYTES: usize = 4096;

fn msg_type(q: &Value) -> Result<MsgType, BadParam> {
    const KEY: &str = "msg_type";
    let t = match q.get(KEY) {
        Some(Value::String(s)) if s == "single" => return Ok(MsgType::SingleText),
        Some(Value::String(s)) if s == "group" => return Ok(MsgType::GroupText),
        Some(_) => uint(q, KEY)?,
        None => return Err(BadParam(KEY)),
    };
    match t {
        1 => Ok(MsgType::SingleText),
        0x11 => Ok(MsgType::GroupText),
        _ => Err(BadParam(KEY)),
    }
}

/// `/query/SendMessage`.
pub async fn send_message(s: &Server, q: &Value) -> Answer {
    match send(s, q).await {
        Ok(a) | Err(a) => a,
    }
}

async fn send(s: &Server, q: &Value) -> Result<Answer, Answer> {
    let from = uint(q, "from_user_id")?;
    let to = uint(q, "to_session_id")?;
    let kind = msg_type(q)?;
    let text = string(q, "text")?;
    if from == 0 || to == 0 || text.is_empty() {
        return Err(Code::BadParam.into());
    }
    let body = s.cipher.encrypt(text.as_bytes());
    if body.len() > MAX_STORED_TEXT_BYTES {
        return Err(Code::BadParam.into());
    }
    let key = if kind == MsgType::GroupText {
        Key::Group(to)
    } else {
        Key::Pair(from, to)
    };
    let msg = ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32),
        msg_type: kind as i32,
        msg_data: Bytes::from(body),
        attach_data: None,
    };
    let stored = match s.db.store(key, msg).await {
        Ok(m) => m,
        Err(DbError::NotStored) => {
            tracing::info!(
                user_id = from,
                to,
                "db_proxy did not store an HTTP API message"
            );
            return Err(Code::SendFailed.into());
        }
        Err(e) => {
            tracing::warn!(user_id = from, to, error = %e, "HTTP API message: no answer from db_proxy");
            return Err(Code::ServerError.into());
        }
    };
    s.metrics.messages_sent.inc();
    let msg_id = stored.msg_id;
    let delivery = ImMsgData {
        attach_data: None,
        ..stored
    };
    s.route(&Pdu::from_msg(&delivery, 0)).await;
    Ok(Answer::code(Code::Ok).with("msg_id", u64::from(msg_id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_types() {
        let t = |v: Value| msg_type(&json!({ "msg_type": v }));
        assert_eq!(t(json!(1)), Ok(MsgType::SingleText));
        assert_eq!(t(json!(17)), Ok(MsgType::GroupText));
        assert_eq!(t(json!("single")), Ok(MsgType::SingleText));
        assert_eq!(t(json!("group")), Ok(MsgType::GroupText));
        assert_eq!(t(json!("17")), Ok(MsgType::GroupText));
        // Audio needs bytes a client recorded; not through this endpoint.
        assert!(t(json!(2)).is_err());
        assert!(t(json!(18)).is_err());
        assert!(t(json!("other")).is_err());
        assert!(msg_type(&json!({})).is_err());
    }
}
