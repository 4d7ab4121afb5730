//! Links to every route_server (FLOWS.md 1.2, 1.4; Decisions 7).
//!
//! Registration on every connect: IMOnlineUserInfo with every authenticated connection, then
//! IMRoleSet. The *routing target* is the live link connected longest (the original's
//! "master"); PDUs "to route" go to it, status updates go to every live link.
//!
//! The resend window: every windowed PDU sent to route in the last `route_resend_window_secs`
//! is kept with its send time. When the target changes or a link (re)registers, the window is
//! sent again through the current target, and once more a little later so that msg_servers
//! that re-register after us get it too; receivers drop duplicate messages by (session,
//! msg_id). While no link is up, PDUs wait in the window and go out when one comes up. This
//! is what lets a route_server restart lose nothing that was acked meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::Pdu;
use im_proto::client::{ClientError, ClientTls, ImClient};
use im_proto::server::{ImOnlineUserInfo, ImRoleSet};

use crate::metrics::Metrics;
use crate::server::Server;
use crate::upstream::push_now;

/// Delay of the second resend after a registration: covers the other msg_servers'
/// reconnect backoff (at most about 1.2 s by default, Decisions 3).
const SECOND_PASS: Duration = Duration::from_secs(2);

/// Windowed PDUs kept at most while no route_server is reachable (bounds memory).
const MAX_WINDOW_PDUS: usize = 200_000;

struct Live {
    client: ImClient,
    since: Instant,
}

struct Inner {
    live: Vec<Option<Live>>,
    target: Option<usize>,
    window: VecDeque<(Instant, Bytes)>,
}

/// The route_server links.
pub struct RouteLinks {
    links: Vec<Upstream>,
    inner: Mutex<Inner>,
    /// Next stamp for routed notifies ([`crate::wire::stamp`]).
    next_stamp: AtomicU32,
    keep: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for RouteLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLinks")
            .field("links", &self.links.len())
            .finish()
    }
}

struct RouteHandler {
    idx: usize,
    server: Weak<Server>,
}

impl UpstreamHandler for RouteHandler {
    async fn on_connect(&self, link: &ImClient) -> Result<(), ClientError> {
        let Some(s) = self.server.upgrade() else {
            // Still starting (or stopping): try again shortly.
            return Err(ClientError::Closed);
        };
        // Under the presence gate, so that no status update slips between the snapshot and
        // the link becoming live (route_server would count that connection twice).
        let _gate = s.presence_gate();
        let info = ImOnlineUserInfo {
            user_stat_list: s.sessions.snapshot(),
        };
        let users = info.user_stat_list.len();
        if !push_now(link, Pdu::from_msg(&info, 0).to_frame()) {
            return Err(ClientError::Closed);
        }
        s.routes.went_live(self.idx, link.clone());
        tracing::info!(
            link = self.idx,
            connections = users,
            "registered with route_server"
        );
        drop(_gate);
        let weak = self.server.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_PASS).await;
            if let Some(s) = weak.upgrade() {
                s.routes.resend_window();
            }
        });
        Ok(())
    }

    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        if let Some(s) = self.server.upgrade() {
            crate::routed::handle(&s, pdu).await;
        }
    }

    async fn on_disconnect(&self) {
        if let Some(s) = self.server.upgrade() {
            s.routes.went_down(self.idx);
        }
    }
}

