//! The verdict of a run, from what the fake users saw.
//!
//! Definitions (the closing note repeats them):
//! - **sent**: queued on a live connection; **acked**: the sender got IMMsgDataAck.
//! - **delivered**: an acked message that reached its receiver live, or (for a receiver
//!   whose connection dropped) through the history it read after logging in again, as a
//!   stock client catches up.
//! - **lost**: acked and not delivered in either way. Must be 0.
//! - **false ack**: acked, but the conversation's storage (read through the client protocol
//!   after the run) has no row with that stamp and that msg_id. Must be 0 (Decisions 4).
//! - **duplicates**: extra live copies of one message to one receiver.
//! - **stored twice**: one stamp stored under two msg_ids (a retry stored twice).
//! - **repeated ids**: one msg_id used by two different messages of a conversation.
//! - **stored unacked**: stored though the sender got no ack (allowed: the ack was lost
//!   with a crashed server or a failed link).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::stamp::Stamp;
use crate::user::UserLog;

/// Counts over every message of a run (or those acked within a window).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Messages sent.
    pub sent: u64,
    /// Messages acked.
    pub acked: u64,
    /// Acked messages delivered live.
    pub live: u64,
    /// Acked messages delivered only through a history read after a reconnect.
    pub synced: u64,
    /// Acked messages never delivered.
    pub lost: u64,
    /// Acked messages missing from storage (or stored under another id).
    pub false_acks: u64,
    /// Extra live copies.
    pub duplicates: u64,
    /// Stamps stored under more than one msg_id.
    pub stored_twice: u64,
    /// msg_ids used by more than one message in a conversation.
    pub repeated_ids: u64,
    /// Stored messages that were never acked.
    pub stored_unacked: u64,
    /// Conversations whose storage could not be read.
    pub unread_conversations: u64,
    /// A few lost or falsely acked messages, for the failure message.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Acked messages delivered live or by the reconnect sync.
    pub fn delivered(&self) -> u64 {
        self.live + self.synced
    }

    /// True when nothing acked was lost, falsely acked, stored twice or given a used id,
    /// and every conversation's storage was read.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.false_acks == 0
            && self.stored_twice == 0
            && self.repeated_ids == 0
            && self.unread_conversations == 0
    }
}

/// Message ids stored per stamp (sender, seq) of one conversation.
type StampIds = HashMap<(u32, u32), Vec<u32>>;

/// Judges the run; with `window`, only messages whose ack arrived within it count (the
/// storage checks always cover everything).
pub fn verify(logs: &[&UserLog], window: Option<(Instant, Instant)>) -> Verdict {
    let mut v = Verdict::default();
    let by_id: HashMap<u32, &UserLog> = logs.iter().map(|l| (l.user_id, *l)).collect();
    // Storage per conversation (keyed by the smaller user id), read by one of the pair.
    let mut stored: HashMap<(u32, u32), StampIds> = HashMap::new();
    for l in logs {
        let conv = (l.user_id.min(l.peer), l.user_id.max(l.peer));
        let Some(rows) = &l.storage else {
            continue;
        };
        let mut stamps: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let mut ids: HashMap<u32, Vec<Stamp>> = HashMap::new();
        for (st, id) in rows {
            stamps.entry((st.from, st.seq)).or_default().push(*id);
            ids.entry(*id).or_default().push(*st);
        }
        v.stored_twice += stamps.values().filter(|ids| ids.len() > 1).count() as u64;
        v.repeated_ids += ids.values().filter(|s| s.len() > 1).count() as u64;
        stored.insert(conv, stamps);
    }
    for l in logs {
        let conv = (l.user_id.min(l.peer), l.user_id.max(l.peer));
        let storage = stored.get(&conv);
        if storage.is_none() && l.user_id < l.peer {
            v.unread_conversations += 1;
        }
        let receiver = by_id.get(&l.peer);
        let mut acked_ids: HashMap<u32, u32> = HashMap::new();
        for (seq, sent) in l.sent.iter().enumerate() {
            let key = (l.user_id, seq as u32);
            let rows = storage.and_then(|s| s.get(&key));
            let in_window = |t: Instant| window.is_none_or(|(a, b)| t >= a && t <= b);
            let Some((msg_id, acked_at)) = sent.ack else {
                if rows.is_some() {
                    v.stored_unacked += 1;
                }
                if window.is_none() {
                    v.sent += 1;
                }
                continue;
            };
            if !in_window(acked_at) {
                continue;
            }
            v.sent += 1;
            v.acked += 1;
            *acked_ids.entry(msg_id).or_insert(0) += 1;
            if storage.is_some() && !rows.is_some_and(|r| r.contains(&msg_id)) {
                v.false_acks += 1;
                example(
                    &mut v,
                    format!(
                        "false ack: {} seq {seq} acked as msg_id {msg_id}, stored as {rows:?}",
                        l.name
                    ),
                );
            }
            let live = receiver
                .and_then(|r| r.live.get(&key))
                .copied()
                .unwrap_or(0);
            if live > 0 {
                v.live += 1;
            } else if receiver.is_some_and(|r| r.synced.contains(&key)) {
                v.synced += 1;
            } else {
                v.lost += 1;
                example(
                    &mut v,
                    format!(
                        "lost: {} -> {} seq {seq} msg_id {msg_id}, sent {:?} before the end, acked after {:?}",
                        l.name,
                        receiver.map_or("?", |r| r.name.as_str()),
                        sent.at.elapsed(),
                        acked_at.duration_since(sent.at)
                    ),
                );
            }
        }
        // One sender's acks reusing an id (the receiver side is checked through storage).
        v.repeated_ids += acked_ids.values().filter(|n| **n > 1).count() as u64;
    }
    for l in logs {
        v.duplicates += l
            .live
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum::<u64>();
    }
    v
}

