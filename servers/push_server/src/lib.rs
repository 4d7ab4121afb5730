//! push_server: takes msg_servers' pushes (IMPushToUserReq, FLOWS.md 15) and delivers them to
//! Apple (APNs over HTTP/2 with a `.p8` token key), Google (FCM HTTP v1 with a service
//! account) or a webhook, chosen by the token's client type.
//!
//! The original spoke Apple's retired binary protocol, refused everything but iOS, cut text
//! inside UTF-8 characters and never pruned dead tokens (WEAKNESSES 53). Here:
//!
//! * [`link`]: the msg_server links. Heartbeats are echoed; anything but heartbeat and
//!   CID_OTHER_PUSH_TO_USER_REQ closes the link (PROTOCOL.md 4.8). Each request is answered
//!   at once, one PushResult per token (0 queued, 1 refused).
//! * [`queue`]: a bounded queue, delivery workers, retries with backoff and jitter.
//! * [`providers`]: APNs, FCM and the webhook; [`payload`] builds what they are sent (the
//!   original's APNs JSON; alert text cut on a character boundary, or hidden entirely).
//! * [`tokens`]: dead tokens removed through db_proxy by compare-and-delete.
//! * [`admin`] and [`metrics`]: queue depth, per-provider sent/failed/retried, dead tokens.
//!
//! Push shield and night mute are decided upstream, where the original decides them
//! (msg_server and db_proxy, FLOWS.md 15.1-15.2).

pub mod admin;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod link;
pub mod metrics;
pub mod payload;
pub mod providers;
pub mod queue;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use im_common::http::{Health, serve_http};
use im_common::metrics::Registry;
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ConnRegistry, ServeOptions, serve_plain_and_tls};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::admin::PushAdmin;
use crate::link::{Intake, PushLink};
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::tokens::DeadTokens;

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// msg_server links (`listen`).
    pub msg_servers: TcpListener,
    /// The same over TLS (`tls_listen`), if enabled.
    pub msg_servers_tls: Option<TcpListener>,
    /// Admin port (`admin.listen`), if enabled.
    pub admin: Option<TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz` (`http.listen`), if enabled.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config` (empty admin/http addresses: not bound).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        use im_common::net::{bind, bind_optional};
        let msg_servers = bind("listen", &config.listen).await?;
        Ok(Listeners {
            msg_servers,
            msg_servers_tls: bind_optional("tls_listen", &config.tls_listen).await?,
            admin: bind_optional("admin.listen", &config.admin.listen).await?,
            metrics: bind_optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Runs push_server until `shutdown` is cancelled: stops taking pushes, delivers what is
/// queued (at most `shutdown_grace_ms`), then returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let listen = listeners.msg_servers.local_addr()?;
    let tls = tls_listener(&config.tls, listeners.msg_servers_tls, "tls_listen")?;
    let client_tls = config.client_tls()?;
    let providers = Arc::new(
        Providers::new(&config)
            .await
            .context("setting up the push providers")?,
    );
    for (client, kind) in [
        ("ios", config.providers.ios),
        ("android", config.providers.android),
        ("other", config.providers.other),
    ] {
        if kind != config::ProviderKind::None && !providers.has(kind) {
            tracing::warn!(
                client,
                provider = kind.name(),
                "provider not enabled: pushes for this client type are refused"
            );
        }
    }
    let registry = Registry::new("im_push_server");
    let metrics = Metrics::new(registry.clone());

    // Workers and the db_proxy links run until `stop`, cancelled after the queue drained.
    let stop = CancellationToken::new();
    let background = TaskTracker::new();
    let dead = DeadTokens::start_with_tls(
        &config.db_proxy,
        config.backoff,
        &client_tls,
        metrics.clone(),
        &stop,
        &background,
    );
    let queue = queue::start(
        &config,
        providers.clone(),
        metrics.clone(),
        dead.clone(),
        stop.clone(),
        &background,
    );
    let intake = Arc::new(Intake::new(
        &config,
        queue.clone(),
        providers.clone(),
        metrics,
    ));
    register_gauges(&registry, &intake);

    let links = ConnRegistry::new();
    let side = TaskTracker::new();
    if let Some(listener) = listeners.admin {
        let service = Arc::new(PushAdmin {
            name: config.display_name(listen),
            listen_addr: listen.to_string(),
            links: links.clone(),
            intake: intake.clone(),
            dead: dead.clone(),
            shutdown: shutdown.clone(),
        });
        side.spawn(im_common::admin::serve_admin(
            listener,
            config.admin.token.clone(),
            service,
            shutdown.clone(),
        ));
    }
    let health = Health::new();
    if let Some(listener) = listeners.metrics {
        let (registry, health, shutdown) = (registry.clone(), health.clone(), shutdown.clone());
        side.spawn(async move {
            if let Err(e) = serve_http(listener, registry, health, shutdown).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    health.set_ready();
    tracing::info!(name = %config.display_name(listen), %listen, ?providers,
        hide_message_text = config.hide_message_text, "push_server started");

    let mut opts = ServeOptions::server("msg_server");
    // The msg_server sends heartbeats and push_server echoes them, never sending its own;
    // a link idle for 30 s is closed (FLOWS.md 1.1).
    opts.echo_heartbeat = true;
    opts.heartbeat_when_idle = None;
    let handler_intake = intake.clone();
    serve_plain_and_tls(
        listeners.msg_servers,
        tls,
        opts,
        links,
        shutdown.clone(),
        move |_conn| PushLink::new(handler_intake.clone()),
    )
    .await;

    health.set_not_ready("shutting down");
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    if !queue.drain(grace).await {
        tracing::warn!(
            queued = queue.depth(),
            in_flight = queue.in_flight(),
            retrying = queue.retrying(),
            "shutdown grace period over, undelivered pushes dropped"
        );
    }
    stop.cancel();
    background.close();
    background.wait().await;
    side.close();
    side.wait().await;
    tracing::info!("push_server stopped");
    Ok(())
}

fn register_gauges(registry: &Registry, intake: &Arc<Intake>) {
    let q = Arc::downgrade(&intake.queue);
    registry.computed(
        "queue_depth",
        "Pushes waiting for a worker.",
        "gauge",
        move || q.upgrade().map_or(0.0, |q| q.depth() as f64),
    );
    let q = Arc::downgrade(&intake.queue);
    registry.computed(
        "pushes_in_flight",
        "Pushes being sent right now.",
        "gauge",
        move || q.upgrade().map_or(0.0, |q| q.in_flight() as f64),
    );
    let q = Arc::downgrade(&intake.queue);
    registry.computed(
        "pushes_awaiting_retry",
        "Pushes waiting for their next attempt.",
        "gauge",
        move || q.upgrade().map_or(0.0, |q| q.retrying() as f64),
    );
}
