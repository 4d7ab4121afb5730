//! The servers' admin ports (IM.Admin PDUs): link states for readiness and reconnect times.

use std::time::Duration;

use anyhow::Context;
use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminMsgServerListReq, ImAdminRouteListReq, ImAdminStatsReq,
    LinkState, ServerStats, UpstreamLink,
};
use im_proto::client::{ClientConfig, ImClient};

/// An authenticated admin connection.
#[derive(Debug)]
pub struct Admin {
    client: ImClient,
}

impl Admin {
    /// Connects to `127.0.0.1:port` and authenticates with `token`.
    pub async fn connect(port: u16, token: &str) -> anyhow::Result<Admin> {
        let config = ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            heartbeat_interval: None,
            ..ClientConfig::default()
        };
        let addr = format!("127.0.0.1:{port}");
        let (client, _events) = ImClient::connect(&addr, config).await?;
        let rsp = client
            .request(&ImAdminAuthReq {
                token: Some(token.to_owned()),
                client_name: Some("im-e2e".into()),
            })
            .await?;
        anyhow::ensure!(
            rsp.result_code() == AdminResult::AdminOk,
            "admin token refused by {addr}"
        );
        Ok(Admin { client })
    }

    /// The server's stats.
    pub async fn stats(&self) -> anyhow::Result<ServerStats> {
        let rsp = self.client.request(&ImAdminStatsReq {}).await?;
        rsp.stats.context("stats answer without stats")
    }

    /// login_server: the number of msg_servers registered.
    pub async fn msg_server_count(&self) -> anyhow::Result<usize> {
        Ok(self
            .client
            .request(&ImAdminMsgServerListReq {})
            .await?
            .servers
            .len())
    }

    /// route_server: the number of msg_server links.
    pub async fn route_links(&self) -> anyhow::Result<u32> {
        let page = self
            .client
            .request(&ImAdminRouteListReq {
                after_user_id: Some(0),
                limit: Some(1),
            })
            .await?;
        Ok(page.msg_server_links())
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// The stats of the server whose admin port is `port`.
pub async fn stats(port: u16, token: &str) -> anyhow::Result<ServerStats> {
    Admin::connect(port, token).await?.stats().await
}

/// True when the link is connected.
pub fn is_connected(link: &UpstreamLink) -> bool {
    link.state() == LinkState::Connected
}