/// Message ids after an outage: for every conversation, the ids acked after `after` must all
/// be above every id acked before `before`. Returns (conversations checked, conversations
/// where an id went back).
pub fn ids_continue(logs: &[&UserLog], before: Instant, after: Instant) -> (usize, usize) {
    let mut convs: HashMap<(u32, u32), (Option<u32>, Option<u32>)> = HashMap::new();
    for l in logs {
        let conv = (l.user_id.min(l.peer), l.user_id.max(l.peer));
        let e = convs.entry(conv).or_default();
        for (id, at) in l.sent.iter().filter_map(|s| s.ack) {
            if at < before {
                e.0 = Some(e.0.map_or(id, |m| m.max(id)));
            } else if at > after {
                e.1 = Some(e.1.map_or(id, |m| m.min(id)));
            }
        }
    }
    let mut checked = 0;
    let mut back = 0;
    for (max_before, min_after) in convs.values() {
        if let (Some(b), Some(a)) = (max_before, min_after) {
            checked += 1;
            if a <= b {
                back += 1;
            }
        }
    }
    (checked, back)
}

fn example(v: &mut Verdict, text: String) {
    if v.examples.len() < 10 {
        v.examples.push(text);
    }
}

/// Reconnect figures of the users whose connection dropped: (outages, slowest, median).
pub fn reconnects(logs: &[&UserLog]) -> (usize, Option<Duration>, Option<Duration>) {
    let mut took: Vec<Duration> = logs
        .iter()
        .flat_map(|l| l.outages.iter().filter_map(|(_, d)| *d))
        .collect();
    let outages = logs.iter().map(|l| l.outages.len()).sum();
    took.sort();
    let median = took.get(took.len() / 2).copied();
    (outages, took.last().copied(), median)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Sent;

    fn stamp(from: u32, to: u32, seq: u32) -> Stamp {
        Stamp {
            run: 1,
            from,
            to,
            seq,
        }
    }

    fn log(user_id: u32, peer: u32, acks: &[Option<u32>]) -> UserLog {
        let at = Instant::now();
        UserLog {
            name: format!("u{user_id}"),
            user_id,
            peer,
            sent: acks
                .iter()
                .map(|a| Sent {
                    at,
                    ack: a.map(|id| (id, at)),
                })
                .collect(),
            ..UserLog::default()
        }
    }

    #[test]
    fn counts_lost_false_acks_duplicates_and_unacked_rows() {
        let mut a = log(1, 2, &[Some(1), Some(2), None, Some(3)]);
        a.storage = Some(vec![
            (stamp(1, 2, 0), 1),
            (stamp(1, 2, 1), 2),
            (stamp(1, 2, 2), 4),
        ]);
        let mut b = log(2, 1, &[]);
        b.live.insert((1, 0), 2);
        b.synced.insert((1, 1));
        let v = verify(&[&a, &b], None);
        assert_eq!(
            (v.sent, v.acked, v.live, v.synced, v.lost, v.false_acks),
            (4, 3, 1, 1, 1, 1)
        );
        assert_eq!((v.duplicates, v.stored_unacked), (1, 1));
        assert_eq!(
            (v.stored_twice, v.repeated_ids, v.unread_conversations),
            (0, 0, 0)
        );
        assert!(!v.is_clean());
        assert_eq!(v.examples.len(), 2, "{:?}", v.examples);
    }

    #[test]
    fn a_clean_run_and_storage_anomalies() {
        let mut a = log(1, 2, &[Some(1), Some(2)]);
        a.storage = Some(vec![(stamp(1, 2, 0), 1), (stamp(1, 2, 1), 2)]);
        let mut b = log(2, 1, &[]);
        b.live.insert((1, 0), 1);
        b.live.insert((1, 1), 1);
        let v = verify(&[&a, &b], None);
        assert!(v.is_clean(), "{v:?}");
        assert_eq!(v.delivered(), 2);
        // A retry stored twice, and an id given to two messages.
        a.storage = Some(vec![
            (stamp(1, 2, 0), 1),
            (stamp(1, 2, 0), 3),
            (stamp(1, 2, 1), 2),
            (stamp(2, 1, 0), 2),
        ]);
        let v = verify(&[&a, &b], None);
        assert_eq!((v.stored_twice, v.repeated_ids), (1, 1));
        // Nobody read the storage.
        a.storage = None;
        assert_eq!(verify(&[&a, &b], None).unread_conversations, 1);
    }

    #[test]
    fn ids_must_climb_past_an_outage() {
        let t0 = Instant::now();
        let mut a = log(1, 2, &[]);
        a.sent = vec![
            Sent {
                at: t0,
                ack: Some((5, t0)),
            },
            Sent {
                at: t0,
                ack: Some((6, t0 + Duration::from_secs(10))),
            },
        ];
        let b = log(2, 1, &[]);
        let mid = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        assert_eq!(ids_continue(&[&a, &b], mid.0, mid.1), (1, 0));
        a.sent[1].ack = Some((3, t0 + Duration::from_secs(10)));
        assert_eq!(ids_continue(&[&a, &b], mid.0, mid.1), (1, 1));
    }
}
