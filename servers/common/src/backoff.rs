//! Reconnect backoff for upstream links (ARCHITECTURE.md Decisions 3): 100 ms doubling to at
//! most 1 s, with jitter so that many msg_servers do not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// Backoff settings (config section `[backoff]` of servers with upstream links).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay after a failure, milliseconds.
    pub initial_ms: u64,
    /// Largest delay, milliseconds. The original grows to 64 s, which leaves messages
    /// undelivered for a minute after a peer restart; 1 s keeps recovery quick.
    pub max_ms: u64,
    /// Random spread applied to each delay, as a fraction (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_ms: 100,
            max_ms: 1000,
            jitter: 0.2,
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    next_ms: u64,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            next_ms: config.initial_ms.max(1),
            config,
        }
    }

    /// The delay before the next attempt; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next_ms.min(self.config.max_ms.max(1));
        self.next_ms = base.saturating_mul(2).min(self.config.max_ms.max(1));
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        Duration::from_millis(((base as f64) * factor).round() as u64)
    }

    /// Back to the first delay (after a successful connect).
    pub fn reset(&mut self) {
        self.next_ms = self.config.initial_ms.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        });
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut b = Backoff::new(BackoffConfig::default());
        for _ in 0..100 {
            let d = b.next_delay().as_millis();
            assert!((80..=1200).contains(&d), "{d}");
        }
    }
}
