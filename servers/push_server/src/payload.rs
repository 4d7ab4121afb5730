//! What each provider is sent: the alert text rules and the JSON bodies.
//!
//! The APNs payload is the original's (FLOWS.md 15.6): a normal push
//! `{"aps":{"alert":{"body":<flash>},"badge":<n>,"sound":"bingbong.aiff"},"custom":<data>}`,
//! a silent one (push_type 2: the user has a PC client online) `{"aps":{"badge":<n>},
//! "custom":<data>}`. FCM and the webhook carry the same three things: alert, badge, data.

use serde::Serialize;

/// Sound of a normal push (the original's; the iOS client ships the file).
pub const SOUND: &str = "bingbong.aiff";
/// Largest APNs payload Apple accepts for a remote notification.
pub const APNS_MAX_PAYLOAD: usize = 4096;
/// Largest FCM message body we send (FCM's own limit on a message is 4 KiB of payload).
pub const FCM_MAX_PAYLOAD: usize = 4096;
/// Largest `data` (the 'custom' value) accepted from a msg_server: ours sends a few dozen
/// bytes; more would leave no room for the alert.
pub const MAX_DATA_BYTES: usize = 2048;
/// Appended to an alert that was cut.
const ELLIPSIS: &str = "...";

/// One push as the providers see it.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// Alert text (None for a silent push).
    pub alert: Option<&'a str>,
    /// Badge: the user's unread total.
    pub badge: u32,
    /// The msg_server's JSON text (msg_type, from_id, group_id).
    pub data: &'a str,
}

/// Cuts `s` to at most `max` bytes on a character boundary; when something is cut, the
/// result ends in "..." (within `max`). The original could split a UTF-8 character
/// (WEAKNESSES 53); this never does.
pub fn cut_alert(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

/// Turns a flash text that may end inside a UTF-8 character (an original msg_server cuts at
/// 37 bytes, WEAKNESSES 53) into a string: invalid sequences are dropped.
pub fn repair_utf8(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
    }
    out
}

#[derive(Serialize)]
struct ApnsPayload<'a> {
    aps: Aps<'a>,
    custom: &'a str,
}

#[derive(Serialize)]
struct Aps<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<AlertBody<'a>>,
    badge: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'static str>,
}

#[derive(Serialize)]
struct AlertBody<'a> {
    body: &'a str,
}

/// The APNs JSON payload, its alert shortened (on a character boundary) if the whole would
/// exceed Apple's 4 KiB; `None` if even an empty alert does not fit.
pub fn apns_payload(p: &Push<'_>) -> Option<Vec<u8>> {
    let build = |alert: Option<&str>| {
        serde_json::to_vec(&ApnsPayload {
            aps: Aps {
                alert: alert.map(|body| AlertBody { body }),
                badge: p.badge,
                sound: alert.map(|_| SOUND),
            },
            custom: p.data,
        })
        .ok()
    };
    fit(p.alert, APNS_MAX_PAYLOAD, build)
}

#[derive(Serialize)]
struct FcmRequest<'a> {
    message: FcmMessage<'a>,
}

#[derive(Serialize)]
struct FcmMessage<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AlertBody<'a>>,
    data: FcmData<'a>,
    android: FcmAndroid,
}

#[derive(Serialize)]
struct FcmData<'a> {
    custom: &'a str,
    // FCM data values must be strings.
    badge: String,
}

#[derive(Serialize)]
struct FcmAndroid {
    priority: &'static str,
}

/// The FCM HTTP v1 `messages:send` body. A normal push carries a notification and is sent
/// at high priority; a silent one is data only, at normal priority (FCM deprioritises
/// high-priority messages that show nothing).
pub fn fcm_body(token: &str, p: &Push<'_>) -> Option<Vec<u8>> {
    let build = |alert: Option<&str>| {
        serde_json::to_vec(&FcmRequest {
            message: FcmMessage {
                token,
                notification: alert.map(|body| AlertBody { body }),
                data: FcmData {
                    custom: p.data,
                    badge: p.badge.to_string(),
                },
                android: FcmAndroid {
                    priority: if alert.is_some() { "high" } else { "normal" },
                },
            },
        })
        .ok()
    };
    fit(p.alert, FCM_MAX_PAYLOAD + token.len(), build)
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    user_id: u32,
    client_type: i32,
    token: &'a str,
    alert: Option<&'a str>,
    badge: u32,
    silent: bool,
    data: &'a str,
}

