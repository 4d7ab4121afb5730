//! Live counters and latency histograms shared by every simulated user.
//!
//! Histograms are HDR histograms in microseconds behind a mutex each: a record is a few
//! nanoseconds under an uncontended lock, far below the per-message cost of a send, and one
//! shared histogram per metric keeps memory flat however many users run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds (µs): anything slower is clamped to it.
const MAX_LATENCY_US: u64 = 120_000_000;

/// One latency histogram (µs).
#[derive(Debug)]
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram from 1 µs to two minutes, three significant digits.
    pub fn new() -> Self {
        // Constant bounds that hdrhistogram accepts (1 <= low, high >= 2 * low, 3 digits):
        // this cannot fail at run time.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid constant bounds");
        Latency(Mutex::new(h))
    }

    /// Records one latency.
    pub fn record(&self, us: u64) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    /// Adds another histogram's counts (worker processes' logins).
    pub fn merge(&self, other: &Histogram<u64>) {
        if let Ok(mut h) = self.0.lock() {
            let _ = h.add(other);
        }
    }

    /// A copy of the histogram.
    pub fn histogram(&self) -> Option<Histogram<u64>> {
        self.0.lock().ok().map(|h| h.clone())
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> Summary {
        match self.0.lock() {
            Ok(h) => Summary::of(&h),
            Err(_) => Summary::default(),
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Percentiles of a µs histogram, in ms.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            mean: (h.mean() / 10.0).round() / 100.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Counters every user bumps.
#[derive(Debug, Default)]
pub struct Counters {
    /// Logins that succeeded.
    pub logins: AtomicU64,
    /// Logins refused or failed.
    pub login_failures: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Acks received.
    pub acked: AtomicU64,
    /// First deliveries of our messages.
    pub delivered: AtomicU64,
    /// Sent within the measured window.
    pub sent_measured: AtomicU64,
    /// Acked, of those sent within the measured window.
    pub acked_measured: AtomicU64,
    /// Delivered, of those sent within the measured window.
    pub delivered_measured: AtomicU64,
    /// Sends skipped: the peer's id was not known yet or the user was offline.
    pub skipped: AtomicU64,
    /// P2P commands sent and received.
    pub p2p_sent: AtomicU64,
    /// P2P commands received.
    pub p2p_received: AtomicU64,
    /// Kicks received when one was expected.
    pub kicks: AtomicU64,
    /// Kicks expected but not received in time.
    pub kicks_missed: AtomicU64,
    /// `expect` steps that timed out.
    pub expect_failures: AtomicU64,
    /// History requests answered.
    pub history: AtomicU64,
    /// Connections that ended without being asked to.
    pub disconnects: AtomicU64,
    /// Other errors (requests that failed, timeouts).
    pub errors: AtomicU64,
    /// Messages seen that belong to another run or carry no stamp.
    pub foreign: AtomicU64,
}

/// Everything shared: the epoch, counters, histograms and the measured window.
#[derive(Debug)]
pub struct Stats {
    /// Zero of every timestamp in the run.
    pub epoch: Instant,
    /// Counters.
    pub counters: Counters,
    /// HTTP + TCP login.
    pub login: Latency,
    /// Send → IMMsgDataAck.
    pub ack: Latency,
    /// Send → delivery to a receiver.
    pub deliver: Latency,
    /// History request → answer.
    pub history: Latency,
    /// Duplicate login → IMKickUser on the older connection.
    pub kick: Latency,
    measure_from: AtomicU64,
    measure_until: AtomicU64,
    /// Last error messages (a few, for the report).
    errors: Mutex<Vec<String>>,
}

/// How many distinct error texts the report keeps.
const ERROR_SAMPLES: usize = 10;

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Fresh counters; the epoch is now; everything is measured until told otherwise.
    pub fn new() -> Self {
        Stats {
            epoch: Instant::now(),
            counters: Counters::default(),
            login: Latency::new(),
            ack: Latency::new(),
            deliver: Latency::new(),
            history: Latency::new(),
            kick: Latency::new(),
            measure_from: AtomicU64::new(0),
            measure_until: AtomicU64::new(u64::MAX),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// µs since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Only messages sent within `[from, until)` (µs) feed the message histograms and the
    /// measured counters (a bench's warm-up and cool-down are left out).
    pub fn set_window(&self, from: u64, until: u64) {
        self.measure_from.store(from, Ordering::Relaxed);
        self.measure_until.store(until, Ordering::Relaxed);
    }

    /// The measured window, µs.
    pub fn window(&self) -> (u64, u64) {
        (
            self.measure_from.load(Ordering::Relaxed),
            self.measure_until.load(Ordering::Relaxed),
        )
    }

    /// True when a message sent at `sent_us` is measured.
    pub fn measured(&self, sent_us: u64) -> bool {
        let (from, until) = self.window();
        sent_us >= from && sent_us < until
    }

    /// Counts an error and keeps its text if it is new.
    pub fn error(&self, what: impl std::fmt::Display) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.errors.lock() {
            let text = what.to_string();
            if e.len() < ERROR_SAMPLES && !e.contains(&text) {
                e.push(text);
            }
        }
    }

    /// The kept error texts.
    pub fn error_samples(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// Shorthand for a relaxed increment.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Shorthand for a relaxed read.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let l = Latency::new();
        for us in 1..=1000 {
            l.record(us * 100);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(Latency::new().summary(), Summary::default());
    }

    #[test]
    fn window_gates_measurement() {
        let s = Stats::new();
        assert!(s.measured(0));
        s.set_window(10, 20);
        assert!(!s.measured(9) && s.measured(10) && !s.measured(20));
    }
}