impl RouteLinks {
    /// Opens a link to each address.
    // Each argument is one independent setting, passed once from Server::start.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        addrs: &[String],
        keep: Duration,
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        timeout: Duration,
        metrics: Metrics,
        server: &Weak<Server>,
        shutdown: &CancellationToken,
    ) -> Self {
        let links: Vec<Upstream> = addrs
            .iter()
            .enumerate()
            .map(|(idx, addr)| {
                let mut o = UpstreamOptions::new("route_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                o.request_timeout = timeout;
                let h = Arc::new(RouteHandler {
                    idx,
                    server: server.clone(),
                });
                Upstream::spawn(o, h, shutdown.clone())
            })
            .collect();
        RouteLinks {
            inner: Mutex::new(Inner {
                live: links.iter().map(|_| None).collect(),
                target: None,
                window: VecDeque::new(),
            }),
            links,
            // Random start: a restarted msg_server does not repeat the stamps that the
            // receivers of its previous life still remember.
            next_stamp: AtomicU32::new(rand::random()),
            keep,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when no route_server is configured (a lone msg_server).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Link snapshots for admin stats.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(Upstream::status).collect()
    }

    /// The current routing target, for requests (IMUsersStatReq, locate).
    pub fn target(&self) -> Option<ImClient> {
        let g = self.lock();
        g.target
            .and_then(|t| g.live[t].as_ref())
            .map(|l| l.client.clone())
    }

    fn elect(g: &mut Inner) -> Option<usize> {
        g.live
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.as_ref()
                    .filter(|l| !l.client.is_closed())
                    .map(|l| (i, l.since))
            })
            .min_by_key(|(_, since)| *since)
            .map(|(i, _)| i)
    }

    fn prune(&self, g: &mut Inner) {
        let now = Instant::now();
        while let Some((t, _)) = g.window.front() {
            if now.duration_since(*t) <= self.keep && g.window.len() <= MAX_WINDOW_PDUS {
                break;
            }
            g.window.pop_front();
            if g.target.is_none() {
                self.metrics.route_dropped.inc();
            }
        }
    }

    fn resend_locked(&self, g: &mut Inner) {
        self.prune(g);
        let Some(t) = g.target else { return };
        let Some(live) = g.live[t].as_ref() else {
            return;
        };
        let mut n = 0u64;
        for (_, frame) in &g.window {
            if push_now(&live.client, frame.clone()) {
                n += 1;
            }
        }
        self.metrics.route_resends.add(n);
        self.metrics.routed_out.add(n);
        if n > 0 {
            tracing::info!(link = t, pdus = n, "resent the route window");
        }
    }

    /// Link `idx` registered: elect, tell each link its role, resend the window.
    fn went_live(&self, idx: usize, client: ImClient) {
        let mut g = self.lock();
        g.live[idx] = Some(Live {
            client: client.clone(),
            since: Instant::now(),
        });
        let old = g.target;
        g.target = Self::elect(&mut g);
        let master = u32::from(g.target == Some(idx));
        push_now(&client, Pdu::from_msg(&ImRoleSet { master }, 0).to_frame());
        if g.target != old {
            tracing::info!(link = ?g.target, "route target changed");
        }
        self.resend_locked(&mut g);
    }

    /// Link `idx` dropped: elect a new target if it was the target, and resend through it.
    fn went_down(&self, idx: usize) {
        let mut g = self.lock();
        g.live[idx] = None;
        if g.target != Some(idx) {
            return;
        }
        g.target = Self::elect(&mut g);
        tracing::warn!(link = idx, new_target = ?g.target, "route target lost");
        if let Some(t) = g.target
            && let Some(l) = g.live[t].as_ref()
        {
            push_now(
                &l.client,
                Pdu::from_msg(&ImRoleSet { master: 1 }, 0).to_frame(),
            );
        }
        self.resend_locked(&mut g);
    }

    /// Resends the window through the target (the delayed second pass).
    pub fn resend_window(&self) {
        let mut g = self.lock();
        self.resend_locked(&mut g);
    }

    /// Sends a PDU "to route": to the target; `windowed` ones are kept for resending (and
    /// wait in the window while no link is up). Only messages (de-duplicated by session and
    /// msg_id) are windowed this way; notifies go through [`RouteLinks::send_notify`].
    pub fn send(&self, frame: Bytes, windowed: bool) {
        if self.links.is_empty() {
            return;
        }
        let mut g = self.lock();
        if windowed {
            self.prune(&mut g);
            g.window.push_back((Instant::now(), frame.clone()));
        }
        let Some(t) = g.target else { return };
        if let Some(l) = g.live[t].as_ref()
            && push_now(&l.client, frame)
        {
            self.metrics.routed_out.inc();
        }
    }

    /// Sends a notify "to route", windowed and stamped so that receivers drop the copies
    /// that resends produce.
    pub fn send_notify(&self, mut pdu: Pdu) {
        let mut n = 0;
        while n == 0 {
            n = self.next_stamp.fetch_add(1, Ordering::Relaxed);
        }
        crate::wire::stamp(&mut pdu, n);
        self.send(pdu.to_frame(), true);
    }

    /// Sends a PDU to every live link (status updates, FLOWS.md 1.2). Callers hold the
    /// presence gate.
    pub fn send_all(&self, frame: &Bytes) {
        let g = self.lock();
        for l in g.live.iter().flatten() {
            if push_now(&l.client, frame.clone()) {
                self.metrics.routed_out.inc();
            }
        }
    }

    /// Number of live links.
    pub fn live_count(&self) -> usize {
        self.lock().live.iter().flatten().count()
    }
}