/// The webhook body: `{"user_id","client_type","token","alert","badge","silent","data"}`
/// (`alert` is null for a silent push).
pub fn webhook_body(user_id: u32, client_type: i32, token: &str, p: &Push<'_>) -> Vec<u8> {
    serde_json::to_vec(&WebhookBody {
        user_id,
        client_type,
        token,
        alert: p.alert,
        badge: p.badge,
        silent: p.alert.is_none(),
        data: p.data,
    })
    .unwrap_or_default()
}

/// Builds with the full alert, then, if over `max`, once more with the alert shortened by
/// the excess (JSON escaping only lengthens text, so cutting k raw bytes saves at least k).
fn fit(
    alert: Option<&str>,
    max: usize,
    build: impl Fn(Option<&str>) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let full = build(alert)?;
    if full.len() <= max {
        return Some(full);
    }
    let a = alert?;
    let excess = full.len() - max;
    let keep = a.len().checked_sub(excess)?;
    let shorter = cut_alert(a, keep);
    let again = build(Some(&shorter))?;
    (again.len() <= max).then_some(again)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        assert_eq!(cut_alert("short", 37), "short");
        let s = "ab你好世界你好世界你好世界";
        for max in 3..s.len() {
            let c = cut_alert(s, max);
            assert!(c.len() <= max, "{max}: {c}");
            assert!(c.ends_with("..."));
            assert!(s.starts_with(c.trim_end_matches("...")));
        }
        assert_eq!(cut_alert("你好世界", 9), "你好...");
    }

    #[test]
    fn broken_utf8_tails_are_dropped() {
        let mut raw = "nick:你好".as_bytes().to_vec();
        raw.pop();
        assert_eq!(repair_utf8(&raw), "nick:你");
        assert_eq!(repair_utf8("ok".as_bytes()), "ok");
    }

    #[test]
    fn apns_payloads_are_the_originals() {
        let p = Push {
            alert: Some("Ann:hi \"x\""),
            badge: 3,
            data: r#"{"msg_type":1,"from_id":7}"#,
        };
        let v: serde_json::Value = serde_json::from_slice(&apns_payload(&p).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "aps": {"alert": {"body": "Ann:hi \"x\""}, "badge": 3, "sound": "bingbong.aiff"},
                "custom": r#"{"msg_type":1,"from_id":7}"#,
            })
        );
        let silent = Push { alert: None, ..p };
        let text = String::from_utf8(apns_payload(&silent).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"aps":{"badge":3},"custom":"{\"msg_type\":1,\"from_id\":7}"}"#
        );
    }

    #[test]
    fn oversized_alerts_are_shortened_to_fit() {
        let long = "长".repeat(3000);
        let p = Push {
            alert: Some(&long),
            badge: 1,
            data: "{}",
        };
        let bytes = apns_payload(&p).unwrap();
        assert!(bytes.len() <= APNS_MAX_PAYLOAD);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let body = v["aps"]["alert"]["body"].as_str().unwrap();
        assert!(body.ends_with("...") && body.len() > 3000, "{}", body.len());
        let huge = "x".repeat(5000);
        assert!(apns_payload(&Push { data: &huge, ..p }).is_none());
    }

    #[test]
    fn fcm_and_webhook_bodies() {
        let p = Push {
            alert: Some("Ann:hi"),
            badge: 2,
            data: "{}",
        };
        let v: serde_json::Value = serde_json::from_slice(&fcm_body("tok", &p).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message": {"token": "tok", "notification": {"body": "Ann:hi"},
                "data": {"custom": "{}", "badge": "2"}, "android": {"priority": "high"}}})
        );
        let silent = Push { alert: None, ..p };
        let v: serde_json::Value =
            serde_json::from_slice(&fcm_body("tok", &silent).unwrap()).unwrap();
        assert!(v["message"].get("notification").is_none());
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_body(5, 1, "tok", &silent)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user_id": 5, "client_type": 1, "token": "tok", "alert": null,
                "badge": 2, "silent": true, "data": "{}"})
        );
    }
}
