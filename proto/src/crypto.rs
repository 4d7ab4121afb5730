//! What stock TeamTalk clients do to passwords and message bodies.
//!
//! * The login password travels as the lower-case hex MD5 of the plain password
//!   ([`password_digest`]).
//! * Text message bodies are AES-256 in ECB mode with a shared 32-byte key, TeamTalk's own
//!   padding, then standard base64 ([`MessageCipher`], FLOWS.md 18). This is obfuscation, not
//!   security (WEAKNESSES 5), but servers need it to build push texts and `imctl send` needs it
//!   to write messages a stock client can read.

use aes::Aes256;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use thiserror::Error;

/// The key hard-coded in every stock client and shipped as every server's default `aesKey`.
pub const DEFAULT_MESSAGE_KEY: &str = "12345678901234567890123456789012";

/// Lower-case hex MD5 of a plain password, as clients put it in `IMLoginReq.password`.
pub fn password_digest(plain: &str) -> String {
    format!("{:x}", md5::compute(plain.as_bytes()))
}

/// Errors of the message cipher.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CipherError {
    /// The key is not exactly 32 bytes.
    #[error("the message key must be exactly 32 bytes, got {0}")]
    KeyLength(usize),
    /// Not valid base64.
    #[error("message body is not valid base64")]
    Base64,
    /// Cipher text length is zero or not a multiple of 16.
    #[error("cipher text of {0} bytes is not a non-zero multiple of 16")]
    BlockLength(usize),
    /// The length trailer points past the buffer.
    #[error("plain text length {len} exceeds the {total}-byte buffer")]
    LengthTrailer {
        /// Length in the trailer.
        len: u32,
        /// Decrypted size.
        total: usize,
    },
}

/// AES-256-ECB with TeamTalk's padding and base64 (FLOWS.md 18).
#[derive(Clone)]
pub struct MessageCipher {
    aes: Aes256,
}

impl std::fmt::Debug for MessageCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("MessageCipher(..)")
    }
}

const BLOCK: usize = 16;

fn base64_engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

impl MessageCipher {
    /// A cipher over a 32-byte key (the config value `aesKey`, used as raw bytes).
    pub fn new(key: &[u8]) -> Result<Self, CipherError> {
        if key.len() != 32 {
            return Err(CipherError::KeyLength(key.len()));
        }
        let aes = Aes256::new_from_slice(key).map_err(|_| CipherError::KeyLength(key.len()))?;
        Ok(MessageCipher { aes })
    }

    /// The cipher stock clients use.
    pub fn default_key() -> Self {
        // The constant is 32 bytes, so this cannot fail; fall back to a zero key to stay
        // panic-free if it were ever edited wrongly (the tests would catch that).
        MessageCipher::new(DEFAULT_MESSAGE_KEY.as_bytes()).unwrap_or_else(|_| MessageCipher {
            aes: Aes256::new(&Default::default()),
        })
    }

    /// Encrypts and base64-encodes a plain text body.
    pub fn encrypt(&self, plain: &[u8]) -> String {
        let n = plain.len();
        // One more block when the 4-byte length trailer would not fit after the text.
        let mut blocks = n.div_ceil(BLOCK);
        if n.is_multiple_of(BLOCK) || n % BLOCK > 12 {
            blocks += 1;
        }
        let mut buf = vec![0u8; blocks * BLOCK];
        buf[..n].copy_from_slice(plain);
        let total = buf.len();
        buf[total - 4..].copy_from_slice(&(n as u32).to_be_bytes());
        for chunk in buf.chunks_exact_mut(BLOCK) {
            let mut block = aes::Block::default();
            block.copy_from_slice(chunk);
            self.aes.encrypt_block(&mut block);
            chunk.copy_from_slice(&block);
        }
        base64_engine().encode(&buf)
    }

    /// Decodes and decrypts a body written by [`MessageCipher::encrypt`] or a stock client.
    pub fn decrypt(&self, encoded: &[u8]) -> Result<Vec<u8>, CipherError> {
        // The original decoder skips whitespace and '=' wherever they are.
        let cleaned: Vec<u8> = encoded
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
            .collect();
        let mut buf = base64_engine()
            .decode(&cleaned)
            .map_err(|_| CipherError::Base64)?;
        if buf.is_empty() || !buf.len().is_multiple_of(BLOCK) {
            return Err(CipherError::BlockLength(buf.len()));
        }
        for chunk in buf.chunks_exact_mut(BLOCK) {
            let mut block = aes::Block::default();
            block.copy_from_slice(chunk);
            self.aes.decrypt_block(&mut block);
            chunk.copy_from_slice(&block);
        }
        let total = buf.len();
        let len = u32::from_be_bytes([
            buf[total - 4],
            buf[total - 3],
            buf[total - 2],
            buf[total - 1],
        ]);
        if len as usize > total {
            return Err(CipherError::LengthTrailer { len, total });
        }
        buf.truncate(len as usize);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_digest_is_lower_hex_md5() {
        assert_eq!(
            password_digest("123456"),
            "e10adc3949ba59abbe56e057f20f883e"
        );
    }

    #[test]
    fn aes256_known_answer() {
        // FIPS-197 appendix C.3.
        let key: Vec<u8> = (0u8..32).collect();
        let c = MessageCipher::new(&key).map(|c| c.aes);
        let Ok(aes) = c else { panic!("key rejected") };
        let mut block = aes::Block::default();
        block.copy_from_slice(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        aes.encrypt_block(&mut block);
        assert_eq!(
            &block[..],
            &[
                0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49,
                0x60, 0x89
            ]
        );
    }

    #[test]
    fn padding_adds_a_block_when_the_trailer_does_not_fit() {
        let c = MessageCipher::default_key();
        let len = |n: usize| {
            let enc = c.encrypt(&vec![b'a'; n]);
            base64_engine()
                .decode(enc.as_bytes())
                .map(|v| v.len())
                .unwrap_or(0)
        };
        assert_eq!(len(0), 16);
        assert_eq!(len(1), 16);
        assert_eq!(len(12), 16);
        assert_eq!(len(13), 32);
        assert_eq!(len(16), 32);
        assert_eq!(len(17), 32);
        assert_eq!(len(28), 32);
        assert_eq!(len(29), 48);
    }

    #[test]
    fn round_trip_and_tolerant_decoding() {
        let c = MessageCipher::default_key();
        for text in ["", "hi", "你好，TeamTalk", &"x".repeat(1000)] {
            let enc = c.encrypt(text.as_bytes());
            assert_eq!(c.decrypt(enc.as_bytes()).as_deref(), Ok(text.as_bytes()));
            // Whitespace and stray '=' are skipped like the original decoder does.
            let spaced: String = enc.chars().flat_map(|ch| [ch, '\n']).collect();
            assert_eq!(c.decrypt(spaced.as_bytes()).as_deref(), Ok(text.as_bytes()));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let c = MessageCipher::default_key();
        assert_eq!(
            MessageCipher::new(b"short").err(),
            Some(CipherError::KeyLength(5))
        );
        assert_eq!(c.decrypt(b"!!!!"), Err(CipherError::Base64));
        assert_eq!(c.decrypt(b"AAAA"), Err(CipherError::BlockLength(3)));
        assert_eq!(c.decrypt(b""), Err(CipherError::BlockLength(0)));
    }
}
