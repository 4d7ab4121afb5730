//! file_server: moves files between TeamTalk clients (FLOWS.md 14).
//!
//! msg_servers link to it and create transfer tasks for their clients (IMFileTransferReq;
//! the address list clients are given comes from IMFileServerIPReq). Clients then connect
//! to the client port and log in to a task in a role: online, the receiver's pull requests
//! are relayed to the sender and the blocks back; offline, the uploader's file is pulled in
//! 32 KiB blocks onto disk and served to the receiver later, in the original's on-disk
//! format so that files move freely between an original file_server and this one.
//!
//! * [`config`]: the configuration ([`Config`]).
//! * [`msg_link`]: the msg_server links (task creation, address list).
//! * [`client`]: the client connections (login, relay, upload, download).
//! * [`task`]: tasks, roles and the login rules; [`table`]: the tasks in progress;
//!   [`disk`]: offline files on disk.
//! * [`sweep`]: expiry of idle tasks and of offline files past their retention;
//!   [`db`]: the db_proxy link that deletes their records.
//! * [`admin`] and [`metrics`]: the admin port and the counters.

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod disk;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod msg_link;
pub mod state;
pub mod sweep;
pub mod table;
pub mod task;

use std::sync::Arc;

use anyhow::Context;
use im_common::http::{Health, serve_http};
use im_common::metrics::Registry;
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ConnRegistry, ServeOptions, serve, serve_plain_and_tls};
use im_proto::base::IpAddr;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::admin::FileAdmin;
use crate::client::ClientHandler;
use crate::db::DbLink;
use crate::disk::OfflineStore;
use crate::metrics::FileMetrics;
use crate::msg_link::MsgLinkHandler;
use crate::state::Shared;
use crate::table::TaskTable;

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// TeamTalk clients (`client_listen`).
    pub client: TcpListener,
    /// msg_server links (`msg_server_listen`).
    pub msg_servers: TcpListener,
    /// The same over TLS (`msg_server_tls_listen`), if enabled.
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
        Ok(Listeners {
            client: bind("client_listen", &config.client_listen).await?,
            msg_servers: bind("msg_server_listen", &config.msg_server_listen).await?,
            msg_servers_tls: bind_optional("msg_server_tls_listen", &config.msg_server_tls_listen)
                .await?,
            admin: bind_optional("admin.listen", &config.admin.listen).await?,
            metrics: bind_optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Runs file_server until `shutdown` is cancelled, then closes the connections (unfinished
/// uploads are discarded) and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let client_addr = listeners.client.local_addr()?;
    let msg_tls = tls_listener(
        &config.tls,
        listeners.msg_servers_tls,
        "msg_server_tls_listen",
    )?;
    let client_tls = config.client_tls()?;
    let store = OfflineStore::new(config.data_dir.clone());
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.create_root())
            .await?
            .with_context(|| format!("creating data_dir {:?}", config.data_dir))?;
    }
    let registry = Registry::new("im_file_server");
    let db = (!config.db_proxy.is_empty()).then(|| {
        DbLink::spawn(
            config.db_proxy.clone(),
            config.backoff,
            client_tls,
            shutdown.clone(),
        )
    });
    let shared = Arc::new(Shared {
        name: config.display_name(client_addr),
        client_addr,
        advertise: config
            .advertise
            .iter()
            .map(|ip| IpAddr {
                ip: ip.clone(),
                port: u32::from(client_addr.port()),
            })
            .collect(),
        tasks: TaskTable::new(config.max_tasks),
        store,
        metrics: FileMetrics::new(registry.clone()),
        clients: ConnRegistry::new(),
        msg_links: ConnRegistry::new(),
        db,
        task_timeout: config.task_timeout(),
        retention: config.retention(),
        shutdown: shutdown.clone(),
    });
    register_gauges(&registry, &shared);

    let tasks = TaskTracker::new();
    if let Some(listener) = listeners.admin {
        anyhow::ensure!(
            !config.admin.token.is_empty(),
            "config key `admin.token`: must be set when the admin port is enabled"
        );
        tasks.spawn(im_common::admin::serve_admin(
            listener,
            config.admin.token.clone(),
            Arc::new(FileAdmin::new(shared.clone())),
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
    tasks.spawn(sweep::run_expiry(shared.clone()));
    tasks.spawn(sweep::run_disk_sweep(
        shared.clone(),
        config.sweep_interval(),
    ));
    // Nothing to wait for: the db_proxy link only serves the retention sweep.
    health.set_ready();
    tracing::info!(name = %shared.name, client = %client_addr,
        msg_servers = %listeners.msg_servers.local_addr()?, data_dir = %config.data_dir.display(),
        "file_server started");

    let mut msg_opts = ServeOptions::server("msg_server");
    // FLOWS.md 1.1: msg_server sends heartbeats, file_server echoes them.
    msg_opts.echo_heartbeat = true;
    let msg_serving = {
        let shared = shared.clone();
        tokio::spawn(serve_plain_and_tls(
            listeners.msg_servers,
            msg_tls,
            msg_opts,
            shared.msg_links.clone(),
            shutdown.clone(),
            move |_| MsgLinkHandler::new(shared.clone()),
        ))
    };
    let mut client_opts = ServeOptions::client("client");
    client_opts.max_connections = config.max_connections as usize;
    let client_shared = shared.clone();
    let login_timeout = config.login_timeout();
    serve(
        listeners.client,
        client_opts,
        shared.clients.clone(),
        shutdown.clone(),
        move |conn| {
            let handler = ClientHandler::new(client_shared.clone(), conn);
            conn.set_deadline(Some(login_timeout));
            handler
        },
    )
    .await;
    let _ = msg_serving.await;

    health.set_not_ready("shutting down");
    tasks.close();
    tasks.wait().await;
    tracing::info!("file_server stopped");
    Ok(())
}

fn register_gauges(registry: &Registry, shared: &Arc<Shared>) {
    let s = Arc::downgrade(shared);
    registry.computed(
        "tasks",
        "Tasks in progress (waiting, transferring, uploading, downloading).",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.tasks.len() as f64),
    );
    let s = Arc::downgrade(shared);
    registry.computed(
        "client_connections",
        "Open client connections.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.clients.len() as f64),
    );
    let s = Arc::downgrade(shared);
    registry.computed(
        "msg_server_links",
        "Open msg_server links.",
        "gauge",
        move || s.upgrade().map_or(0.0, |s| s.msg_links.len() as f64),
    );
}
