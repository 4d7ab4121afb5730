//! What every request shares: the links, the message cipher, the counters.

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use im_proto::Pdu;
use im_proto::crypto::MessageCipher;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::upstream::{DbPool, RouteLinks};

/// The server's shared state.
#[derive(Debug)]
pub struct Server {
    /// Configuration.
    pub config: Config,
    /// db_proxy links.
    pub db: DbPool,
    /// route_server links.
    pub routes: RouteLinks,
    /// The `aes_key` cipher for SendMessage.
    pub cipher: MessageCipher,
    /// Counters.
    pub metrics: Metrics,
    /// The last discovery answer and when it was made.
    pub discovery: Mutex<Option<(Instant, Bytes)>>,
}

impl Server {
    /// Sends a notify or a stored message to route_server; counted either way. A PDU that finds
    /// no route_server is lost for live delivery only: what it announces is stored already,
    /// and clients read it at their next sync.
    pub async fn route(&self, pdu: &Pdu) {
        if self.routes.send(pdu).await {
            self.metrics.routed.inc();
        } else {
            self.metrics.route_unsent.inc();
            tracing::warn!(
                cmd = pdu.command_name(),
                "no route_server link: the change is stored but not delivered live"
            );
        }
    }
}
