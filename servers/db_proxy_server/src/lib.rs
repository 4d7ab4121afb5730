//! db_proxy_server: the only server that touches data. msg_servers and http_msg_servers (ours
//! or the original C++ ones) ask it over PDUs (FLOWS.md 4-15); it answers from
//! [`im_storage`]: SQLite by default, MySQL/MariaDB + Redis to scale out.
//!
//! * [`handlers`]: one function per command, one module per service.
//! * [`server`]: the per-link pipeline (requests applied in arrival order, answered
//!   concurrently, bounded in flight) and the shutdown sequence (FLOWS.md 1.5).
//! * [`sync`]: the periodic group-session sync; [`throttle`]: failed logins per name;
//!   [`msfs`]: voice bytes; [`seed`]: demo data; [`admin`]: stats for imctl.
//!
//! A message is answered with its id only once it is durably stored, a failure with id 0,
//! and a retried request (our msg_server's request tag in attach_data) is never stored twice
//! (Decisions 4).

pub mod admin;
pub mod backend;
pub mod config;
pub mod convert;
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
pub mod localtime;
pub mod metrics;
pub mod msfs;
pub mod seed;
pub mod server;
pub mod sync;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use im_common::config::MIN_ADMIN_TOKEN_LEN;
use im_common::http::{Health, serve_http};
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ServeOptions, serve_plain_and_tls};
use im_storage::config::Backend as BackendKind;
use im_storage::{MysqlStore, SqliteStore};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use backend::Backend;
pub use config::Config;
pub use server::Shared;

/// How long shutdown waits for requests already taken to finish and be answered.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Command line of the `db_proxy_server` binary.
#[derive(Debug, clap::Parser)]
#[command(name = "db_proxy_server", version, about)]
pub struct Cli {
    /// TOML config file; without it the defaults apply (SQLite in ./teamtalk.db). Every key
    /// can also be set with IM_DB_PROXY_SERVER_<KEY> (IM_DB_PROXY_SERVER_STORAGE__BACKEND for
    /// [storage] backend).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Load demo data (departments, users, groups) from this file before serving, unless the
    /// database already has users (e.g. fixtures/seed/demo.toml).
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
}

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// msg_server and http_msg_server links (`listen`).
    pub main: TcpListener,
    /// The same over TLS (`tls_listen`); `None` disables it.
    pub main_tls: Option<TcpListener>,
    /// Admin PDUs for imctl (`admin.listen`); `None` disables it.
    pub admin: Option<TcpListener>,
    /// Prometheus `/metrics`, `/healthz`, `/readyz` (`http.listen`); `None` disables it.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address set in `config` (empty optional addresses stay unbound).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        use im_common::net::{bind, bind_optional as optional};
        Ok(Listeners {
            main: bind("listen", &config.listen).await?,
            main_tls: optional("tls_listen", &config.tls_listen).await?,
            admin: optional("admin.listen", &config.admin.listen).await?,
            metrics: optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Opens the configured store and serves until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_seeded(config, listeners, shutdown, None).await
}

/// [`run`], loading demo data from `seed` first (skipped when users exist).
pub async fn run_seeded(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    seed: Option<&Path>,
) -> anyhow::Result<()> {
    config.validate()?;
    match config.storage.backend {
        BackendKind::Sqlite => {
            let store = SqliteStore::open(&config.storage.sqlite)
                .await
                .with_context(|| {
                    format!(
                        "config key `storage.sqlite.path`: cannot open {}",
                        config.storage.sqlite.path.display()
                    )
                })?;
            serve_store(config, store, listeners, shutdown, seed).await
        }
        BackendKind::Mysql => {
            let store = MysqlStore::open(&config.storage)
                .await
                .context("config section `storage.mysql` / `storage.redis`: cannot open")?;
            serve_store(config, store, listeners, shutdown, seed).await
        }
    }
}

async fn serve_store<S: Backend>(
    config: Config,
    store: S,
    listeners: Listeners,
    shutdown: CancellationToken,
    seed: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(path) = seed {
        match seed::load(&store, path).await {
            Ok(report) => tracing::info!(%report, "seed data"),
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        }
    }
    let proxy = match DbProxy::new(config, store) {
        Ok(p) => p,
        Err(e) => return Err(e),
    };
    proxy.serve(listeners, shutdown).await
}

/// A db_proxy_server over a store.
pub struct DbProxy<S> {
    shared: Arc<Shared<S>>,
    config: Config,
}

impl<S> std::fmt::Debug for DbProxy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbProxy")
            .field("name", &self.config.display_name())
            .finish_non_exhaustive()
    }
}

