//! Push device tokens (STORAGE.md 5.2, FLOWS.md 15.4) in `IMCacheDeviceToken` (the value of
//! `device_<U>`: `ios:<token>`, `android:<token>`, a bare token for other client types, or ""
//! after logout) and `IMCacheTokenOwner` (`device_<token>` -> owner, 0 once blanked).

use rusqlite::{Connection, OptionalExtension};

use crate::error::StorageResult;
use crate::types::{DeviceToken, TokenKind, UserId};

use super::row::text_at;
use super::writer::Tx;

/// `CLIENT_TYPE_IOS` (IM.BaseDefine ClientType).
const CLIENT_TYPE_IOS: u32 = 0x11;
/// `CLIENT_TYPE_ANDROID`.
const CLIENT_TYPE_ANDROID: u32 = 0x12;

/// Splits a stored value into its kind and bare token.
fn parse(value: &str) -> (TokenKind, &str) {
    if let Some(t) = value.strip_prefix("ios:") {
        (TokenKind::Ios, t)
    } else if let Some(t) = value.strip_prefix("android:") {
        (TokenKind::Android, t)
    } else {
        (TokenKind::Other, value)
    }
}

fn stored(conn: &Connection, user: UserId) -> StorageResult<Option<String>> {
    let v = conn
        .prepare_cached("SELECT value FROM IMCacheDeviceToken WHERE userId = ?1")?
        .query_row([user], |row| text_at(row, 0))
        .optional()?;
    Ok(v)
}

fn blank_owner(tx: &Tx<'_>, token: &str) -> StorageResult<()> {
    if !token.is_empty() {
        tx.conn
            .prepare_cached("UPDATE IMCacheTokenOwner SET userId = 0 WHERE token = ?1")?
            .execute([token])?;
    }
    Ok(())
}

fn put(tx: &Tx<'_>, user: UserId, value: &str) -> StorageResult<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheDeviceToken (userId, value) VALUES (?1, ?2) \
             ON CONFLICT (userId) DO UPDATE SET value = excluded.value",
        )?
        .execute((user, value))?;
    Ok(())
}

/// Registers (or, with an empty token, clears) a user's token.
pub(super) fn set(tx: &Tx<'_>, user: UserId, client_type: u32, token: &str) -> StorageResult<()> {
    if let Some(old) = stored(tx.conn, user)? {
        blank_owner(tx, parse(&old).1)?;
    }
    if token.is_empty() {
        return put(tx, user, "");
    }
    let value = match client_type {
        CLIENT_TYPE_IOS => format!("ios:{token}"),
        CLIENT_TYPE_ANDROID => format!("android:{token}"),
        _ => token.to_owned(),
    };
    put(tx, user, &value)?;
    tx.conn
        .prepare_cached(
            "INSERT INTO IMCacheTokenOwner (token, userId) VALUES (?1, ?2) \
             ON CONFLICT (token) DO UPDATE SET userId = excluded.userId",
        )?
        .execute((token, user))?;
    Ok(())
}

/// Tokens of these users; users without one are omitted.
pub(super) fn get(conn: &Connection, users: &[UserId]) -> StorageResult<Vec<DeviceToken>> {
    let mut out = Vec::new();
    for &user in users {
        let Some(value) = stored(conn, user)? else {
            continue;
        };
        let (kind, token) = parse(&value);
        if !token.is_empty() {
            out.push(DeviceToken {
                user_id: user,
                kind,
                token: token.to_owned(),
            });
        }
    }
    Ok(out)
}

/// Clears the user's token only if it still is `token` (bare, or with its prefix).
pub(super) fn remove_if(tx: &Tx<'_>, user: UserId, token: &str) -> StorageResult<bool> {
    let Some(value) = stored(tx.conn, user)? else {
        return Ok(false);
    };
    let bare = parse(&value).1;
    if bare.is_empty() || (bare != token && value != token) {
        return Ok(false);
    }
    blank_owner(tx, bare)?;
    put(tx, user, "")?;
    Ok(true)
}
