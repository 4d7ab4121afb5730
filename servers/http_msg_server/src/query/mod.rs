//! The `/query/` endpoints (FLOWS.md 16): request fields, error codes and answers.
//!
//! Requests are JSON objects; every listed key must be present (missing or of the wrong type
//! -> error 1). Numbers may also come as decimal strings, as form-fed PHP sends them. `app_key`
//! is accepted and ignored, as in the original. `req_user_id` is the identity the request acts
//! as toward db_proxy: 0 is the system identity the original admin web uses (no group
//! permission checks, creator 0), any other id acts with that user's rights (and becomes the
//! creator of a group it creates). Every request needs the API token, so 0 is only ever used
//! by a holder of it.
//!
//! Answers are `{"error_code":N,"error_msg":"...",...}` with HTTP 200, as the original, whose
//! codes and messages are kept: 0 成功, 1 参数错误, 10 服务器异常, 11 创建群失败, 12
//! 更改群成员失败. Ours: 2 认证失败 (HTTP 401, from the range the original reserved for its
//! never-used authorisation hook) and 13 发送消息失败 (SendMessage not stored).

pub mod group;
pub mod message;

use serde_json::Value;

/// Most ids in one list: the bound db_proxy applies too.
pub const MAX_LIST_LEN: usize = 10_000;

/// An answer's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0: success.
    Ok = 0,
    /// 1: a required key missing, of the wrong type, or an invalid value.
    BadParam = 1,
    /// 2 (ours): missing or wrong API token.
    Unauthorized = 2,
    /// 10: no db_proxy (or no answer from it).
    ServerError = 10,
    /// 11: db_proxy refused to create the group.
    CreateGroupFailed = 11,
    /// 12: db_proxy refused the member change.
    ChangeMembersFailed = 12,
    /// 13 (ours): db_proxy did not store the message.
    SendFailed = 13,
}

impl Code {
    /// The original's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Code::Ok => "成功",
            Code::BadParam => "参数错误",
            Code::Unauthorized => "认证失败",
            Code::ServerError => "服务器异常",
            Code::CreateGroupFailed => "创建群失败",
            Code::ChangeMembersFailed => "更改群成员失败",
            Code::SendFailed => "发送消息失败",
        }
    }
}

/// An answer: a code plus numeric fields after `error_code` and `error_msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The code.
    pub code: Code,
    /// Extra fields, in order.
    pub fields: Vec<(&'static str, u64)>,
}

impl Answer {
    /// An answer with no extra field.
    pub fn code(code: Code) -> Self {
        Answer {
            code,
            fields: Vec::new(),
        }
    }

    /// Adds a numeric field.
    pub fn with(mut self, key: &'static str, value: u64) -> Self {
        self.fields.push((key, value));
        self
    }

    /// The JSON text: `error_code`, `error_msg`, then the fields in order.
    pub fn to_json(&self) -> String {
        let mut out = format!(
            "{{\"error_code\":{},\"error_msg\":\"{}\"",
            self.code as u32,
            self.code.message()
        );
        for (k, v) in &self.fields {
            out.push_str(&format!(",\"{k}\":{v}"));
        }
        out.push('}');
        out
    }
}

impl From<Code> for Answer {
    fn from(c: Code) -> Self {
        Answer::code(c)
    }
}

/// A parameter problem (answered with error 1); names the key for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam(pub &'static str);

impl From<BadParam> for Answer {
    fn from(_: BadParam) -> Self {
        Answer::code(Code::BadParam)
    }
}

/// A u32 field: a JSON number, or a string of decimal digits.
pub fn uint(q: &Value, key: &'static str) -> Result<u32, BadParam> {
    as_uint(q.get(key).ok_or(BadParam(key))?).ok_or(BadParam(key))
}

fn as_uint(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s)
            if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A string field.
pub fn string(q: &Value, key: &'static str) -> Result<String, BadParam> {
    q.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(BadParam(key))
}

/// A list of u32 (numbers or decimal strings), at most [`MAX_LIST_LEN`].
pub fn uint_list(q: &Value, key: &'static str) -> Result<Vec<u32>, BadParam> {
    let list = q.get(key).and_then(Value::as_array).ok_or(BadParam(key))?;
    if list.len() > MAX_LIST_LEN {
        return Err(BadParam(key));
    }
    list.iter()
        .map(|v| as_uint(v).ok_or(BadParam(key)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_keep_the_original_codes_and_order() {
        assert_eq!(
            Answer::code(Code::Ok).with("group_id", 7).to_json(),
            r#"{"error_code":0,"error_msg":"成功","group_id":7}"#
        );
        assert_eq!(
            Answer::code(Code::ChangeMembersFailed).to_json(),
            r#"{"error_code":12,"error_msg":"更改群成员失败"}"#
        );
        for c in [Code::BadParam, Code::ServerError, Code::CreateGroupFailed] {
            let v: Value = serde_json::from_str(&Answer::code(c).to_json()).unwrap();
            assert_eq!(v["error_code"], c as u32);
        }
    }

    #[test]
    fn parameters() {
        let q =
            json!({"a": 5, "b": "17", "c": -1, "d": "x", "l": [1, "2"], "m": [1, "x"], "s": "t"});
        assert_eq!(uint(&q, "a"), Ok(5));
        assert_eq!(uint(&q, "b"), Ok(17));
        assert_eq!(uint(&q, "c"), Err(BadParam("c")));
        assert_eq!(uint(&q, "d"), Err(BadParam("d")));
        assert_eq!(uint(&q, "missing"), Err(BadParam("missing")));
        assert_eq!(uint_list(&q, "l"), Ok(vec![1, 2]));
        assert_eq!(uint_list(&q, "m"), Err(BadParam("m")));
        assert_eq!(string(&q, "s"), Ok("t".into()));
        assert_eq!(string(&q, "a"), Err(BadParam("a")));
    }
}
