//! Per-server metrics: counters, gauges and latency histograms, rendered as Prometheus text.
//!
//! Each server instance owns its own [`Registry`] rather than using a process-global
//! recorder: im-cluster runs a whole suite in one process and tests run many servers at once,
//! and each must report only its own numbers (on `/metrics` and in the admin stats snapshot).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A monotonic counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds 1.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Buckets per power of two; 4 gives about 19 % relative error on quantiles.
const SUB_BUCKETS: usize = 4;
/// Powers of two covered, starting at 1 µs: 2^26 µs is about 67 s.
const OCTAVES: usize = 26;
const BUCKETS: usize = OCTAVES * SUB_BUCKETS + 1;

/// Upper bound (µs) of bucket `i`; the last bucket is unbounded.
fn bucket_bound(i: usize) -> f64 {
    2f64.powf(i as f64 / SUB_BUCKETS as f64)
}

fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    let idx = ((us as f64).log2() * SUB_BUCKETS as f64).ceil() as usize;
    idx.min(BUCKETS - 1)
}

#[derive(Debug)]
struct HistogramInner {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

/// A latency histogram with log-spaced buckets from 1 µs to about a minute.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramInner>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Arc::new(HistogramInner {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }))
    }
}

/// Quantiles read from a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Median (upper bound of its bucket).
    pub p50_us: u64,
    /// 99th percentile (upper bound of its bucket).
    pub p99_us: u64,
    /// Largest value seen.
    pub max_us: u64,
    /// Number of samples.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Records one value in microseconds.
    pub fn record_us(&self, us: u64) {
        let h = &self.0;
        h.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_us.fetch_add(us, Ordering::Relaxed);
        h.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// The value below which a fraction `q` of the samples fall (bucket upper bound, capped
    /// at the maximum seen).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let max = self.0.max_us.load(Ordering::Relaxed);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (bucket_bound(i).ceil() as u64).min(max.max(1));
            }
        }
        max
    }

    /// p50, p99, max and count.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            max_us: self.0.max_us.load(Ordering::Relaxed),
            count: self.count(),
        }
    }
}

#[derive(Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    /// A value computed when rendered (open connections, RSS...).
    Computed(Arc<dyn Fn() -> f64 + Send + Sync>, &'static str),
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Counter(c) => write!(f, "Counter({})", c.get()),
            Metric::Gauge(g) => write!(f, "Gauge({})", g.get()),
            Metric::Histogram(h) => write!(f, "Histogram({})", h.count()),
            Metric::Computed(_, kind) => write!(f, "Computed({kind})"),
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    help: String,
    labels: Vec<(String, String)>,
    metric: Metric,
}

