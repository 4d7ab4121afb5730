//! The admin port: statistics (per-command requests, errors and latency; storage read and
//! write latency; links). User and group administration comes later; other commands are
//! answered "unsupported", except the connection list, which every server can give.

use std::sync::Arc;

use im_common::admin::{AdminService, conn_list, unsupported};
use im_proto::admin::{
    ClientTypeCount, ImAdminConnListReq, Metric, ServerState, ServerStats, StorageStats,
};
use im_proto::{Pdu, cid};

use crate::backend::Backend;
use crate::metrics::latency;
use crate::server::Shared;

/// db_proxy's [`AdminService`].
pub struct Admin<S> {
    /// Shared state.
    pub shared: Arc<Shared<S>>,
    /// Configured name.
    pub name: String,
    /// Main listen address.
    pub listen_addr: String,
}

impl<S: Backend> AdminService for Admin<S> {
    fn kind(&self) -> &'static str {
        "db_proxy_server"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn stats(&self) -> ServerStats {
        let sh = &self.shared;
        let m = &sh.metrics;
        let b = sh.store.backend_stats();
        ServerStats {
            state: Some(if sh.is_stopping() {
                ServerState::Stopping as i32
            } else {
                ServerState::Up as i32
            }),
            listen_addr: Some(self.listen_addr.clone()),
            // Links are msg_servers and http_msg_servers, not clients: client type 0.
            connections: vec![ClientTypeCount {
                client_type: Some(0),
                count: Some(sh.links.len() as u32),
            }],
            logins_total: Some(m.logins.get()),
            login_failures_total: Some(m.login_failures.get()),
            msgs_in_total: Some(m.messages_stored.get()),
            slow_consumer_disconnects_total: Some(
                sh.links
                    .stats()
                    .slow_consumers
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            storage: Some(StorageStats {
                backend: Some(S::BACKEND.to_owned()),
                cache: Some(S::CACHE.to_owned()),
                write_latency: Some(latency(&m.write_latency)),
                read_latency: Some(latency(&m.read_latency)),
                pool_in_use: b.pool_in_use,
                pool_size: b.pool_size,
                group_commits_total: Some(b.group_commits),
                writes_total: Some(b.writes),
            }),
            commands: m.command_stats(),
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
            ..ServerStats::default()
        }
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        match pdu.command_id() {
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                Some(pdu.reply(&conn_list(&self.shared.links, &req)))
            }
            _ => unsupported(pdu),
        }
    }
}
