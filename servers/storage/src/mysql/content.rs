//! Message `content` in a `varchar(4096) utf8mb4` column.
//!
//! Clients send base64 text, which is stored as is (what the original stores, and what an
//! original server reading the same database expects). Bytes that are not UTF-8 cannot live
//! in that column, yet the store must give back exactly what it was given; they are stored as
//! [`MARKER`] + base64. The marker starts with U+0001, which no client text contains; a text
//! that happens to start with the marker is escaped the same way, so decoding is exact.

use std::borrow::Cow;

/// Prefix of an escaped content value.
pub const MARKER: &str = "\u{1}b64:";

/// Longest stored value, in characters (`content varchar(4096)`, WEAKNESSES 22).
pub const MAX_CHARS: usize = 4096;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The column value for `bytes`, or the number of characters it would need when too long.
pub fn encode(bytes: &[u8]) -> Result<Cow<'_, str>, usize> {
    let value = match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with(MARKER) => Cow::Borrowed(text),
        _ => {
            let mut s = String::with_capacity(MARKER.len() + bytes.len().div_ceil(3) * 4);
            s.push_str(MARKER);
            base64_into(bytes, &mut s);
            Cow::Owned(s)
        }
    };
    // Cheap bound first: a string has at most as many characters as bytes.
    if value.len() > MAX_CHARS {
        let chars = value.chars().count();
        if chars > MAX_CHARS {
            return Err(chars);
        }
    }
    Ok(value)
}

/// The bytes a column value stands for.
pub fn decode(stored: Vec<u8>) -> Vec<u8> {
    if let Some(encoded) = stored.strip_prefix(MARKER.as_bytes())
        && let Some(bytes) = base64_decode(encoded)
    {
        return bytes;
    }
    stored
}

fn base64_into(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_stored_as_is() {
        assert_eq!(encode(b"U2FsdGVk+/=").unwrap(), "U2FsdGVk+/=");
        assert_eq!(encode("中文 😀".as_bytes()).unwrap(), "中文 😀");
        assert_eq!(encode(b"").unwrap(), "");
        assert_eq!(decode(b"plain".to_vec()), b"plain");
    }

    #[test]
    fn other_bytes_round_trip() {
        let samples: [&[u8]; 6] = [
            &[0, 1, 2, 0xff, 0xfe, b'\'', b'"', b'\\', 0],
            &[0xff],
            &[0xc3],
            &[0xff, 0xfe],
            b"\x01b64:looks escaped",
            &[0x80; 100],
        ];
        for bytes in samples {
            let stored = encode(bytes).unwrap();
            assert!(stored.starts_with(MARKER));
            assert_eq!(decode(stored.as_bytes().to_vec()), bytes);
        }
        assert!(encode(&[0xff; 3000]).is_ok(), "4005 characters fit");
        assert_eq!(encode(&[0xff; 3100]), Err(MARKER.chars().count() + 4136));
        assert!(encode(&[b'x'; 4096]).is_ok());
        assert_eq!(encode(&[b'x'; 4097]), Err(4097));
    }
}
