//! msg_server: the server TeamTalk clients talk to.
//!
//! Clients log in here (validated through db_proxy), send and receive messages, and make every
//! other request of SID_LOGIN, SID_BUDDY_LIST, SID_MSG, SID_GROUP and SID_SWITCH_SERVICE,
//! which msg_server answers itself or relays to db_proxy or route_server (FLOWS.md). It links
//! to every route_server (presence and routing between msg_servers), every login_server
//! (registration and load), a pool of db_proxy links and push_server.
//!
//! * [`config`]: the configuration ([`Config`]).
//! * [`client`]: the client connection, one module per service.
//! * [`server`]: shared state and the operations on it; [`state`]: sessions, group cache,
//!   duplicate filter, login throttle.
//! * [`upstream`]: db_proxy pool, route_server links (with the resend window), login_server
//!   and push_server links; [`routed`]: what arrives from route_server.
//! * [`send`]: a message's path from checks to store, ack, delivery, routing and push (a
//!   client's, or one sent on a user's behalf from the admin port).
//! * [`push`]: building push requests; [`admin`]: the admin port; [`wire`]: byte-level
//!   relaying helpers.

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod push;
pub mod routed;
pub mod send;
pub mod server;
pub mod state;
pub mod upstream;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use im_common::http::{Health, serve_http};
use im_common::metrics::Registry;
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ServeOptions, serve_plain_and_tls};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::admin::MsgAdmin;
use crate::client::ClientHandler;
use crate::metrics::Metrics;
use crate::server::Server;

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// TeamTalk clients (`listen`).
    pub client: TcpListener,
    /// The same over TLS (`tls_listen`), if enabled.
    pub tls: Option<TcpListener>,
    /// Admin port (`admin.listen`), if enabled.
    pub admin: Option<TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz` (`http.listen`), if enabled.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config` (empty admin/http addresses: not bound).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        use im_common::net::{bind, bind_optional};
        let client = bind("listen", &config.listen).await?;
        Ok(Listeners {
            client,
            tls: bind_optional("tls_listen", &config.tls_listen).await?,
            admin: bind_optional("admin.listen", &config.admin.listen).await?,
            metrics: bind_optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Runs msg_server until `shutdown` is cancelled.
///
/// Shutdown order: client PDUs are no longer handled; messages being stored get their acks
/// (up to `shutdown_grace_secs`); the client listener closes and the connections are flushed
/// and closed (their offline updates still reach route_server and login_server); then the
/// upstream links close.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let listen = listeners.client.local_addr()?;
    let tls = tls_listener(&config.tls, listeners.tls, "tls_listen")?;
    let tls_port = match &tls {
        Some((l, _)) => Some(l.local_addr()?.port()),
        None => None,
    };
    let registry = Registry::new("im_msg_server");
    let metrics = Metrics::new(registry.clone());
    let links_shutdown = CancellationToken::new();
    let server = Server::start_with_tls(&config, listen, tls_port, metrics, &links_shutdown)?;
    register_gauges(&registry, &server);

    let tasks = TaskTracker::new();
    if let Some(listener) = listeners.admin {
        anyhow::ensure!(
            !config.admin.token.is_empty(),
            "config key `admin.token`: must be set when the admin port is enabled"
        );
        tasks.spawn(im_common::admin::serve_admin(
            listener,
            config.admin.token.clone(),
            Arc::new(MsgAdmin::new(&server)),
            shutdown.clone(),
        ));
    }
    let health = Health::new();
    if let Some(listener) = listeners.metrics {
        let (registry, health, shutdown) = (registry.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = serve_http(listener, registry, health, shutdown).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    // Ready = logins possible = a db_proxy link is up.
    {
        let (server, health, shutdown) = (server.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                if server.db.any_usable() {
                    health.set_ready();
                } else {
                    health.set_not_ready("no db_proxy link");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => break,
                }
            }
            health.set_not_ready("shutting down");
        });
    }
    tracing::info!(name = %server.cfg.name, %listen, ?tls_port, "msg_server started");

    let mut opts = ServeOptions::client("client");
    opts.max_connections = config.max_connections as usize;
    opts.idle_timeout = Some(server.cfg.idle_pc);
    opts.queue_limit = usize::try_from(config.client_queue_limit_bytes).unwrap_or(usize::MAX);
    let serve_stop = CancellationToken::new();
    let serving = {
        let server = server.clone();
        // One connection limit for both ports (max_connections is what login_server sees).
        tokio::spawn(serve_plain_and_tls(
            listeners.client,
            tls,
            opts,
            server.registry.clone(),
            serve_stop.clone(),
            move |conn| ClientHandler::new(server.clone(), conn),
        ))
    };

    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing the messages being stored");
    server.stopping.store(true, Ordering::Relaxed);
    server.inflight.close();
    if tokio::time::timeout(server.cfg.shutdown_grace, server.inflight.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace over with requests still waiting for db_proxy");
    }
    serve_stop.cancel();
    let _ = serving.await;
    // Let the offline updates of the closed connections reach the peers.
    tokio::time::sleep(Duration::from_millis(50)).await;
    links_shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    tracing::info!("msg_server stopped");
    Ok(())
}

fn register_gauges(registry: &Registry, server: &Arc<Server>) {
    let s = Arc::downgrade(server);
    registry.computed(
        "connections",
        "Open client connections (logged in or not).",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.registry.len() as f64),
    );
    let s = Arc::downgrade(server);
    registry.computed(
        "sessions",
        "Logged-in client connections.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.sessions.count() as f64),
    );
    let s = Arc::downgrade(server);
    registry.computed(
        "route_links_up",
        "route_server links registered.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.routes.live_count() as f64),
    );
    let s = Arc::downgrade(server);
    registry.computed(
        "connections_refused_total",
        "Client connections closed at accept because max_connections were open.",
        "counter",
        move || {
            s.upgrade().map_or(0.0, |s| {
                s.registry.stats().refused.load(Ordering::Relaxed) as f64
            })
        },
    );
    let s = Arc::downgrade(server);
    registry.computed(
        "slow_consumer_disconnects_total",
        "Client connections closed because they did not read.",
        "counter",
        move || {
            s.upgrade().map_or(0.0, |s| {
                s.registry.stats().slow_consumers.load(Ordering::Relaxed) as f64
            })
        },
    );
}
