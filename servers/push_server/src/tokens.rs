//! Dead-token removal through db_proxy.
//!
//! The original ignored APNs feedback, so dead tokens were pushed forever (WEAKNESSES 53).
//! Here a token a provider reports dead (APNs 410 Unregistered or 400 BadDeviceToken, FCM
//! UNREGISTERED, webhook 410) is removed with our `IMAdminRemoveTokenReq{user_id, token}`,
//! sent on a db_proxy server link (its main port, the one msg_servers use). db_proxy removes
//! the token only if it is still that user's token (compare-and-delete), so a token the user
//! registered again in the meantime is never removed. One task owns the removals, fed by a
//! bounded channel; removals are rare and each is one small request.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_common::CancellationToken;
use im_common::backoff::BackoffConfig;
use im_common::upstream::{LinkStatus, Upstream, UpstreamHandler, UpstreamOptions};
use im_proto::admin::{AdminResult, ImAdminRemoveTokenReq, ImAdminRemoveTokenRsp};
use im_proto::client::{ClientTls, ImClient};
use im_proto::{Pdu, cid};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::config::{DbProxyConfig, ProviderKind};
use crate::metrics::Metrics;

/// Removals waiting for db_proxy; beyond that they are dropped and counted (the token
/// will be reported dead again at its next push).
const REMOVAL_QUEUE: usize = 4096;
/// How long a handled token is not asked about again: several queued pushes to one dead
/// token all come back dead within moments. Bounded in time, so that a token registered
/// again later is removed again.
const RECENT_FOR: Duration = Duration::from_secs(60);
/// Rounds over the links before a removal is given up.
const ROUNDS: u32 = 3;

struct DeadToken {
    user_id: u32,
    token: String,
    provider: ProviderKind,
}

/// Where dead tokens are reported.
#[derive(Clone)]
pub struct DeadTokens {
    tx: Option<mpsc::Sender<DeadToken>>,
    links: Arc<Vec<Upstream>>,
    metrics: Metrics,
}

impl std::fmt::Debug for DeadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadTokens")
            .field("links", &self.links.len())
            .finish()
    }
}

/// Why a removal failed.
#[derive(Debug, Error)]
enum RemovalError {
    #[error("no db_proxy link answered")]
    NoAnswer,
    #[error("db_proxy does not support IMAdminRemoveTokenReq on this port")]
    Unsupported,
    #[error("db_proxy refused it (result {0})")]
    Refused(i32),
}

struct DbLink;

impl UpstreamHandler for DbLink {
    async fn on_pdu(&self, _link: &ImClient, pdu: Pdu) {
        // db_proxy's heartbeats are handled by the link; a stop-receive notice (db_proxy
        // shutting down) needs nothing: the next removal tries another link.
        tracing::debug!(cmd = pdu.command_name(), "db_proxy PDU ignored");
    }
}

