//! msfs's counters (Prometheus `/metrics` and the admin snapshot).

use std::sync::Arc;

use im_common::metrics::{Counter, Registry};

use crate::store::FileStore;

/// Reasons an upload is refused (label `reason`).
const UPLOAD_REFUSALS: [&str; 4] = ["token", "too_large", "format", "disk"];

/// Reasons a download is refused (label `reason`).
const DOWNLOAD_REFUSALS: [&str; 4] = ["not_found", "malformed", "range", "disk"];

/// The counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Files stored.
    pub uploads: Counter,
    /// Bytes of the files stored.
    pub upload_bytes: Counter,
    /// Downloads started (200 and 206).
    pub downloads: Counter,
    /// Bytes sent by downloads.
    pub download_bytes: Counter,
    upload_refusals: Vec<(&'static str, Counter)>,
    download_refusals: Vec<(&'static str, Counter)>,
}

impl Metrics {
    /// Registers the counters; the stored-file gauges read `store`.
    pub fn new(store: Arc<dyn Fn() -> (u64, u64) + Send + Sync>) -> Self {
        let registry = Registry::new("im_msfs");
        let refusals = |name: &str, help: &str, reasons: &[&'static str]| {
            reasons
                .iter()
                .map(|r| (*r, registry.counter_with(name, help, &[("reason", r)])))
                .collect()
        };
        let files = store.clone();
        registry.computed(
            "files",
            "Files allocated in the data directory so far (the directory counter).",
            "gauge",
            move || files().0 as f64,
        );
        registry.computed(
            "stored_bytes",
            "Bytes of the files stored in the data directory.",
            "gauge",
            move || store().1 as f64,
        );
        Metrics {
            uploads: registry.counter("uploads_total", "Files stored."),
            upload_bytes: registry.counter("upload_bytes_total", "Bytes of the files stored."),
            downloads: registry.counter("downloads_total", "Downloads served (200 or 206)."),
            download_bytes: registry.counter("download_bytes_total", "Bytes sent by downloads."),
            upload_refusals: refusals(
                "uploads_refused_total",
                "Uploads answered with an error, by reason.",
                &UPLOAD_REFUSALS,
            ),
            download_refusals: refusals(
                "downloads_refused_total",
                "Downloads answered with an error, by reason.",
                &DOWNLOAD_REFUSALS,
            ),
            registry,
        }
    }

    /// Counters reading a [`FileStore`].
    pub fn for_store(store: &Arc<FileStore>) -> Self {
        let s = Arc::downgrade(store);
        Metrics::new(Arc::new(move || {
            s.upgrade().map_or((0, 0), |s| {
                let c = s.counters();
                (c.file_cnt, c.bytes_stored)
            })
        }))
    }

    /// Counts a refused upload.
    pub fn upload_refused(&self, reason: &str) {
        if let Some((_, c)) = self.upload_refusals.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }

    /// Counts a refused download.
    pub fn download_refused(&self, reason: &str) {
        if let Some((_, c)) = self.download_refusals.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}