/// The metrics of one server instance.
#[derive(Debug, Clone)]
pub struct Registry {
    prefix: String,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Registry {
    /// A registry whose metric names start with `prefix` (e.g. `im_msg_server`).
    pub fn new(prefix: &str) -> Self {
        Registry {
            prefix: prefix.to_owned(),
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn add(&self, name: &str, help: &str, labels: &[(&str, &str)], metric: Metric) -> Metric {
        let full = format!("{}_{}", self.prefix, name);
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Ok(mut e) = self.entries.lock() {
            // Registering the same series twice returns the existing one.
            if let Some(existing) = e.iter().find(|e| e.name == full && e.labels == labels) {
                return existing.metric.clone();
            }
            e.push(Entry {
                name: full,
                help: help.to_owned(),
                labels,
                metric: metric.clone(),
            });
        }
        metric
    }

    /// A counter named `<prefix>_<name>`.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// A counter with labels.
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.add(name, help, labels, Metric::Counter(Counter::default())) {
            Metric::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        match self.add(name, help, &[], Metric::Gauge(Gauge::default())) {
            Metric::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// A latency histogram (rendered in seconds).
    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.histogram_with(name, help, &[])
    }

    /// A latency histogram with labels.
    pub fn histogram_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        match self.add(name, help, labels, Metric::Histogram(Histogram::default())) {
            Metric::Histogram(h) => h,
            _ => Histogram::default(),
        }
    }

    /// A gauge (or counter, with `kind` "counter") computed at render time.
    pub fn computed(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.add(name, help, &[], Metric::Computed(Arc::new(f), kind));
    }

    /// Every counter and gauge as (name with labels, value, monotonic), for the admin
    /// snapshot's generic metric list.
    pub fn values(&self) -> Vec<(String, f64, bool)> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| {
                let name = format!("{}{}", e.name, label_text(&e.labels, None));
                match &e.metric {
                    Metric::Counter(c) => Some((name, c.get() as f64, true)),
                    Metric::Gauge(g) => Some((name, g.get() as f64, false)),
                    Metric::Computed(f, kind) => Some((name, f(), *kind == "counter")),
                    Metric::Histogram(_) => None,
                }
            })
            .collect()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = self.entries.lock() else {
            return out;
        };
        let mut last_name = "";
        for e in entries.iter() {
            let kind = match &e.metric {
                Metric::Counter(_) => "counter",
                Metric::Gauge(_) => "gauge",
                Metric::Histogram(_) => "histogram",
                Metric::Computed(_, k) => k,
            };
            if e.name != last_name {
                let _ = writeln!(out, "# HELP {} {}", e.name, e.help);
                let _ = writeln!(out, "# TYPE {} {}", e.name, kind);
                last_name = &e.name;
            }
            match &e.metric {
                Metric::Counter(c) => {
                    let _ = writeln!(out, "{}{} {}", e.name, label_text(&e.labels, None), c.get());
                }
                Metric::Gauge(g) => {
                    let _ = writeln!(out, "{}{} {}", e.name, label_text(&e.labels, None), g.get());
                }
                Metric::Computed(f, _) => {
                    let _ = writeln!(out, "{}{} {}", e.name, label_text(&e.labels, None), f());
                }
                Metric::Histogram(h) => render_histogram(&mut out, &e.name, &e.labels, h),
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &[(String, String)], h: &Histogram) {
    let counts: Vec<u64> =
        h.0.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
    let mut cumulative = 0u64;
    for (i, c) in counts.iter().enumerate() {
        cumulative += c;
        // One `le` line per power of two keeps the output short; the counts are cumulative
        // so any subset of boundaries is exact.
        if i % SUB_BUCKETS == 0 && i + 1 < BUCKETS {
            let le = format!("{}", bucket_bound(i) / 1e6);
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                label_text(labels, Some(&le))
            );
        }
    }
    let total = h.count();
    let _ = writeln!(
        out,
        "{name}_bucket{} {total}",
        label_text(labels, Some("+Inf"))
    );
    let sum = h.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{} {sum}", label_text(labels, None));
    let _ = writeln!(out, "{name}_count{} {total}", label_text(labels, None));
}

fn label_text(labels: &[(String, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record_us(us);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max_us, 1000);
        assert!((500..=600).contains(&s.p50_us), "{s:?}");
        assert!((990..=1000).contains(&s.p99_us), "{s:?}");
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new("im_test");
        let c = r.counter("msgs_in_total", "Messages received.");
        c.add(3);
        let by_cmd = r.counter_with(
            "requests_total",
            "Requests.",
            &[("command", "CID_MSG_DATA")],
        );
        by_cmd.inc();
        r.gauge("queue_depth", "Queued PDUs.").set(7);
        r.histogram("ack_seconds", "Send to ack.")
            .record(Duration::from_millis(2));
        r.computed("open_connections", "Open.", "gauge", || 42.0);
        // Same series again: same counter.
        r.counter("msgs_in_total", "Messages received.").inc();
        let text = r.render();
        assert!(
            text.contains("# TYPE im_test_msgs_in_total counter\nim_test_msgs_in_total 4\n"),
            "{text}"
        );
        assert!(
            text.contains("im_test_requests_total{command=\"CID_MSG_DATA\"} 1"),
            "{text}"
        );
        assert!(text.contains("im_test_queue_depth 7"), "{text}");
        assert!(
            text.contains("im_test_ack_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("im_test_ack_seconds_count 1"), "{text}");
        assert!(text.contains("im_test_open_connections 42"), "{text}");
        let values = r.values();
        assert!(values.contains(&("im_test_msgs_in_total".to_owned(), 4.0, true)));
    }
}
