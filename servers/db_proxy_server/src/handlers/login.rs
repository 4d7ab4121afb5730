//! Login-related requests: the password check (CID_OTHER_VALIDATE_REQ, FLOWS.md 4 step 5),
//! device tokens (FLOWS.md 15.4) and the night-time push mute (FLOWS.md 15.5).
//!
//! Passwords are checked for real (WEAKNESSES 1, Decisions 9): the original's stored format
//! md5hex(md5hex(plain) + salt) by default; with `password_hash = "argon2id"` the argon2id
//! side table when the user has a row there, else the legacy column, and a successful legacy
//! check then writes the argon2id row. Failures are throttled per name ([`LoginThrottle`]).
//! Neither the digest nor any hash is ever logged.
//!
//! [`LoginThrottle`]: crate::throttle::LoginThrottle

use std::time::Instant;

use im_proto::Pdu;
use im_proto::base::UserInfo;
use im_proto::login::{
    ImDeviceTokenReq, ImDeviceTokenRsp, ImPushShieldReq, ImPushShieldRsp, ImQueryPushShieldReq,
    ImQueryPushShieldRsp,
};
use im_proto::server::{ImValidateReq, ImValidateRsp};
use im_storage::config::PasswordHashing;
use im_storage::{Credentials, Store, password};
use prost::Message as _;

use super::{Dispatch, Req, decode};
use crate::convert::user_info;
use crate::server::Shared;

/// Longest device token accepted (APNs tokens are 64 hex characters, FCM tokens about 160).
pub const MAX_DEVICE_TOKEN_BYTES: usize = 512;

/// The answers of the original, byte for byte (msg_server shows the text to the client).
pub mod results {
    /// 0.
    pub const OK: &str = "成功";
    /// 1: unknown user, wrong password or account not active.
    pub const WRONG: &str = "用户名/密码错误";
    /// 2: the request could not be parsed (or the store failed).
    pub const INTERNAL: &str = "服务端内部错误";
    /// 6: too many failures of this name.
    pub const THROTTLED: &str = "用户名/密码错误次数太多";
}

/// The outcome of a password check.
enum Verdict {
    Ok(UserInfo),
    Wrong,
    Throttled,
    Internal,
}

/// CID_OTHER_VALIDATE_REQ: checks a login name and password digest.
pub fn validate<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let m = match pdu.decode::<ImValidateReq>() {
        Ok(m) => m,
        Err(e) => {
            // The original answers an unparseable request with result 2 (FLOWS.md 4).
            sh.metrics.decode_errors.inc();
            tracing::warn!(conn_id = req.conn.id(), error = %e, "unparseable validate request, answering result 2");
            // Whatever can be read is echoed, so msg_server can match the answer.
            let partial = ImValidateReq::decode(pdu.body.clone()).unwrap_or_default();
            req.reply(&ImValidateRsp {
                user_name: partial.user_name,
                result_code: 2,
                result_string: Some(results::INTERNAL.to_owned()),
                user_info: None,
                attach_data: partial.attach_data,
            });
            return req.finished(false);
        }
    };
    Dispatch::Work(Box::pin(async move {
        let verdict = check(sh, &m.user_name, &m.password).await;
        let (code, text, info) = match verdict {
            Verdict::Ok(info) => (0, results::OK, Some(info)),
            Verdict::Wrong => (1, results::WRONG, None),
            Verdict::Throttled => (6, results::THROTTLED, None),
            Verdict::Internal => (2, results::INTERNAL, None),
        };
        if code == 0 {
            sh.metrics.logins.inc();
        } else {
            sh.metrics.login_failures.inc();
        }
        req.reply(&ImValidateRsp {
            user_name: m.user_name,
            result_code: code,
            result_string: Some(text.to_owned()),
            user_info: info,
            attach_data: m.attach_data,
        });
        // A refused password is the expected answer, not an error of this server.
        req.done(code != 2)
    }))
}

async fn check<S: Store>(sh: &Shared<S>, name: &str, digest: &str) -> Verdict {
    if sh.throttle.is_blocked(name, Instant::now()) {
        tracing::info!(user_name = %name, "login refused: too many failures");
        return Verdict::Throttled;
    }
    let cred = match sh.store.credentials(name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(user_name = %name, error = %e, "credentials not read");
            return Verdict::Internal;
        }
    };
    let cred = match cred {
        Some(c) if c.user.status == 0 => c,
        other => {
            tracing::debug!(user_name = %name, known = other.is_some(), "login refused: unknown or inactive user");
            sh.throttle.record_failure(name, Instant::now());
            return Verdict::Wrong;
        }
    };
    if !password_matches(sh, &cred, digest).await {
        tracing::debug!(user_name = %name, user_id = cred.user.id, "login refused: wrong password");
        sh.throttle.record_failure(name, Instant::now());
        return Verdict::Wrong;
    }
    sh.throttle.record_success(name);
    let mut info = user_info(&cred.user);
    // The original forces status 0 in the login answer.
    info.status = 0;
    Verdict::Ok(info)
}

