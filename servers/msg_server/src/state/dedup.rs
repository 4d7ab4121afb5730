//! Routed PDUs seen recently, to drop the duplicates that the resend window (Decisions 7)
//! produces on purpose: messages by (session, msg_id), our own notifies by the stamp their
//! sender put in the unused header fields.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identifies a stored message: its conversation and its per-conversation msg_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgKey {
    /// Single chat: the unordered user pair and the msg_id.
    Single(u32, u32, u32),
    /// Group chat: the group and the msg_id.
    Group(u32, u32),
    /// A notify stamped by one of our msg_servers: command, stamp, hash of the body.
    Stamped(u16, u32, u64),
}

impl MsgKey {
    /// The key of a single-chat message between `a` and `b`.
    pub fn single(a: u32, b: u32, msg_id: u32) -> Self {
        MsgKey::Single(a.min(b), a.max(b), msg_id)
    }
}

#[derive(Debug)]
struct Generations {
    current: HashSet<MsgKey>,
    previous: HashSet<MsgKey>,
    rotated: Instant,
}

/// A set that remembers keys for at least `keep` (two generations of `keep` each, so between
/// `keep` and twice that): lookups cost two hash probes, expiry costs nothing per key.
#[derive(Debug)]
pub struct RecentMsgs {
    keep: Duration,
    inner: Mutex<Generations>,
}

impl RecentMsgs {
    /// Remembers keys for at least `keep`.
    pub fn new(keep: Duration) -> Self {
        RecentMsgs {
            keep,
            inner: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                rotated: Instant::now(),
            }),
        }
    }

    /// Records `key`; `false` if it was seen within the retention time (a duplicate).
    pub fn first_time(&self, key: MsgKey) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.rotated.elapsed() >= self.keep {
            g.previous = std::mem::take(&mut g.current);
            g.rotated = Instant::now();
        }
        if g.previous.contains(&key) {
            return false;
        }
        g.current.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised_then_forgotten() {
        let r = RecentMsgs::new(Duration::from_millis(50));
        assert!(r.first_time(MsgKey::single(2, 1, 7)));
        assert!(!r.first_time(MsgKey::single(1, 2, 7)));
        assert!(r.first_time(MsgKey::single(1, 2, 8)));
        assert!(r.first_time(MsgKey::Group(1, 7)));
        std::thread::sleep(Duration::from_millis(60));
        // One rotation: still remembered (previous generation).
        assert!(!r.first_time(MsgKey::single(1, 2, 7)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.first_time(MsgKey::Group(1, 9)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.first_time(MsgKey::Group(1, 10)));
        // Two rotations since the last sighting: forgotten.
        assert!(r.first_time(MsgKey::single(1, 2, 8)));
    }
}
