//! Links to push_server (FLOWS.md 1.2, 15): requests go to the first connected one; its
//! answers are only logged.

use std::sync::Arc;

use bytes::Bytes;
use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::client::{ClientTls, ImClient};
use im_proto::server::ImPushToUserRsp;
use im_proto::{Pdu, cid};

use crate::upstream::push_now;

/// The push_server links.
#[derive(Debug)]
pub struct PushLinks {
    links: Vec<Upstream>,
}

struct PushHandler;

impl UpstreamHandler for PushHandler {
    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        if pdu.command_id() == cid::CID_OTHER_PUSH_TO_USER_RSP {
            match pdu.decode::<ImPushToUserRsp>() {
                Ok(rsp) => {
                    let failed = rsp
                        .push_result_list
                        .iter()
                        .filter(|r| r.result_code != 0)
                        .count();
                    tracing::debug!(
                        targets = rsp.push_result_list.len(),
                        failed,
                        "push answered"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "undecodable push answer"),
            }
        }
    }
}

impl PushLinks {
    /// Opens a link to each address (none: push disabled).
    pub fn spawn(
        addrs: &[String],
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        shutdown: &CancellationToken,
    ) -> Self {
        let links = addrs
            .iter()
            .map(|addr| {
                let mut o = UpstreamOptions::new("push_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                Upstream::spawn(o, Arc::new(PushHandler), shutdown.clone())
            })
            .collect();
        PushLinks { links }
    }

    /// True when push is configured at all.
    pub fn is_configured(&self) -> bool {
        !self.links.is_empty()
    }

    /// Sends to the first connected push_server; `false` if none is.
    pub fn send(&self, frame: Bytes) -> bool {
        self.links
            .iter()
            .find_map(Upstream::client)
            .is_some_and(|c| push_now(&c, frame))
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(Upstream::status).collect()
    }
}
