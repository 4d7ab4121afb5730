//! Matching every delivery to its send: what each simulated user records while it runs
//! ([`UserLog`]), and the verdict computed from all of them at the end ([`verify`]).
//!
//! * **Lost**: acked (stored, so it must reach everyone online) but never delivered to a
//!   receiver that was online from `settle` before the send until `window` after it.
//! * **Duplicate**: the same (stream, seq) delivered twice to one user.
//! * **Reordered**: within one stream, a seq delivered after a higher one.

use std::collections::HashMap;

use serde::Serialize;

use super::stamp::StreamKey;

/// A growable set of small integers (message seqs), one bit each.
#[derive(Debug, Default, Clone)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Adds `i`; false when it was already there.
    pub fn insert(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        fresh
    }

    /// True when `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
}

/// A sender's record of one stream.
#[derive(Debug, Default, Clone)]
pub struct OutStream {
    /// Send time of each seq, µs since the epoch (the index is the seq).
    pub sent_us: Vec<u64>,
    /// Seqs whose IMMsgDataAck came back.
    pub acked: BitSet,
}

impl OutStream {
    /// Registers the next message; returns its seq.
    pub fn next(&mut self, now_us: u64) -> u32 {
        self.sent_us.push(now_us);
        (self.sent_us.len() - 1) as u32
    }
}

/// A receiver's record of one stream.
#[derive(Debug, Default, Clone)]
pub struct InStream {
    /// Highest seq seen so far.
    pub highest: Option<u32>,
    /// Every seq seen.
    pub got: BitSet,
    /// Deliveries of a seq already seen.
    pub duplicates: u64,
    /// Deliveries of a seq lower than one seen before.
    pub reordered: u64,
}

/// What one delivery turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First time this seq arrived.
    New,
    /// Seen before.
    Duplicate,
}

impl InStream {
    /// Records a delivery; `tolerate_copies` ignores repeats (two connections of one user
    /// overlap during a duplicate-login kick, and both legitimately receive).
    pub fn record(&mut self, seq: u32, tolerate_copies: bool) -> Arrival {
        if !self.got.insert(seq) {
            if !tolerate_copies {
                self.duplicates += 1;
            }
            return Arrival::Duplicate;
        }
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
        Arrival::New
    }
}

/// When a user was logged in: closed intervals of µs since the epoch.
#[derive(Debug, Default, Clone)]
pub struct Presence {
    intervals: Vec<(u64, u64)>,
}

impl Presence {
    /// A login completed at `now`.
    pub fn online(&mut self, now: u64) {
        if self.intervals.last().is_some_and(|l| l.1 == u64::MAX) {
            return;
        }
        self.intervals.push((now, u64::MAX));
    }

    /// The connection ended at `now`.
    pub fn offline(&mut self, now: u64) {
        if let Some(last) = self.intervals.last_mut()
            && last.1 == u64::MAX
        {
            last.1 = now;
        }
    }

    /// True when online for the whole of `[from, to]`.
    pub fn covers(&self, from: u64, to: u64) -> bool {
        self.intervals.iter().any(|&(a, b)| a <= from && to <= b)
    }
}

/// Everything one simulated user hands in at the end.
#[derive(Debug, Default)]
pub struct UserLog {
    /// Its user id (0 when it never logged in).
    pub user_id: u32,
    /// Streams it sent.
    pub outbox: HashMap<StreamKey, OutStream>,
    /// Streams it received.
    pub inbox: HashMap<StreamKey, InStream>,
    /// When it was online.
    pub presence: Presence,
}

/// The outcome of matching.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Messages sent.
    pub sent: u64,
    /// Messages acked (stored).
    pub acked: u64,
    /// Messages sent but never acked.
    pub unacked: u64,
    /// (message, receiver) pairs that had to arrive: acked, receiver online throughout.
    pub expected: u64,
    /// Expected pairs that arrived.
    pub matched: u64,
    /// Expected pairs that never arrived.
    pub lost: u64,
    /// Deliveries of a message already delivered to that user.
    pub duplicates: u64,
    /// Deliveries that went backwards within their stream.
    pub reordered: u64,
    /// Every first delivery, expected or not.
    pub delivered: u64,
    /// Deliveries of messages whose ack never came back.
    pub delivered_unacked: u64,
    /// A few lost messages, for the report (`sender->to #seq to receiver`).
    pub lost_examples: Vec<String>,
}

/// How many lost messages the verdict names.
const LOST_EXAMPLES: usize = 10;

