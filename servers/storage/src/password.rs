//! Password checks (ARCHITECTURE.md Decisions 9).
//!
//! Clients send md5hex(plain). By default `IMUser.password` keeps the original format
//! md5hex(md5hex(plain) + salt), so original servers, the original admin web and ours can share
//! one database. Optional hardening keeps argon2id over the client digest in a side table and
//! upgrades legacy rows on login (which leaves mixed-cluster use: an original db_proxy would not
//! know the argon2 table, but the legacy column stays valid, so it still works).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use subtle::ConstantTimeEq;

/// md5hex of a string, lower case.
pub fn md5_hex(s: &str) -> String {
    format!("{:x}", md5::compute(s.as_bytes()))
}

/// The stored legacy hash for a client digest: md5hex(digest + salt).
pub fn legacy_hash(client_digest: &str, salt: &str) -> String {
    md5_hex(&format!("{client_digest}{salt}"))
}

/// The stored legacy hash for a plain password (what the admin UI writes).
pub fn legacy_hash_plain(plain: &str, salt: &str) -> String {
    legacy_hash(&md5_hex(plain), salt)
}

/// A new salt as the original admin UI makes it: a random integer 0..9999 as decimal text.
pub fn new_salt() -> String {
    rand::rng().random_range(0..10_000u32).to_string()
}

/// Checks a client digest against a legacy row, in constant time. The stored hash is
/// compared case-insensitively (MySQL compares it that way too).
pub fn verify_legacy(client_digest: &str, salt: &str, stored: &str) -> bool {
    let expected = legacy_hash(&client_digest.to_ascii_lowercase(), salt);
    let stored = stored.to_ascii_lowercase();
    expected.len() == stored.len() && bool::from(expected.as_bytes().ct_eq(stored.as_bytes()))
}

/// argon2id PHC string over a client digest.
pub fn argon2_hash(client_digest: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(client_digest.to_ascii_lowercase().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a client digest against an argon2id PHC string.
pub fn verify_argon2(client_digest: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(client_digest.to_ascii_lowercase().as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_format_matches_the_original() {
        // md5("123456") = e10adc3949ba59abbe56e057f20f883e; salt "1234".
        let stored = legacy_hash_plain("123456", "1234");
        assert_eq!(stored, md5_hex("e10adc3949ba59abbe56e057f20f883e1234"));
        assert!(verify_legacy(
            "e10adc3949ba59abbe56e057f20f883e",
            "1234",
            &stored
        ));
        assert!(verify_legacy(
            "E10ADC3949BA59ABBE56E057F20F883E",
            "1234",
            &stored.to_uppercase()
        ));
        assert!(!verify_legacy(
            "e10adc3949ba59abbe56e057f20f883f",
            "1234",
            &stored
        ));
        assert!(!verify_legacy(
            "e10adc3949ba59abbe56e057f20f883e",
            "1235",
            &stored
        ));
        let salt = new_salt();
        assert!(salt.parse::<u32>().is_ok_and(|s| s < 10_000));
    }

    #[test]
    fn argon2_round_trip() {
        let phc = argon2_hash("e10adc3949ba59abbe56e057f20f883e").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_argon2("e10adc3949ba59abbe56e057f20f883e", &phc));
        assert!(!verify_argon2("e10adc3949ba59abbe56e057f20f883f", &phc));
        assert!(!verify_argon2("x", "not a phc string"));
    }
}
