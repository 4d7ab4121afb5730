//! The identity every simulated message carries at the start of its plain text, inside the
//! AES cipher text, so that servers see realistic bodies and receivers can still match each
//! delivery to its send:
//!
//! ```text
//! sim:<run id, 8 hex>:<sender user id>:<s|g><peer or group id>:<seq>:<sent µs>|.........
//! ```
//!
//! `seq` counts from 0 per stream (one sender to one peer or group); `sent µs` is measured from
//! the run's epoch, so a receiver in the same process computes send→deliver latency from it.

use std::io::Write;

/// One stream of messages: a sender to a peer or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Sending user id.
    pub sender: u32,
    /// True for a group, false for a single chat.
    pub group: bool,
    /// Peer user id or group id.
    pub to: u32,
}

/// What a message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run that sent it (messages of other runs are ignored).
    pub run: u32,
    /// Its stream.
    pub stream: StreamKey,
    /// Position in the stream, from 0.
    pub seq: u32,
    /// When it was sent, microseconds since the run's epoch.
    pub sent_us: u64,
}

/// Filler after the stamp: printable, so a stock client shows something readable.
const FILLER: &[u8] = b" the quick brown fox jumps over the lazy dog.";

impl Stamp {
    /// Writes the plain text (stamp, then filler up to `size` bytes) into `out`.
    pub fn write(&self, size: usize, out: &mut Vec<u8>) {
        out.clear();
        let kind = if self.stream.group { 'g' } else { 's' };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "sim:{:08x}:{}:{}{}:{}:{}|",
            self.run, self.stream.sender, kind, self.stream.to, self.seq, self.sent_us
        );
        let mut i = 0;
        while out.len() < size {
            out.push(FILLER[i % FILLER.len()]);
            i += 1;
        }
    }

    /// Reads the stamp at the start of a plain text; `None` when it carries none.
    pub fn parse(plain: &[u8]) -> Option<Stamp> {
        let rest = plain.strip_prefix(b"sim:")?;
        let end = rest.iter().position(|&b| b == b'|')?;
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        let mut parts = text.split(':');
        let run = u32::from_str_radix(parts.next()?, 16).ok()?;
        let sender = parts.next()?.parse().ok()?;
        let conv = parts.next()?;
        let group = match conv.as_bytes().first()? {
            b's' => false,
            b'g' => true,
            _ => return None,
        };
        let to = conv[1..].parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let sent_us = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Stamp {
            run,
            stream: StreamKey { sender, group, to },
            seq,
            sent_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let s = Stamp {
            run: 0xdead_beef,
            stream: StreamKey {
                sender: 7,
                group: true,
                to: 42,
            },
            seq: 9,
            sent_us: 123_456,
        };
        let mut buf = Vec::new();
        s.write(100, &mut buf);
        assert_eq!(buf.len(), 100);
        assert!(buf.starts_with(b"sim:deadbeef:7:g42:9:123456|"));
        assert_eq!(Stamp::parse(&buf), Some(s));
        // A stamp longer than the size is kept whole.
        s.write(4, &mut buf);
        assert_eq!(Stamp::parse(&buf), Some(s));
        assert_eq!(Stamp::parse(b"hello"), None);
        assert_eq!(Stamp::parse(b"sim:zz:1:s2:3:4|"), None);
        assert_eq!(Stamp::parse(b"sim:1:1:x2:3:4|"), None);
    }
}
