//! Links to every login_server (FLOWS.md 3): registration with our addresses and load on
//! every connect, then one IMUserCntUpdate per connection that logs in or closes.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::Pdu;
use im_proto::admin::ImAdminMsgServTlsInfo;
use im_proto::client::{ClientError, ClientTls, ImClient};

use crate::server::Server;
use crate::upstream::push_now;

/// The login_server links.
pub struct LoginLinks {
    links: Vec<Upstream>,
    live: Mutex<Vec<Option<ImClient>>>,
}

impl std::fmt::Debug for LoginLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLinks")
            .field("links", &self.links.len())
            .finish()
    }
}

struct LoginHandler {
    idx: usize,
    server: Weak<Server>,
}

impl UpstreamHandler for LoginHandler {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        let Some(s) = self.server.upgrade() else {
            return Err(ClientError::Closed);
        };
        // Under the presence gate: the count we report and the updates that follow add up.
        let _gate = s.presence_gate();
        let info = s.serv_info();
        if !push_now(link, Pdu::from_msg(&info, 0).to_frame()) {
            return Err(ClientError::Closed);
        }
        // Our extension, only with a TLS port: stock setups see exactly the original traffic,
        // and an original login_server ignores the unknown command.
        if let Some(port) = s.cfg.tls_port {
            let tls = ImAdminMsgServTlsInfo {
                tls_port: Some(u32::from(port)),
            };
            if !push_now(link, Pdu::from_msg(&tls, 0).to_frame()) {
                return Err(ClientError::Closed);
            }
        }
        s.logins.set_live(self.idx, Some(link.clone()));
        tracing::info!(
            link = self.idx,
            cur_conn_cnt = info.cur_conn_cnt,
            max_conn_cnt = info.max_conn_cnt,
            "registered with login_server"
        );
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        tracing::debug!(cmd = pdu.command_name(), "login_server PDU ignored");
    }

    async fn on_disconnect(&self) {
        if let Some(s) = self.server.upgrade() {
            s.logins.set_live(self.idx, None);
        }
    }
}

impl LoginLinks {
    /// Opens a link to each address.
    pub fn spawn(
        addrs: &[String],
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        server: &Weak<Server>,
        shutdown: &CancellationToken,
    ) -> Self {
        let links: Vec<Upstream> = addrs
            .iter()
            .enumerate()
            .map(|(idx, addr)| {
                let mut o = UpstreamOptions::new("login_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                let h = Arc::new(LoginHandler {
                    idx,
                    server: server.clone(),
                });
                Upstream::spawn(o, h, shutdown.clone())
            })
            .collect();
        LoginLinks {
            live: Mutex::new(links.iter().map(|_| None).collect()),
            links,
        }
    }

    fn set_live(&self, idx: usize, client: Option<ImClient>) {
        let mut l = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = l.get_mut(idx) {
            *slot = client;
        }
    }

    /// Sends a frame to every registered login_server. Callers hold the presence gate.
    pub fn send_all(&self, frame: &Bytes) {
        let l = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for c in l.iter().flatten() {
            push_now(c, frame.clone());
        }
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(Upstream::status).collect()
    }
}
