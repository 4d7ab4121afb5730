//! route_server: relays PDUs between msg_servers and keeps the cluster's presence.
//!
//! Every msg_server (and http_msg_server) links to every route_server (FLOWS.md 0, 1.2) and
//! registers its users (IMOnlineUserInfo, then one IMUserStatusUpdate per connection that
//! comes or goes). route_server keeps, per user, the links and client types it is connected
//! through ([`table`]), answers presence queries with the PC-only rule (Decisions 8), sends
//! the presence notifies of FLOWS.md 11, and forwards messages, notifies and kicks as frame
//! bytes: targeted at the links where the users are online, or broadcast where it holds no
//! membership (Decisions 7). A dropped link's users wait out an offline grace period before
//! they are announced offline ([`grace`]). Several route_servers can run side by side; they
//! never talk to each other.
//!
//! * [`config`] holds the [`Config`] struct.
//! * [`handlers`] has one handler per link and one function per command.
//! * [`rules`] are the presence rules; [`table`], [`links`] and [`state`] are the route table, the open links, routing and
//!   broadcast.
//! * [`admin`] answers stats, route list, locate and kick on the admin port.

pub mod admin;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod grace;
pub mod handlers;
pub mod links;
pub mod metrics;
pub mod rules;
pub mod state;
pub mod table;

use std::sync::Arc;

use im_common::http::{Health, serve_http};
use im_common::metrics::Registry;
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ServeOptions, serve_plain_and_tls};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::admin::RouteAdmin;
use crate::handlers::LinkHandler;
use crate::metrics::RouteMetrics;
use crate::state::RouteState;

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// msg_server and http_msg_server links (`listen`).
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

/// Runs route_server until `shutdown` is cancelled, then closes the links and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let listen = listeners.msg_servers.local_addr()?;
    let tls = tls_listener(&config.tls, listeners.msg_servers_tls, "tls_listen")?;
    let registry = Registry::new("im_route_server");
    let state = Arc::new(RouteState::new(
        config.display_name(listen),
        listen,
        config.offline_grace(),
        RouteMetrics::new(registry.clone()),
        shutdown.clone(),
    ));
    register_gauges(&registry, &state);

    let tasks = TaskTracker::new();
    if let Some(listener) = listeners.admin {
        anyhow::ensure!(
            !config.admin.token.is_empty(),
            "config key `admin.token`: must be set when the admin port is enabled"
        );
        let service = Arc::new(RouteAdmin::new(state.clone()));
        tasks.spawn(im_common::admin::serve_admin(
            listener,
            config.admin.token.clone(),
            service,
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
    // route_server depends on nothing: listening is being ready.
    health.set_ready();
    tracing::info!(name = %state.name, %listen, grace_secs = state.grace.as_secs_f64(),
        "route_server started");

    let mut opts = ServeOptions::server("msg_server");
    // Echoing costs nothing and lets msg_servers measure the link's round-trip time; our
    // own heartbeat after 5 s of silence stays (FLOWS.md 1.1).
    opts.echo_heartbeat = true;
    let conns = state.conns.clone();
    let handler_state = state.clone();
    serve_plain_and_tls(
        listeners.msg_servers,
        tls,
        opts,
        conns,
        shutdown.clone(),
        move |conn| LinkHandler::new(handler_state.clone(), conn),
    )
    .await;

    health.set_not_ready("shutting down");
    tasks.close();
    tasks.wait().await;
    tracing::info!("route_server stopped");
    Ok(())
}

fn register_gauges(registry: &Registry, state: &Arc<RouteState>) {
    let s = Arc::downgrade(state);
    registry.computed(
        "users_online",
        "Users in the route table (grace included).",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.table.len() as f64),
    );
    let s = Arc::downgrade(state);
    registry.computed(
        "grace_users",
        "Users held in the offline grace period.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.table.grace_len() as f64),
    );
    let s = Arc::downgrade(state);
    registry.computed(
        "msg_server_links",
        "Open msg_server and http_msg_server links.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.links.len() as f64),
    );
    let s = Arc::downgrade(state);
    registry.computed(
        "link_frame_errors_total",
        "Links closed for a framing error.",
        "counter",
        move || {
            s.upgrade().map_or(0.0, |s| {
                s.conns
                    .stats()
                    .protocol_errors
                    .load(std::sync::atomic::Ordering::Relaxed) as f64
            })
        },
    );
}
