//! What every test message says about itself, at the start of its plain text (inside the AES
//! cipher text, so servers see a realistic body):
//!
//! ```text
//! e2e:<run, 8 hex>:<sender user id>:<receiver user id>:<seq>|filler...
//! ```
//!
//! `seq` counts from 0 per sender; one sender talks to one receiver, so (sender, seq) names a
//! message.

use std::io::Write as _;

use bytes::Bytes;
use im_proto::base::MsgType;
use im_proto::crypto::MessageCipher;
use im_proto::message::ImMsgData;

/// Identity of a test message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    /// The run (messages of another run are ignored).
    pub run: u32,
    /// Sending user id.
    pub from: u32,
    /// Receiving user id, or the group id for group messages.
    pub to: u32,
    /// Position in the sender's stream, from 0.
    pub seq: u32,
}

const FILLER: &[u8] = b" the quick brown fox jumps over the lazy dog.";

impl Stamp {
    /// The plain text: the stamp, then filler up to `size` bytes.
    pub fn text(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(48));
        let _ = write!(
            out,
            "e2e:{:08x}:{}:{}:{}|",
            self.run, self.from, self.to, self.seq
        );
        let mut i = 0;
        while out.len() < size {
            out.push(FILLER[i % FILLER.len()]);
            i += 1;
        }
        out
    }

    /// Reads the stamp at the start of a plain text.
    pub fn parse(plain: &[u8]) -> Option<Stamp> {
        let rest = plain.strip_prefix(b"e2e:")?;
        let end = rest.iter().position(|&b| b == b'|')?;
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        let mut parts = text.split(':');
        let run = u32::from_str_radix(parts.next()?, 16).ok()?;
        let from = parts.next()?.parse().ok()?;
        let to = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Stamp { run, from, to, seq })
    }

    /// Reads the stamp of an encrypted message body.
    pub fn of_body(cipher: &MessageCipher, body: &[u8]) -> Option<Stamp> {
        Stamp::parse(&cipher.decrypt(body).ok()?)
    }

    /// The IMMsgData a client sends for this message (`group`: a group text).
    pub fn message(&self, cipher: &MessageCipher, size: usize, group: bool) -> ImMsgData {
        ImMsgData {
            from_user_id: self.from,
            to_session_id: self.to,
            msg_id: 0,
            create_time: unix_secs(),
            msg_type: if group {
                MsgType::GroupText
            } else {
                MsgType::SingleText
            } as i32,
            msg_data: Bytes::from(cipher.encrypt(&self.text(size)).into_bytes()),
            attach_data: None,
        }
    }
}

fn unix_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_cipher() {
        let s = Stamp {
            run: 0xdead_beef,
            from: 7,
            to: 9,
            seq: 42,
        };
        let text = s.text(64);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with(b"e2e:deadbeef:7:9:42|"));
        assert_eq!(Stamp::parse(&text), Some(s));
        let cipher = MessageCipher::default_key();
        let m = s.message(&cipher, 64, false);
        assert_eq!(Stamp::of_body(&cipher, &m.msg_data), Some(s));
        assert_eq!(Stamp::parse(b"hello"), None);
        assert_eq!(Stamp::parse(b"e2e:zz:1:2:3|"), None);
        assert_eq!(Stamp::parse(b"e2e:1:1:2:3:4|"), None);
    }
}