/// Matches every delivery to its send. `groups` maps a group id to its member ids; a receiver
/// must have been online from `settle_us` before a send until `window_us` after it for the
/// message to count as expected.
pub fn verify(
    logs: &[UserLog],
    groups: &HashMap<u32, Vec<u32>>,
    settle_us: u64,
    window_us: u64,
) -> Verdict {
    let mut v = Verdict::default();
    let by_id: HashMap<u32, &UserLog> = logs
        .iter()
        .filter(|l| l.user_id != 0)
        .map(|l| (l.user_id, l))
        .collect();
    let empty = Vec::new();
    for log in logs {
        for (key, out) in &log.outbox {
            let audience: Vec<u32> = if key.group {
                groups.get(&key.to).unwrap_or(&empty).clone()
            } else {
                vec![key.to]
            };
            for (seq, &t) in out.sent_us.iter().enumerate() {
                let seq = seq as u32;
                v.sent += 1;
                if !out.acked.contains(seq) {
                    v.unacked += 1;
                    continue;
                }
                v.acked += 1;
                for r in audience.iter().filter(|&&r| r != key.sender) {
                    let Some(rl) = by_id.get(r) else { continue };
                    if !rl
                        .presence
                        .covers(t.saturating_sub(settle_us), t.saturating_add(window_us))
                    {
                        continue;
                    }
                    v.expected += 1;
                    if rl.inbox.get(key).is_some_and(|s| s.got.contains(seq)) {
                        v.matched += 1;
                    } else {
                        v.lost += 1;
                        if v.lost_examples.len() < LOST_EXAMPLES {
                            let kind = if key.group { "group " } else { "" };
                            v.lost_examples
                                .push(format!("{}->{kind}{} #{seq} to {r}", key.sender, key.to));
                        }
                    }
                }
            }
        }
    }
    for log in logs {
        for (key, inn) in &log.inbox {
            v.duplicates += inn.duplicates;
            v.reordered += inn.reordered;
            v.delivered += inn.got.len();
            let out = by_id.get(&key.sender).and_then(|s| s.outbox.get(key));
            for seq in (0..=inn.highest.unwrap_or(0)).filter(|&s| inn.got.contains(s)) {
                if !out.is_some_and(|o| o.acked.contains(seq)) {
                    v.delivered_unacked += 1;
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sender: u32, to: u32, group: bool) -> StreamKey {
        StreamKey { sender, group, to }
    }

    #[test]
    fn bits_and_arrivals() {
        let mut b = BitSet::default();
        assert!(b.insert(3) && b.insert(200) && !b.insert(3));
        assert!(b.contains(200) && !b.contains(4) && !b.contains(10_000));
        assert_eq!(b.len(), 2);
        let mut s = InStream::default();
        for seq in [0, 1, 3, 2, 3] {
            s.record(seq, false);
        }
        assert_eq!((s.duplicates, s.reordered), (1, 1));
        s.record(3, true);
        assert_eq!(s.duplicates, 1);
    }

    #[test]
    fn loss_counts_only_online_receivers_of_acked_messages() {
        let mut a = UserLog {
            user_id: 1,
            ..UserLog::default()
        };
        let mut b = UserLog {
            user_id: 2,
            ..UserLog::default()
        };
        let mut c = UserLog {
            user_id: 3,
            ..UserLog::default()
        };
        a.presence.online(0);
        b.presence.online(0);
        c.presence.online(0);
        c.presence.offline(5_000);
        // a -> b: seqs 0, 1, 2 acked, 3 not; b got 0 and 2 (1 lost).
        let out = a.outbox.entry(key(1, 2, false)).or_default();
        for t in [1_000, 2_000, 3_000, 4_000] {
            out.next(t);
        }
        for s in 0..3 {
            out.acked.insert(s);
        }
        let inn = b.inbox.entry(key(1, 2, false)).or_default();
        inn.record(0, false);
        inn.record(2, false);
        inn.record(3, false);
        // a -> group 9 (members 1, 2, 3): one message at 10 ms; c is offline by then.
        let g = a.outbox.entry(key(1, 9, true)).or_default();
        g.next(10_000);
        g.acked.insert(0);
        b.inbox.entry(key(1, 9, true)).or_default().record(0, false);
        let groups = HashMap::from([(9, vec![1, 2, 3])]);
        let v = verify(&[a, b, c], &groups, 0, 1_000);
        assert_eq!((v.sent, v.acked, v.unacked), (5, 4, 1));
        assert_eq!((v.expected, v.matched, v.lost), (4, 3, 1));
        assert_eq!(v.lost_examples, ["1->2 #1 to 2"]);
        assert_eq!((v.delivered, v.delivered_unacked), (4, 1));
        assert_eq!((v.duplicates, v.reordered), (0, 0));
    }
}
