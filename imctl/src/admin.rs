//! A connection to one server's admin port: authenticate first, then typed requests.

use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::admin::{AdminResult, ImAdminAuthReq};
use im_proto::client::{ClientConfig, ImClient};
use im_proto::{Command, Request};

/// How long to wait for an admin server to answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// An authenticated admin connection.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client: ImClient,
    /// Address dialled.
    pub addr: String,
    /// Server kind as the server reports it.
    pub kind: String,
    /// Server name as the server reports it.
    pub name: String,
    /// Server version.
    pub version: String,
}

impl AdminClient {
    /// Connects to `addr` and presents `token`.
    pub async fn connect(addr: &str, token: &str) -> anyhow::Result<AdminClient> {
        let config = ClientConfig {
            connect_timeout: ADMIN_TIMEOUT,
            request_timeout: ADMIN_TIMEOUT,
            heartbeat_interval: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        };
        let (client, _events) = ImClient::connect(addr, config)
            .await
            .with_context(|| format!("connecting to admin port {addr}"))?;
        let rsp = client
            .request(&ImAdminAuthReq {
                token: Some(token.to_owned()),
                client_name: Some(format!("imctl {}", env!("CARGO_PKG_VERSION"))),
            })
            .await
            .with_context(|| format!("authenticating to {addr}"))?;
        if rsp.result_code() != AdminResult::AdminOk {
            bail!(
                "{addr} refused the admin token ({})",
                rsp.result_string
                    .unwrap_or_else(|| "authentication failed".into())
            );
        }
        Ok(AdminClient {
            client,
            addr: addr.to_owned(),
            kind: rsp.server_kind.unwrap_or_default(),
            name: rsp.server_name.unwrap_or_default(),
            version: rsp.version.unwrap_or_default(),
        })
    }

    /// Sends an admin request and returns its answer.
    pub async fn call<M: Request>(&self, req: &M) -> anyhow::Result<M::Response> {
        self.client
            .request(req)
            .await
            .with_context(|| format!("{} on {}", <M as Command>::NAME, self.addr))
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.client.close();
    }
}

/// Turns a non-OK admin result into an error with the server's words.
pub fn check(code: AdminResult, text: Option<&str>, what: &str) -> anyhow::Result<()> {
    if code == AdminResult::AdminOk {
        return Ok(());
    }
    let why = match code {
        AdminResult::AdminAuthFailed => "authentication failed",
        AdminResult::AdminNotFound => "not found",
        AdminResult::AdminUnsupported => "not supported by this server",
        AdminResult::AdminBadRequest => "bad request",
        AdminResult::AdminUnavailable => "a backend it needs is unavailable",
        AdminResult::AdminFailed | AdminResult::AdminOk => "failed",
    };
    match text {
        Some(t) if !t.is_empty() => bail!("{what}: {why}: {t}"),
        _ => bail!("{what}: {why}"),
    }
}