impl<S: Backend> DbProxy<S> {
    /// A server for `store` (the config is validated).
    pub fn new(config: Config, store: S) -> anyhow::Result<Self> {
        config.validate()?;
        let shared = Arc::new(Shared::new(&config, store)?);
        Ok(DbProxy { shared, config })
    }

    /// The shared state (store, metrics).
    pub fn shared(&self) -> &Arc<Shared<S>> {
        &self.shared
    }

    /// Serves until `shutdown`, then: stop-receive on every link, finish and answer what was
    /// taken, close the links after their queues are written, close the store, return.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let sh = self.shared.clone();
        let config = &self.config;
        if listeners.admin.is_some() && config.admin.token.len() < MIN_ADMIN_TOKEN_LEN {
            anyhow::bail!(
                "config key `admin.token`: an admin listener needs a token of at least \
                 {MIN_ADMIN_TOKEN_LEN} characters"
            );
        }
        let listen_addr = listeners.main.local_addr()?.to_string();
        let tls = tls_listener(&config.tls, listeners.main_tls, "tls_listen")?;
        let health = Health::new();
        // Links and side ports stop only after the drain; background work at its start.
        let stop_links = CancellationToken::new();
        let stop_background = CancellationToken::new();
        let drivers = TaskTracker::new();

        let links = {
            let (sh, drivers) = (sh.clone(), drivers.clone());
            serve_plain_and_tls(
                listeners.main,
                tls,
                ServeOptions::server("msg_server"),
                sh.links.clone(),
                stop_links.clone(),
                move |conn| server::Link::start(sh.clone(), conn, &drivers),
            )
        };
        let admin = async {
            if let Some(l) = listeners.admin {
                let service = Arc::new(admin::Admin {
                    shared: sh.clone(),
                    name: config.display_name(),
                    listen_addr: listen_addr.clone(),
                });
                im_common::admin::serve_admin(
                    l,
                    config.admin.token.clone(),
                    service,
                    stop_links.clone(),
                )
                .await;
            }
        };
        let metrics = async {
            match listeners.metrics {
                Some(l) => serve_http(
                    l,
                    sh.metrics.registry.clone(),
                    health.clone(),
                    stop_links.clone(),
                )
                .await
                .context("metrics port"),
                None => Ok(()),
            }
        };
        let every = (config.group_session_sync_secs > 0)
            .then(|| Duration::from_secs(config.group_session_sync_secs));
        let background = sync::run(&sh, every, stop_background.clone());
        let coordinator = async {
            shutdown.cancelled().await;
            health.set_not_ready("stopping");
            sh.stop_receiving();
            stop_background.cancel();
            if !sh.drained(DRAIN_GRACE).await {
                tracing::warn!(
                    pending = sh.pending(),
                    "requests still unfinished after the drain period; closing anyway"
                );
            }
            stop_links.cancel();
        };
        health.set_ready();
        tracing::info!(name = %config.display_name(), listen = %listen_addr,
            backend = S::BACKEND, "db_proxy_server started");
        let ((), (), metrics, (), ()) =
            tokio::join!(links, admin, metrics, background, coordinator);
        drivers.close();
        if tokio::time::timeout(Duration::from_secs(5), drivers.wait())
            .await
            .is_err()
        {
            tracing::warn!("link drivers still running after shutdown");
        }
        sh.store.close().await;
        tracing::info!("db_proxy_server stopped");
        metrics
    }
}
