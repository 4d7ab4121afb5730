//! The login throttle: failed logins per name (FLOWS.md 4 step 5, Decisions 9).
//!
//! Like the original, a name with more than `max` failures in the last `window` is refused
//! without checking its password (result 6). Unlike the original (WEAKNESSES 14) the table
//! shrinks: entries expire with their window, a periodic sweep drops names whose failures all
//! expired, and the number of names tracked at once is capped. It lives in this process only,
//! as in the original; msg_server throttles per client address on top of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most names tracked at once. Guessing against a million names within one window is a
/// different attack (msg_server throttles per address); past this, new names are not counted
/// rather than letting memory grow without bound.
const MAX_NAMES: usize = 1_000_000;

/// Longest name kept as a key (the schema's `name` is varchar(32); a longer one cannot
/// exist, so a prefix is enough to tell names apart).
const MAX_KEY_BYTES: usize = 64;

/// Failed logins per name within a sliding window.
#[derive(Debug)]
pub struct LoginThrottle {
    max: usize,
    window: Duration,
    // Logins are rare next to messages; one lock is plenty.
    names: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn key(name: &str) -> &str {
    if name.len() <= MAX_KEY_BYTES {
        return name;
    }
    let mut end = MAX_KEY_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl LoginThrottle {
    /// A throttle refusing a name after more than `max` failures within `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        LoginThrottle {
            max: max as usize,
            window,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// True when `name` has too many recent failures and must be refused unchecked.
    pub fn is_blocked(&self, name: &str, now: Instant) -> bool {
        let Ok(mut names) = self.names.lock() else {
            return false;
        };
        let Some(list) = names.get_mut(key(name)) else {
            return false;
        };
        prune(list, now, self.window);
        if list.is_empty() {
            names.remove(key(name));
            return false;
        }
        list.len() > self.max
    }

    /// Records a failed attempt.
    pub fn record_failure(&self, name: &str, now: Instant) {
        let Ok(mut names) = self.names.lock() else {
            return;
        };
        if names.len() >= MAX_NAMES && !names.contains_key(key(name)) {
            tracing::warn!(
                names = names.len(),
                "login throttle table full, not tracking another name"
            );
            return;
        }
        let list = names.entry(key(name).to_owned()).or_default();
        prune(list, now, self.window);
        list.push_back(now);
        // One more than the limit is all the decision needs.
        while list.len() > self.max + 1 {
            list.pop_front();
        }
    }

    /// A successful login clears the name's history (as the original does).
    pub fn record_success(&self, name: &str) {
        if let Ok(mut names) = self.names.lock() {
            names.remove(key(name));
        }
    }

    /// Drops names whose failures all left the window.
    pub fn sweep(&self, now: Instant) {
        if let Ok(mut names) = self.names.lock() {
            names.retain(|_, list| {
                prune(list, now, self.window);
                !list.is_empty()
            });
        }
    }

    /// Names tracked now.
    pub fn len(&self) -> usize {
        self.names.lock().map(|n| n.len()).unwrap_or(0)
    }

    /// True when no name is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn prune(list: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while list
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        list.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_max_failures_block_until_the_window_passes() {
        let t = LoginThrottle::new(10, Duration::from_secs(1800));
        let start = Instant::now();
        for i in 0..10 {
            assert!(!t.is_blocked("alice", start), "attempt {i}");
            t.record_failure("alice", start);
        }
        // Ten failures: still checked (the original refuses only above ten).
        assert!(!t.is_blocked("alice", start));
        t.record_failure("alice", start);
        assert!(t.is_blocked("alice", start));
        assert!(!t.is_blocked("bob", start));
        // The window passes: free again, and the name is forgotten.
        let later = start + Duration::from_secs(1800);
        assert!(!t.is_blocked("alice", later));
        assert!(t.is_empty());
    }

    #[test]
    fn success_clears_and_sweep_shrinks() {
        let t = LoginThrottle::new(1, Duration::from_secs(60));
        let now = Instant::now();
        t.record_failure("a", now);
        t.record_failure("a", now);
        assert!(t.is_blocked("a", now));
        t.record_success("a");
        assert!(!t.is_blocked("a", now));
        t.record_failure("b", now);
        t.record_failure("c", now + Duration::from_secs(30));
        assert_eq!(t.len(), 2);
        t.sweep(now + Duration::from_secs(61));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn long_names_share_a_bounded_key() {
        let t = LoginThrottle::new(0, Duration::from_secs(60));
        let now = Instant::now();
        let long = "名".repeat(100);
        t.record_failure(&long, now);
        assert!(t.is_blocked(&long, now));
        assert!(key(&long).len() <= MAX_KEY_BYTES);
    }
}