impl DeadTokens {
    /// Opens a link to each db_proxy address and starts the removal task on `tasks` (no
    /// addresses: dead tokens are only counted).
    pub fn start(
        cfg: &DbProxyConfig,
        backoff: BackoffConfig,
        metrics: Metrics,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> DeadTokens {
        Self::start_with_tls(cfg, backoff, &None, metrics, shutdown, tasks)
    }

    /// [`DeadTokens::start`] with the TLS setting of `tls://` db_proxy addresses.
    pub fn start_with_tls(
        cfg: &DbProxyConfig,
        backoff: BackoffConfig,
        tls: &Option<ClientTls>,
        metrics: Metrics,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> DeadTokens {
        let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
        let links: Vec<Upstream> = cfg
            .addresses
            .iter()
            .map(|addr| {
                let mut o = UpstreamOptions::new("db_proxy_server", vec![addr.clone()]);
                o.backoff = backoff;
                o.tls = tls.clone();
                o.request_timeout = timeout;
                // db_proxy does not echo heartbeats: no round-trip probe.
                o.rtt_probe = None;
                Upstream::spawn(o, Arc::new(DbLink), shutdown.clone())
            })
            .collect();
        let links = Arc::new(links);
        let tx = if links.is_empty() {
            None
        } else {
            let (tx, rx) = mpsc::channel(REMOVAL_QUEUE);
            tasks.spawn(remover(
                rx,
                links.clone(),
                timeout,
                metrics.clone(),
                shutdown.clone(),
            ));
            Some(tx)
        };
        DeadTokens { tx, links, metrics }
    }

    /// Asks for `token` of `user_id` to be removed (never waits).
    pub fn report(&self, user_id: u32, token: String, provider: ProviderKind) {
        let Some(tx) = &self.tx else {
            tracing::debug!(user_id, "dead token not removed: no db_proxy configured");
            return;
        };
        let dead = DeadToken {
            user_id,
            token,
            provider,
        };
        if tx.try_send(dead).is_err() {
            self.metrics.removal_failures.inc();
            tracing::warn!(user_id, "dead-token removal dropped: removal queue full");
        }
    }

    /// The db_proxy links, for admin stats.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links.iter().map(Upstream::status).collect()
    }
}

async fn remover(
    mut rx: mpsc::Receiver<DeadToken>,
    links: Arc<Vec<Upstream>>,
    timeout: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut recent: VecDeque<(Instant, (u32, String))> = VecDeque::new();
    let mut seen: HashSet<(u32, String)> = HashSet::new();
    loop {
        let d = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            d = rx.recv() => match d {
                Some(d) => d,
                None => return,
            },
        };
        while let Some((at, _)) = recent.front()
            && at.elapsed() >= RECENT_FOR
        {
            if let Some((_, old)) = recent.pop_front() {
                seen.remove(&old);
            }
        }
        let key = (d.user_id, d.token);
        if seen.contains(&key) {
            continue;
        }
        let (user_id, provider) = (d.user_id, d.provider.name());
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = remove(&links, key.0, &key.1, timeout) => r,
        };
        match result {
            Ok(true) => {
                metrics.tokens_removed.inc();
                tracing::info!(user_id, provider, "dead token removed");
            }
            Ok(false) => {
                metrics.tokens_kept.inc();
                tracing::info!(
                    user_id,
                    provider,
                    "dead token not removed: the user has another token now"
                );
            }
            Err(e) => {
                metrics.removal_failures.inc();
                tracing::warn!(user_id, provider, error = %e, "dead token not removed");
                continue;
            }
        }
        seen.insert(key.clone());
        recent.push_back((Instant::now(), key));
    }
}

/// One compare-and-delete, tried on each connected link, a few rounds.
async fn remove(
    links: &[Upstream],
    user_id: u32,
    token: &str,
    timeout: Duration,
) -> Result<bool, RemovalError> {
    let req = ImAdminRemoveTokenReq {
        user_id: Some(user_id),
        token: Some(token.to_owned()),
    };
    for round in 0..ROUNDS {
        for link in links {
            if !link.is_connected() {
                continue;
            }
            let answer = link
                .request_timeout(
                    Pdu::from_msg(&req, 0),
                    cid::CID_ADMIN_REMOVE_TOKEN_RSP,
                    timeout,
                )
                .await;
            let rsp = match answer.map(|p| p.decode::<ImAdminRemoveTokenRsp>()) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "undecodable IMAdminRemoveTokenRsp");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no IMAdminRemoveTokenRsp");
                    continue;
                }
            };
            return match rsp.result_code.unwrap_or(AdminResult::AdminOk as i32) {
                c if c == AdminResult::AdminOk as i32 => Ok(rsp.removed.unwrap_or(false)),
                // Unknown user or no token: nothing left to remove.
                c if c == AdminResult::AdminNotFound as i32 => Ok(false),
                c if c == AdminResult::AdminUnsupported as i32 => Err(RemovalError::Unsupported),
                c => Err(RemovalError::Refused(c)),
            };
        }
        // No link answered: give the links time to come (back) up (they reconnect within
        // about a second, Decisions 3).
        tokio::time::sleep(Duration::from_millis(250 << round)).await;
    }
    Err(RemovalError::NoAnswer)
}
