//! Links to every file_server (FLOWS.md 1.2, 1.4, 14).
//!
//! On every connect the link asks for the addresses clients should use
//! (IMFileServerIPReq) and keeps the answer for that link (the original appended it on every
//! reconnect, growing the list). A task is created on a random live link (the next live one
//! when the pick is down), and the client is given that link's addresses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::metrics::Registry;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::Pdu;
use im_proto::base::IpAddr;
use im_proto::client::{ClientError, ClientTls, ImClient};
use im_proto::server::ImFileServerIpReq;

/// One file_server link and the addresses it gave.
#[derive(Debug, Clone)]
pub struct FileLink {
    /// The link.
    pub up: Upstream,
    addrs: Arc<Mutex<Vec<IpAddr>>>,
}

impl FileLink {
    /// The client addresses this file_server gave on its last connect.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

struct FileHandler {
    addrs: Arc<Mutex<Vec<IpAddr>>>,
    peer: String,
}

impl UpstreamHandler for FileHandler {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        let rsp = link.request(&ImFileServerIpReq {}).await?;
        tracing::info!(peer = %self.peer, addrs = rsp.ip_addr_list.len(),
            "file_server addresses received");
        if let Ok(mut a) = self.addrs.lock() {
            *a = rsp.ip_addr_list;
        }
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        // Answers to requests that timed out; file_server sends nothing else.
        tracing::debug!(peer = %self.peer, cmd = pdu.command_name(), "file_server PDU ignored");
    }
}

/// The file_server links (none configured: file requests are answered with a failure).
#[derive(Debug)]
pub struct FileLinks {
    links: Vec<FileLink>,
    next: AtomicUsize,
}

impl FileLinks {
    /// Opens a link to each address and registers the `file_server_links_up` gauge.
    pub fn spawn(
        addrs: &[String],
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        timeout: Duration,
        registry: &Registry,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let links: Vec<FileLink> = addrs
            .iter()
            .map(|addr| {
                let mut o = UpstreamOptions::new("file_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                o.request_timeout = timeout;
                let shared = Arc::new(Mutex::new(Vec::new()));
                let h = Arc::new(FileHandler {
                    addrs: shared.clone(),
                    peer: addr.clone(),
                });
                FileLink {
                    up: Upstream::spawn(o, h, shutdown.clone()),
                    addrs: shared,
                }
            })
            .collect();
        let files = Arc::new(FileLinks {
            links,
            next: AtomicUsize::new(rand::random::<u32>() as usize),
        });
        let weak = Arc::downgrade(&files);
        registry.computed(
            "file_server_links_up",
            "file_server links connected (with their client addresses).",
            "gauge",
            move || weak.upgrade().map_or(0.0, |f| f.live_count() as f64),
        );
        files
    }

    /// True when file_servers are configured at all.
    pub fn is_configured(&self) -> bool {
        !self.links.is_empty()
    }

    /// Number of connected links.
    pub fn live_count(&self) -> usize {
        self.links.iter().filter(|l| l.up.is_connected()).count()
    }

    /// A random connected link (FLOWS.md 1.2: the next one when the pick is down).
    pub fn pick(&self) -> Option<FileLink> {
        let n = self.links.len();
        if n == 0 {
            return None;
        }
        // A counter from a random start spreads tasks like a random pick, without a random
        // number per request.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.links[(start + i) % n])
            .find(|l| l.up.is_connected())
            .cloned()
    }

    /// The client addresses of some connected file_server (for offline file lists and
    /// notifies); empty when none is up.
    pub fn any_addrs(&self) -> Vec<IpAddr> {
        self.pick().map(|l| l.addrs()).unwrap_or_default()
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(|l| l.up.status()).collect()
    }
}
