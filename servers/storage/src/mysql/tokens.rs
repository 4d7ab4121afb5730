//! Push tokens (FLOWS.md 15.2, 15.4) in the Redis `token` pool: `device_<U>` holds
//! `ios:<token>`, `android:<token>` or a bare token; `device_<token>` holds its owner.

use super::Inner;
use crate::error::StorageResult;
use crate::redis_cache::{Pool, decode, scripts};
use crate::types::{DeviceToken, TokenKind, UserId};

/// `CLIENT_TYPE_IOS`.
const CLIENT_TYPE_IOS: u32 = 0x11;
/// `CLIENT_TYPE_ANDROID`.
const CLIENT_TYPE_ANDROID: u32 = 0x12;

/// Splits a stored value into kind and token.
pub fn parse(value: &str) -> (TokenKind, &str) {
    if let Some(t) = value.strip_prefix("ios:") {
        (TokenKind::Ios, t)
    } else if let Some(t) = value.strip_prefix("android:") {
        (TokenKind::Android, t)
    } else {
        (TokenKind::Other, value)
    }
}

/// Registers (or, with an empty token, clears) `user`'s token.
pub async fn set(inner: &Inner, user: UserId, client_type: u32, token: &str) -> StorageResult<()> {
    let keys = inner.cache.keys();
    let user_key = keys.device_of_user(user);
    let old: Option<String> = inner
        .cache
        .query(Pool::Token, redis::cmd("GET").arg(&user_key))
        .await?;
    let mut cmds = Vec::new();
    if let Some(old) = old.as_deref() {
        let (_, old_token) = parse(old);
        if !old_token.is_empty() && old_token != token {
            // The previous token no longer belongs to this user.
            cmds.push(scripts::clear_if_equal(
                &keys.device_owner(old_token),
                &user.to_string(),
            ));
        }
    }
    if token.is_empty() {
        cmds.push(redis::cmd("SET").arg(&user_key).arg("").to_owned());
    } else {
        let owner_key = keys.device_owner(token);
        let owner: Option<String> = inner
            .cache
            .query(Pool::Token, redis::cmd("GET").arg(&owner_key))
            .await?;
        if let Some(owner) = owner.and_then(|o| o.trim().parse::<UserId>().ok())
            && owner != user
        {
            // The device changed hands: its old user must not get this user's pushes.
            cmds.push(scripts::clear_token_if(&keys.device_of_user(owner), token));
        }
        let value = match client_type {
            CLIENT_TYPE_IOS => format!("ios:{token}"),
            CLIENT_TYPE_ANDROID => format!("android:{token}"),
            _ => token.to_owned(),
        };
        cmds.push(redis::cmd("SET").arg(&user_key).arg(value).to_owned());
        cmds.push(redis::cmd("SET").arg(&owner_key).arg(user).to_owned());
    }
    inner.cache.run(Pool::Token, cmds).await?;
    Ok(())
}

/// Tokens of `users` (users without one omitted).
pub async fn get(inner: &Inner, users: &[UserId]) -> StorageResult<Vec<DeviceToken>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let keys = inner.cache.keys();
    let mut out = Vec::new();
    for chunk in users.chunks(500) {
        let mut cmd = redis::cmd("MGET");
        for &u in chunk {
            cmd.arg(keys.device_of_user(u));
        }
        let values: Vec<redis::Value> = inner.cache.query(Pool::Token, &cmd).await?;
        for (&user_id, v) in chunk.iter().zip(values) {
            let Some(value) = decode::<Option<String>>(v, "device token")? else {
                continue;
            };
            let (kind, token) = parse(&value);
            if !token.is_empty() {
                out.push(DeviceToken {
                    user_id,
                    kind,
                    token: token.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// Removes `user`'s token only if it still is `token`.
pub async fn remove_if(inner: &Inner, user: UserId, token: &str) -> StorageResult<bool> {
    if token.is_empty() {
        return Ok(false);
    }
    let keys = inner.cache.keys();
    let removed: i64 = inner
        .cache
        .query(
            Pool::Token,
            &scripts::clear_token_if(&keys.device_of_user(user), token),
        )
        .await?;
    if removed == 1 {
        let _: i64 = inner
            .cache
            .query(
                Pool::Token,
                &scripts::clear_if_equal(&keys.device_owner(token), &user.to_string()),
            )
            .await?;
    }
    Ok(removed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms() {
        assert_eq!(parse("ios:abc"), (TokenKind::Ios, "abc"));
        assert_eq!(parse("android:x"), (TokenKind::Android, "x"));
        assert_eq!(parse("bare"), (TokenKind::Other, "bare"));
        assert_eq!(parse(""), (TokenKind::Other, ""));
    }
}
