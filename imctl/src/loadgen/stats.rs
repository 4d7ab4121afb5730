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
    /// Send → delivery per second of the measured window (by send time): where a tail
    /// comes from, a steady queue or a stall.
    pub deliver_series: Series,
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
            deliver_series: Series::default(),
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

    /// Records a measured delivery of a message sent at `sent_us`, `latency_us` later.
    pub fn record_delivery(&self, sent_us: u64, latency_us: u64) {
        self.deliver.record(latency_us);
        let from = self.measure_from.load(Ordering::Relaxed);
        self.deliver_series
            .record(sent_us.saturating_sub(from), latency_us);
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

/// Seconds a [`Series`] keeps (an hour); later sends are left out of the series (not of
/// the totals).
const SERIES_SECONDS: u64 = 3600;

/// Slots of the fine timeline per second (100 ms each).
const FINE_PER_SECOND: u64 = 10;

/// Send → delivery over the measured window, by send time: a small histogram per second
/// and the largest latency per 100 ms, which tells a steady queue from a periodic stall
/// (a stall once a second puts every second's p99 up alike).
#[derive(Debug, Default)]
pub struct Series(Mutex<SeriesSlots>);

#[derive(Debug, Default)]
struct SeriesSlots {
    seconds: Vec<Histogram<u64>>,
    fine_max: Vec<u64>,
}

/// One second of a [`Series`], milliseconds.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since the start of the measured window (send time).
    pub second: u64,
    /// Deliveries of messages sent in that second.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Largest in each tenth of the second.
    pub max_per_100ms: Vec<f64>,
}

impl Series {
    /// Records a latency of a message sent `since_us` after the window opened.
    fn record(&self, since_us: u64, us: u64) {
        let second = since_us / 1_000_000;
        if second >= SERIES_SECONDS {
            return;
        }
        let Ok(mut slots) = self.0.lock() else {
            return;
        };
        while slots.seconds.len() as u64 <= second {
            // Constant bounds (see `Latency::new`); one digit (about 3%) is plenty for a
            // timeline and keeps an hour's series around 10 MB.
            #[allow(clippy::expect_used)]
            let h =
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 1).expect("valid constant bounds");
            slots.seconds.push(h);
            let len = slots.fine_max.len() + FINE_PER_SECOND as usize;
            slots.fine_max.resize(len, 0);
        }
        let us = us.clamp(1, MAX_LATENCY_US);
        slots.seconds[second as usize].saturating_record(us);
        let fine = (since_us / (1_000_000 / FINE_PER_SECOND)) as usize;
        slots.fine_max[fine] = slots.fine_max[fine].max(us);
    }

    /// The seconds recorded so far, in order (a second without deliveries has count 0).
    pub fn points(&self) -> Vec<SeriesPoint> {
        let Ok(slots) = self.0.lock() else {
            return Vec::new();
        };
        slots
            .seconds
            .iter()
            .zip(slots.fine_max.chunks(FINE_PER_SECOND as usize))
            .enumerate()
            .map(|(i, (h, fine))| {
                let s = Summary::of(h);
                SeriesPoint {
                    second: i as u64,
                    count: s.count,
                    p50: s.p50,
                    p99: s.p99,
                    max: s.max,
                    max_per_100ms: fine.iter().map(|&us| us as f64 / 1000.0).collect(),
                }
            })
            .collect()
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
    fn series_splits_by_send_second() {
        let s = Stats::new();
        s.set_window(5_000_000, 20_000_000);
        // Sent 0.5 s and 0.9 s into the window, then 2.1 s in: second 1 stays empty.
        s.record_delivery(5_500_000, 2_000);
        s.record_delivery(5_900_000, 90_000);
        s.record_delivery(7_100_000, 4_000);
        let p = s.deliver_series.points();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!((p[0].second, p[0].count), (0, 2));
        assert!((p[0].max - 90.0).abs() < 3.0 && p[0].p50 < 2.1, "{p:?}");
        // The fine timeline: 0.5 s in is the sixth tenth, 0.9 s the tenth.
        assert_eq!(p[0].max_per_100ms.len(), 10);
        assert_eq!(p[0].max_per_100ms[5], 2.0);
        assert_eq!(p[0].max_per_100ms[9], 90.0);
        assert_eq!(p[0].max_per_100ms.iter().filter(|&&m| m == 0.0).count(), 8);
        assert_eq!((p[1].second, p[1].count), (1, 0));
        assert_eq!(p[1].max_per_100ms, vec![0.0; 10]);
        assert_eq!((p[2].second, p[2].count), (2, 1));
        assert!((p[2].max - 4.0).abs() < 0.2, "{p:?}");
        assert_eq!(p[2].max_per_100ms[1], 4.0);
        assert_eq!(s.deliver.summary().count, 3);
    }

    #[test]
    fn window_gates_measurement() {
        let s = Stats::new();
        assert!(s.measured(0));
        s.set_window(10, 20);
        assert!(!s.measured(9) && s.measured(10) && !s.measured(20));
    }
}
