//! The admin port: stats (transfers, bytes, tasks, offline files, links) and the client
//! connection list (IM.Admin, our extension).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use im_common::admin::{AdminService, conn_list, unsupported};
use im_common::upstream::{LinkState as UpState, LinkStatus};
use im_proto::admin::{
    ClientTypeCount, ImAdminConnListReq, LinkState, Metric, ServerState, ServerStats, UpstreamLink,
};
use im_proto::{Pdu, cid};

use crate::state::Shared;

/// file_server's [`AdminService`].
#[derive(Debug)]
pub struct FileAdmin {
    shared: Arc<Shared>,
}

impl FileAdmin {
    /// The admin service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        FileAdmin { shared }
    }
}

fn link(l: LinkStatus) -> UpstreamLink {
    UpstreamLink {
        kind: Some(l.kind.to_owned()),
        addr: Some(l.addr),
        state: Some(match l.state {
            UpState::Connected => LinkState::Connected,
            UpState::Connecting => LinkState::Connecting,
            UpState::Down => LinkState::Down,
        } as i32),
        rtt_micros: Some(l.rtt.map_or(0, |d| d.as_micros() as u64)),
        pdus_in_total: Some(l.pdus_in),
        pdus_out_total: Some(l.pdus_out),
        reconnects_total: Some(l.reconnects),
        state_age_ms: Some(l.state_age.as_millis() as u64),
        queue_depth: Some(l.queue_depth as u64),
    }
}

/// The stats snapshot: transfers in `msgs_*` would mislead, so file_server's numbers are in
/// the named metrics (transfers active/completed, bytes in/out, tasks, offline files).
pub fn stats(s: &Shared) -> ServerStats {
    let conns = s.clients.all();
    let depths: Vec<u64> = conns.iter().map(|c| c.queue_depth() as u64).collect();
    let metrics = s
        .metrics
        .registry
        .values()
        .into_iter()
        .map(|(name, value, monotonic)| Metric {
            name: Some(name),
            value: Some(value),
            monotonic: Some(monotonic),
        })
        .collect();
    ServerStats {
        state: Some(if s.shutdown.is_cancelled() {
            ServerState::Stopping as i32
        } else {
            ServerState::Up as i32
        }),
        listen_addr: Some(s.client_addr.to_string()),
        connections: vec![ClientTypeCount {
            client_type: Some(0),
            count: Some(conns.len() as u32),
        }],
        logins_total: Some(s.metrics.logins.get()),
        login_failures_total: Some(s.metrics.login_refusals.get()),
        outbound_queue_depth: Some(depths.iter().sum()),
        outbound_queue_max: Some(depths.iter().copied().max().unwrap_or(0)),
        slow_consumer_disconnects_total: Some(
            s.clients.stats().slow_consumers.load(Ordering::Relaxed),
        ),
        upstreams: s.db.iter().map(|d| link(d.status())).collect(),
        metrics,
        table_size: Some(s.tasks.len() as u64),
        ..Default::default()
    }
}

impl AdminService for FileAdmin {
    fn kind(&self) -> &'static str {
        "file_server"
    }

    fn name(&self) -> String {
        self.shared.name.clone()
    }

    async fn stats(&self) -> ServerStats {
        stats(&self.shared)
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        match pdu.command_id() {
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                Some(pdu.reply(&conn_list(&self.shared.clients, &req)))
            }
            _ => unsupported(pdu),
        }
    }
}
