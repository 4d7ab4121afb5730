//! login_server: tells clients which msg_server to log in to (FLOWS.md 2 and 3).
//!
//! * HTTP `GET /msg_server` ([`http`]): the least-loaded msg_server as the original's exact JSON;
//! * the msg_server port ([`msg_servers`]): registration (IMMsgServInfo) and load reports
//!   (IMUserCntUpdate), kept in the [`table`];
//! * the legacy TCP client port ([`legacy`]): IMMsgServReq -> IMMsgServRsp, broken in the
//!   original, working here;
//! * the admin port (stats, msg_server list, drain) and the metrics port.
//!
//! Load counts the logins handed out but not yet reported by their msg_server, so a burst of
//! logins spreads over the servers; draining and full servers are skipped, and a server whose
//! link is down is forgotten.

pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod json;
pub mod request;
pub mod table;

mod admin;
mod legacy;
mod msg_servers;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use im_common::config::MIN_ADMIN_TOKEN_LEN;
use im_common::http::{Health, serve_http};
use im_common::tls::tls_listener;
use im_common::{CancellationToken, ServeOptions, serve, serve_plain_and_tls};
use tokio::net::TcpListener;

pub use config::Config;
pub use server::LoginServer;
pub use table::{DrainOutcome, MsgServerStatus};

/// Command line of the `login_server` binary.
#[derive(Debug, clap::Parser)]
#[command(name = "login_server", version, about)]
pub struct Cli {
    /// TOML config file; without it the defaults apply. Every key can also be set with
    /// IM_LOGIN_SERVER_<KEY> (IM_LOGIN_SERVER_ADMIN__TOKEN for [admin] token).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The listening sockets, bound by the caller (tests bind 127.0.0.1:0).
#[derive(Debug)]
pub struct Listeners {
    /// Clients' `GET /msg_server`.
    pub http: TcpListener,
    /// msg_server registration and load reports.
    pub msg_servers: TcpListener,
    /// `GET /msg_server` over HTTPS (`https_listen`); `None` disables it.
    pub https: Option<TcpListener>,
    /// msg_server links over TLS (`msg_server_tls_listen`); `None` disables it.
    pub msg_servers_tls: Option<TcpListener>,
    /// Legacy IMMsgServReq; `None` disables it.
    pub legacy_client: Option<TcpListener>,
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
            http: bind("http_listen", &config.http_listen).await?,
            msg_servers: bind("msg_server_listen", &config.msg_server_listen).await?,
            https: optional("https_listen", &config.https_listen).await?,
            msg_servers_tls: optional("msg_server_tls_listen", &config.msg_server_tls_listen)
                .await?,
            legacy_client: optional("legacy_client_listen", &config.legacy_client_listen).await?,
            admin: optional("admin.listen", &config.admin.listen).await?,
            metrics: optional("http.listen", &config.http.listen).await?,
        })
    }
}

/// Runs a login_server until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    LoginServer::new(config)?.serve(listeners, shutdown).await
}

impl LoginServer {
    /// Serves on `listeners` until `shutdown`; returns once every listener has stopped.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let config = &shared.config;
        if listeners.admin.is_some() && config.admin.token.len() < MIN_ADMIN_TOKEN_LEN {
            anyhow::bail!(
                "config key `admin.token`: an admin listener needs a token of at least \
                 {MIN_ADMIN_TOKEN_LEN} characters"
            );
        }
        let http_addr = listeners.http.local_addr()?.to_string();
        let _ = shared.http_addr.set(http_addr.clone());
        let health = Health::new();

        let https = tls_listener(&config.tls, listeners.https, "https_listen")?;
        let msg_servers_tls = tls_listener(
            &config.tls,
            listeners.msg_servers_tls,
            "msg_server_tls_listen",
        )?;
        let http_limit = Arc::new(tokio::sync::Semaphore::new(config.http_max_connections));
        let http = http::serve(
            listeners.http,
            None,
            http_limit.clone(),
            shared.clone(),
            shutdown.clone(),
        );
        let https = async {
            if let Some((l, tls)) = https {
                http::serve(l, Some(tls), http_limit, shared.clone(), shutdown.clone()).await;
            }
        };
        let msg_servers = {
            let shared = shared.clone();
            serve_plain_and_tls(
                listeners.msg_servers,
                msg_servers_tls,
                ServeOptions::server("msg_server"),
                shared.msg_server_links.clone(),
                shutdown.clone(),
                move |_| msg_servers::MsgServerLink {
                    shared: shared.clone(),
                },
            )
        };
        let legacy = async {
            if let Some(l) = listeners.legacy_client {
                let shared = shared.clone();
                serve(
                    l,
                    ServeOptions::client("legacy_client"),
                    shared.legacy_links.clone(),
                    shutdown.clone(),
                    move |_| legacy::LegacyClient {
                        shared: shared.clone(),
                    },
                )
                .await;
            }
        };
        let admin = async {
            if let Some(l) = listeners.admin {
                let service = Arc::new(admin::Admin {
                    server: self.clone(),
                    shutdown: shutdown.clone(),
                });
                im_common::admin::serve_admin(
                    l,
                    config.admin.token.clone(),
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
                    shared.metrics.registry.clone(),
                    health.clone(),
                    shutdown.clone(),
                )
                .await
                .context("metrics port"),
                None => Ok(()),
            }
        };
        // Every listener is bound and about to be polled: nothing else has to come up first
        // (msg_servers connect to us, not the other way round).
        health.set_ready();
        tracing::info!(name = %config.display_name(), http = %http_addr, "login_server started");
        let ((), (), (), (), (), metrics) =
            tokio::join!(http, https, msg_servers, legacy, admin, metrics);
        tracing::info!("login_server stopped");
        metrics
    }
}
