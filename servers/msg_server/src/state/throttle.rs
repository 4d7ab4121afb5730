//! Failed logins per client address (Decisions 9: per-name throttling is db_proxy's, per
//! address ours): too many failures within the window and the address is refused without
//! asking db_proxy, which keeps password guessing from one host slow and cheap for us.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond it, addresses without recent failures are forgotten
/// first (a flood from many addresses must not grow the table without bound).
const MAX_ADDRS: usize = 100_000;

/// The failure throttle.
#[derive(Debug)]
pub struct LoginThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// At most `limit` failures per `window` (0 = no throttle).
    pub fn new(limit: u32, window: Duration) -> Self {
        LoginThrottle {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// True when `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        if self.limit == 0 {
            return false;
        }
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = m.get_mut(&ip) else {
            return false;
        };
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        if q.is_empty() {
            m.remove(&ip);
            return false;
        }
        q.len() >= self.limit as usize
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if m.len() >= MAX_ADDRS && !m.contains_key(&ip) {
            let window = self.window;
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= window));
        }
        let q = m.entry(ip).or_default();
        q.push_back(now);
        // Only the last `limit` failures matter.
        while q.len() > self.limit as usize {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_forgets_after_the_window() {
        let t = LoginThrottle::new(3, Duration::from_millis(100));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..2 {
            t.failed(a);
        }
        assert!(!t.blocked(a));
        t.failed(a);
        assert!(t.blocked(a));
        assert!(!t.blocked(b));
        std::thread::sleep(Duration::from_millis(120));
        assert!(!t.blocked(a));
        let off = LoginThrottle::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            off.failed(a);
        }
        assert!(!off.blocked(a));
    }
}
