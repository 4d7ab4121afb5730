//! http_msg_server: the HTTP API the original admin web uses to create groups and change
//! their members (FLOWS.md 16), plus ours: sending a message as a user, and the discovery
//! list clients open from their login answer (FLOWS.md 21).
//!
//! * `POST /query/CreateGroup`, `/query/ChangeMembers` ([`query::group`]): the original's
//!   request format, codes and messages; db_proxy does the work; the members' clients are
//!   told through route_server (also on creation, WEAKNESSES 43);
//! * `POST /query/SendMessage` ([`query::message`]): plaintext JSON in, encrypted with
//!   `aes_key` as a stock client would, answered once stored, delivered through route_server;
//! * every `/query/` request needs the API token (WEAKNESSES 10), see [`api`];
//! * `GET /api/discovery` ([`discovery`]): open, as the PHP page it replaces;
//! * the admin port (stats) and the metrics port.

pub mod api;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod query;
pub mod server;
pub mod upstream;

mod admin;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use im_common::CancellationToken;
use im_common::http::{Health, serve_http};
use im_common::http1::{Http1Options, serve_http1, serve_https1};
use im_common::tls::tls_listener;
use im_proto::crypto::MessageCipher;
use tokio::net::TcpListener;

pub use config::Config;

use crate::metrics::Metrics;
use crate::server::Server;
use crate::upstream::{DbPool, RouteLinks};

/// Command line of the `http_msg_server` binary.
#[derive(Debug, clap::Parser)]
#[command(name = "http_msg_server", version, about)]
pub struct Cli {
    /// TOML config file; without it the defaults apply. Every key can also be set with
    /// IM_HTTP_MSG_SERVER_<KEY> (IM_HTTP_MSG_SERVER_API_TOKEN for the API token).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API.
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

/// Runs http_msg_server until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let cipher = MessageCipher::new(config.aes_key.as_bytes())
        .map_err(|e| anyhow::anyhow!("config key `aes_key`: {e}"))?;
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let https = tls_listener(&config.tls, listeners.https, "https_listen")?;
    let client_tls = config.client_tls()?;
    // The links stop with their own token, after the HTTP side has answered its requests.
    let links_stop = CancellationToken::new();
    let server = Arc::new(Server {
        db: DbPool::spawn(
            &config.db_proxy,
            config.db_connections_per_server,
            timeout,
            config.backoff,
            &client_tls,
            &links_stop,
        ),
        routes: RouteLinks::spawn(
            &config.route_servers,
            timeout,
            config.backoff,
            &client_tls,
            &links_stop,
        ),
        cipher,
        metrics: Metrics::new(),
        discovery: Mutex::new(None),
        config,
    });
    let listen_addr = listeners.http.local_addr()?.to_string();
    let health = Health::new();
    let readiness = {
        let (s, h, stop) = (server.clone(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                if s.db.any_usable() {
                    h.set_ready();
                } else {
                    h.set_not_ready("no db_proxy link");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stop.cancelled() => break,
                }
            }
        })
    };
    let http = {
        let mut opts = Http1Options::new(
            "http_msg_server",
            Duration::from_secs(server.config.idle_timeout_secs),
        );
        opts.max_connections = server.config.max_connections;
        let server = server.clone();
        let make = move |_info| {
            let server = server.clone();
            hyper::service::service_fn(move |req| api::handle(server.clone(), req))
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
                server: server.clone(),
                listen_addr: listen_addr.clone(),
                shutdown: shutdown.clone(),
            });
            im_common::admin::serve_admin(
                l,
                server.config.admin.token.clone(),
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
                server.metrics.registry.clone(),
                health.clone(),
                shutdown.clone(),
            )
            .await
            .context("metrics port"),
            None => Ok(()),
        }
    };
    tracing::info!(name = %server.config.display_name(), http = %listen_addr, "http_msg_server started");
    let ((), (), metrics) = tokio::join!(http, admin, metrics);
    links_stop.cancel();
    let _ = readiness.await;
    tracing::info!("http_msg_server stopped");
    metrics
}
