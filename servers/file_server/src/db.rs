//! The db_proxy link: only to delete the IMTransmitFile records of offline files removed
//! after their retention (IMFileDelOfflineReq, which db_proxy never answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::client::{ClientError, ClientTls, ImClient};
use im_proto::file::ImFileDelOfflineReq;
use im_proto::{Pdu, cid};

/// One link to the first db_proxy_server that answers, failing over along the list.
#[derive(Debug)]
pub struct DbLink {
    up: Upstream,
    stopped: Arc<AtomicBool>,
}

struct DbHandler {
    stopped: Arc<AtomicBool>,
}

impl UpstreamHandler for DbHandler {
    async fn on_connect(&self, _link: &ImClient) -> Result<(), ClientError> {
        self.stopped.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        if pdu.command_id() == cid::CID_OTHER_STOP_RECV_PACKET {
            // FLOWS.md 1.5: db_proxy is shutting down; wait for the reconnect.
            self.stopped.store(true, Ordering::Relaxed);
        }
    }
}

impl DbLink {
    /// Starts the link (it runs until `shutdown`).
    pub fn spawn(
        addrs: Vec<String>,
        backoff: BackoffConfig,
        tls: Option<ClientTls>,
        shutdown: CancellationToken,
    ) -> Self {
        let stopped = Arc::new(AtomicBool::new(false));
        let mut o = UpstreamOptions::new("db_proxy_server", addrs);
        o.backoff = backoff;
        o.tls = tls;
        let handler = Arc::new(DbHandler {
            stopped: stopped.clone(),
        });
        DbLink {
            up: Upstream::spawn(o, handler, shutdown),
            stopped,
        }
    }

    /// Queues the deletion of a record; `false` when no link can take it now (the caller
    /// keeps the file and tries again at the next sweep).
    pub async fn delete_record(&self, from: u32, to: u32, task_id: &str) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let req = ImFileDelOfflineReq {
            from_user_id: from,
            to_user_id: to,
            task_id: task_id.to_owned(),
        };
        self.up.send(&Pdu::from_msg(&req, 0)).await.is_ok()
    }

    /// Waits until the link is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: std::time::Duration) -> bool {
        self.up.wait_connected(timeout).await
    }

    /// Link snapshot for admin stats.
    pub fn status(&self) -> LinkStatus {
        self.up.status()
    }
}
