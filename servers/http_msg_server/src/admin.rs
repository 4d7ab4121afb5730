//! The admin port's http_msg_server answers: stats (links and counters).

use std::sync::Arc;

use im_common::admin::AdminService;
use im_common::upstream::{LinkState, LinkStatus};
use im_proto::admin::{self, Metric, ServerState, ServerStats, UpstreamLink};
use tokio_util::sync::CancellationToken;

use crate::server::Server;

/// http_msg_server's [`AdminService`]; every other admin command is `ADMIN_UNSUPPORTED`.
pub(crate) struct Admin {
    pub server: Arc<Server>,
    pub listen_addr: String,
    pub shutdown: CancellationToken,
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

impl AdminService for Admin {
    fn kind(&self) -> &'static str {
        "http_msg_server"
    }

    fn name(&self) -> String {
        self.server.config.display_name()
    }

    async fn stats(&self) -> ServerStats {
        let s = &self.server;
        ServerStats {
            state: Some(if self.shutdown.is_cancelled() {
                ServerState::Stopping
            } else {
                ServerState::Up
            } as i32),
            listen_addr: Some(self.listen_addr.clone()),
            msgs_in_total: Some(s.metrics.messages_sent.get()),
            routed_out_total: Some(s.metrics.routed.get()),
            upstreams: s
                .db
                .status()
                .into_iter()
                .chain(s.routes.status())
                .map(link)
                .collect(),
            metrics: s
                .metrics
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
