//! msfs: the small-file store clients upload images, avatars and voice to (FLOWS.md 17,
//! STORAGE.md 6).
//!
//! * `POST <any path>` with one multipart/form-data file part ([`upload`]): streamed to disk
//!   under `<data_dir>/<NNN>/<NNN>/`, answered with the original's exact JSON (`path`, and the
//!   `url` clients keep); too large or malformed uploads get the original's error JSON;
//! * `GET /<path>` ([`download`]): the file streamed from disk, `image/<ext>` for pictures,
//!   single byte ranges, 404 for unknown paths, traversal refused;
//! * an optional upload token (off by default: stock clients send none);
//! * the admin port (stats) and the metrics port.
//!
//! The file counter that spreads files over directories lives in `<data_dir>/msfs.state`
//! ([`store`]), written atomically after uploads and at shutdown.

pub mod config;
pub mod download;
pub mod metrics;
pub mod service;
pub mod store;
pub mod upload;

mod admin;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use im_common::CancellationToken;
use im_common::http::{Health, serve_http};
use im_common::http1::{Http1Options, serve_http1, serve_https1};
use im_common::tls::tls_listener;
use tokio::net::TcpListener;

pub use config::Config;

use crate::metrics::Metrics;
use crate::service::App;
use crate::store::FileStore;

/// Command line of the `msfs` binary.
#[derive(Debug, clap::Parser)]
#[command(name = "msfs", version, about)]
pub struct Cli {
    /// TOML config file; without it the defaults apply. Every key can also be set with
    /// IM_MSFS_<KEY> (IM_MSFS_ADMIN__TOKEN for [admin] token).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// Uploads and downloads.
    pub http: TcpListener,
    /// The same over HTTPS (`https_listen`); `None` disables it.
    pub https: Option<TcpListener>,
    /// Admin PDUs for imctl; `None` disables it.
    pub admin: Option<TcpListener>,
    /// Prometheus `/metrics`, `/healthz`, `/readyz`; `None` disables it.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address set in `config` (empty optional addresses stay unbound).
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        use im_common::net::{bind, bind_optional as optional};
        Ok(Listeners {
            http: bind("listen", &config.listen).await?,
            https: optional("https_listen", &config.https_listen).await?,
            admin: optional("admin.listen", &config.admin.listen).await?,
            metrics: optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Runs msfs until `shutdown` is cancelled; the file counter is saved before it returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let https = tls_listener(&config.tls, listeners.https, "https_listen")?;
    let store = {
        let dir = config.data_dir.clone();
        let per_dir = config.files_per_dir;
        tokio::task::spawn_blocking(move || FileStore::open(&dir, per_dir))
            .await
            .context("opening the data directory")??
    };
    let store = Arc::new(store);
    let idle = Duration::from_secs(config.idle_timeout_secs);
    let app = Arc::new(App {
        metrics: Metrics::for_store(&store),
        store: store.clone(),
        idle,
        config,
    });
    let listen_addr = listeners.http.local_addr()?.to_string();
    let health = Health::new();

    // The counter is written in the background after changes, a burst of uploads at a time.
    // It stops only after the HTTP side has finished, so the last uploads are counted.
    let saver_stop = CancellationToken::new();
    let saver = tokio::spawn(save_counters(store.clone(), saver_stop.clone()));
    let http = {
        let mut opts = Http1Options::new("msfs", idle);
        opts.max_connections = app.config.max_connections;
        let app = app.clone();
        let make = move |info| {
            let app = app.clone();
            hyper::service::service_fn(move |req| service::handle(app.clone(), req, info))
        };
        let plain = serve_http1(listeners.http, opts.clone(), make.clone(), shutdown.clone());
        let tls = async {
            if let Some((l, tls)) = https {
                serve_https1(l, tls, opts, make, shutdown.clone()).await;
            }
        };
        async {
            tokio::join!(plain, tls);
        }
    };
    let admin = async {
        if let Some(l) = listeners.admin {
            let service = Arc::new(admin::Admin {
                app: app.clone(),
                listen_addr: listen_addr.clone(),
                shutdown: shutdown.clone(),
            });
            im_common::admin::serve_admin(
                l,
                app.config.admin.token.clone(),
                service,
                shutdown.clone(),
            )
            .await;
        }
    };
    let metrics = async {
        match listeners.metrics {
            Some(l) => serve_http(
                l,
                app.metrics.registry.clone(),
                health.clone(),
                shutdown.clone(),
            )
            .await
            .context("metrics port"),
            None => Ok(()),
        }
    };
    health.set_ready();
    tracing::info!(name = %app.config.display_name(), http = %listen_addr,
        data_dir = %app.store.root().display(), files = app.store.counters().file_cnt, "msfs started");
    let ((), (), metrics) = tokio::join!(http, admin, metrics);
    // Uploads have finished (or been dropped): the last counter value goes to disk.
    saver_stop.cancel();
    let saved = saver.await.context("the counter saver task")?;
    tracing::info!("msfs stopped");
    metrics.and(saved.context("saving the file counter"))
}

/// Saves the counters after every change until `stop`, then once more.
async fn save_counters(
    store: Arc<FileStore>,
    stop: CancellationToken,
) -> Result<(), store::StateError> {
    loop {
        tokio::select! {
            () = store.changed() => {}
            () = stop.cancelled() => break,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save the file counter"),
            Err(e) => tracing::error!(error = %e, "the counter save task failed"),
        }
    }
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.save())
        .await
        .unwrap_or_else(|e| {
            Err(store::StateError::Io {
                action: "cannot save (task failed)",
                path: store.root().to_path_buf(),
                source: std::io::Error::other(e),
            })
        })
}