/// Checks the digest per the configured scheme; upgrades a legacy row to argon2id when
/// hardening is on.
async fn password_matches<S: Store>(sh: &Shared<S>, cred: &Credentials, digest: &str) -> bool {
    match (sh.password_hash, &cred.argon2) {
        (PasswordHashing::Argon2id, Some(phc)) => {
            let (digest, phc) = (digest.to_owned(), phc.clone());
            // argon2 costs tens of milliseconds of CPU: not on the async threads.
            tokio::task::spawn_blocking(move || password::verify_argon2(&digest, &phc))
                .await
                .unwrap_or(false)
        }
        (PasswordHashing::Argon2id, None) => {
            if !password::verify_legacy(digest, &cred.salt, &cred.legacy_hash) {
                return false;
            }
            let d = digest.to_owned();
            match tokio::task::spawn_blocking(move || password::argon2_hash(&d)).await {
                Ok(Ok(phc)) => {
                    if let Err(e) = sh.store.set_argon2(cred.user.id, &phc).await {
                        tracing::warn!(user_id = cred.user.id, error = %e, "argon2id upgrade not stored");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(user_id = cred.user.id, error = %e, "argon2id hashing failed");
                }
                Err(e) => {
                    tracing::warn!(user_id = cred.user.id, error = %e, "argon2id task failed")
                }
            }
            true
        }
        (PasswordHashing::Legacy, _) => {
            password::verify_legacy(digest, &cred.salt, &cred.legacy_hash)
        }
    }
}

/// CID_LOGIN_REQ_DEVICETOKEN: registers (or, empty, clears) a user's push token; answered
/// with IMDeviceTokenRsp{user_id} once stored (msg_server only logs it).
pub fn device_token<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImDeviceTokenReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    if m.device_token.len() > MAX_DEVICE_TOKEN_BYTES {
        tracing::debug!(
            user_id = m.user_id,
            len = m.device_token.len(),
            "device token too long, ignored"
        );
        return req.finished(false);
    }
    let client_type = m.client_type.map_or(0, |t| t as u32);
    Dispatch::Work(Box::pin(async move {
        let stored = sh
            .store
            .set_device_token(m.user_id, client_type, &m.device_token);
        match stored.await {
            Ok(()) => {
                req.reply(&ImDeviceTokenRsp {
                    user_id: m.user_id,
                    attach_data: m.attach_data,
                });
                req.done(true)
            }
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "device token not stored");
                req.done(false)
            }
        }
    }))
}

/// CID_LOGIN_REQ_PUSH_SHIELD: switches the night-time push mute.
pub fn push_shield<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImPushShieldReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let on = m.shield_status != 0;
    let stored = sh.store.set_push_shield(m.user_id, on);
    Dispatch::Work(Box::pin(async move {
        let (code, ok) = match stored.await {
            Ok(true) => (0, true),
            Ok(false) => (1, true),
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "push shield not stored");
                (1, false)
            }
        };
        req.reply(&ImPushShieldRsp {
            user_id: m.user_id,
            result_code: code,
            shield_status: (code == 0).then_some(u32::from(on)),
            attach_data: m.attach_data,
        });
        req.done(ok)
    }))
}

/// CID_LOGIN_REQ_QUERY_PUSH_SHIELD: reads the night-time push mute.
pub fn query_push_shield<'a, S: Store>(sh: &'a Shared<S>, req: Req, pdu: &Pdu) -> Dispatch<'a> {
    let Some(m) = decode::<ImQueryPushShieldReq, S>(sh, &req, pdu) else {
        return req.finished(false);
    };
    let read = sh.store.push_shield(m.user_id);
    Dispatch::Work(Box::pin(async move {
        let (code, status, ok) = match read.await {
            Ok(Some(on)) => (0, Some(u32::from(on)), true),
            Ok(None) => (1, None, true),
            Err(e) => {
                tracing::warn!(user_id = m.user_id, error = %e, "push shield not read");
                (1, None, false)
            }
        };
        req.reply(&ImQueryPushShieldRsp {
            user_id: m.user_id,
            result_code: code,
            shield_status: status,
            attach_data: m.attach_data,
        });
        req.done(ok)
    }))
}
