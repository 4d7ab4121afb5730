//! The admin port's msfs answers: stats (files, bytes stored, uploads and downloads).

use std::sync::Arc;

use im_common::admin::AdminService;
use im_proto::admin::{Metric, ServerState, ServerStats, StorageStats};
use tokio_util::sync::CancellationToken;

use crate::service::App;

/// msfs's [`AdminService`]; every other admin command is `ADMIN_UNSUPPORTED`.
pub(crate) struct Admin {
    pub app: Arc<App>,
    pub listen_addr: String,
    pub shutdown: CancellationToken,
}

impl AdminService for Admin {
    fn kind(&self) -> &'static str {
        "msfs"
    }

    fn name(&self) -> String {
        self.app.config.display_name()
    }

    async fn stats(&self) -> ServerStats {
        let counters = self.app.store.counters();
        let m = &self.app.metrics;
        ServerStats {
            state: Some(if self.shutdown.is_cancelled() {
                ServerState::Stopping
            } else {
                ServerState::Up
            } as i32),
            listen_addr: Some(self.listen_addr.clone()),
            // Files in the data directory: what an operator sizes disks by.
            table_size: Some(counters.file_cnt),
            storage: Some(StorageStats {
                backend: Some("disk".to_owned()),
                writes_total: Some(m.uploads.get()),
                ..Default::default()
            }),
            metrics: m
                .registry
                .values()
                .into_iter()
                .map(|(name, value, monotonic)| Metric {
                    name: Some(name),
                    value: Some(value),
                    monotonic: Some(monotonic),
                })
                .collect(),
            ..Default::default()
        }
    }
}
