//! The admin port: stats (queue depth, per-provider counters, dead tokens, db_proxy links)
//! and the link list.

use std::sync::Arc;

use im_common::ConnRegistry;
use im_common::admin::{AdminService, conn_list, unsupported};
use im_common::upstream::{LinkState, LinkStatus};
use im_proto::admin::{
    self, ClientTypeCount, ImAdminConnListReq, Metric, ServerState, ServerStats, UpstreamLink,
};
use im_proto::{Pdu, cid};
use tokio_util::sync::CancellationToken;

use crate::link::Intake;
use crate::tokens::DeadTokens;

/// push_server's [`AdminService`].
#[derive(Debug)]
pub struct PushAdmin {
    /// Configured name.
    pub name: String,
    /// Main listen address.
    pub listen_addr: String,
    /// The msg_server links.
    pub links: ConnRegistry,
    /// Queue and counters.
    pub intake: Arc<Intake>,
    /// db_proxy links.
    pub dead: DeadTokens,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

impl AdminService for PushAdmin {
    fn kind(&self) -> &'static str {
        "push_server"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn stats(&self) -> ServerStats {
        let q = &self.intake.queue;
        let m = &self.intake.metrics;
        ServerStats {
            state: Some(if self.shutdown.is_cancelled() {
                ServerState::Stopping as i32
            } else {
                ServerState::Up as i32
            }),
            listen_addr: Some(self.listen_addr.clone()),
            // Links are msg_servers, not clients: client type 0.
            connections: vec![ClientTypeCount {
                client_type: Some(0),
                count: Some(self.links.len() as u32),
            }],
            outbound_queue_depth: Some(q.depth() as u64),
            slow_consumer_disconnects_total: Some(
                self.links
                    .stats()
                    .slow_consumers
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            upstreams: self.dead.links().into_iter().map(link).collect(),
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

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        match pdu.command_id() {
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                Some(pdu.reply(&conn_list(&self.links, &req)))
            }
            _ => unsupported(pdu),
        }
    }
}

fn link(l: LinkStatus) -> UpstreamLink {
    UpstreamLink {
        kind: Some(l.kind.to_owned()),
        addr: Some(l.addr),
        state: Some(match l.state {
            LinkState::Connected => admin::LinkState::Connected as i32,
            LinkState::Connecting => admin::LinkState::Connecting as i32,
            LinkState::Down => admin::LinkState::Down as i32,
        }),
        rtt_micros: Some(l.rtt.map_or(0, |d| d.as_micros() as u64)),
        pdus_in_total: Some(l.pdus_in),
        pdus_out_total: Some(l.pdus_out),
        reconnects_total: Some(l.reconnects),
        state_age_ms: Some(l.state_age.as_millis() as u64),
        queue_depth: Some(l.queue_depth as u64),
    }
}
