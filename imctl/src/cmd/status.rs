//! `imctl status`: one line per configured server.

use std::process::ExitCode;

use futures_util::future::join_all;
use im_proto::admin::{ImAdminStatsReq, ServerState};
use serde::Serialize;

use crate::admin::AdminClient;
use crate::cli::client_type_name;
use crate::config::Config;
use crate::output::{Table, bytes, duration_ms, json};

/// What `status` reports per server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// Kind as configured.
    pub kind: String,
    /// Admin address.
    pub admin_addr: String,
    /// up, draining, stopping or down.
    pub state: String,
    /// Why it is down (when down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Name the server reports.
    pub name: String,
    /// Version.
    pub version: String,
    /// Main listen address.
    pub listen_addr: String,
    /// Uptime in ms.
    pub uptime_ms: u64,
    /// Connections by client type name ("-" = not logged in yet, or not a client link).
    pub connections: std::collections::BTreeMap<String, u32>,
    /// Total connections.
    pub connections_total: u32,
    /// Messages received / delivered since start.
    pub msgs_in_total: u64,
    /// Messages delivered since start.
    pub msgs_out_total: u64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// CPU time since start, ms.
    pub cpu_time_ms: u64,
}

/// Fetches every configured server's status concurrently.
pub async fn collect(config: &Config) -> anyhow::Result<Vec<ServerStatus>> {
    let token = config.require_token()?.to_owned();
    let endpoints = config.all_endpoints();
    if endpoints.is_empty() {
        anyhow::bail!("no admin addresses configured (see `imctl --help`, section --admin)");
    }
    let futures = endpoints.into_iter().map(|(kind, addr)| {
        let token = token.clone();
        async move { one(&kind, &addr, &token).await }
    });
    Ok(join_all(futures).await)
}

async fn one(kind: &str, addr: &str, token: &str) -> ServerStatus {
    let mut s = ServerStatus {
        kind: kind.to_owned(),
        admin_addr: addr.to_owned(),
        state: "down".into(),
        error: None,
        name: String::new(),
        version: String::new(),
        listen_addr: String::new(),
        uptime_ms: 0,
        connections: Default::default(),
        connections_total: 0,
        msgs_in_total: 0,
        msgs_out_total: 0,
        rss_bytes: 0,
        cpu_time_ms: 0,
    };
    let result = async {
        let c = AdminClient::connect(addr, token).await?;
        let rsp = c.call(&ImAdminStatsReq {}).await?;
        c.close();
        anyhow::Ok((c, rsp))
    }
    .await;
    let (c, rsp) = match result {
        Ok(x) => x,
        Err(e) => {
            s.error = Some(format!("{e:#}"));
            return s;
        }
    };
    let st = rsp.stats.unwrap_or_default();
    s.state = match st.state() {
        ServerState::Up => "up",
        ServerState::Draining => "draining",
        ServerState::Stopping => "stopping",
    }
    .into();
    s.name = if c.name.is_empty() {
        st.server_name().to_owned()
    } else {
        c.name
    };
    s.version = c.version;
    s.listen_addr = st.listen_addr().to_owned();
    s.uptime_ms = st.uptime_ms();
    s.connections = st
        .connections
        .iter()
        .map(|ct| (client_type_name(ct.client_type()).to_owned(), ct.count()))
        .collect();
    s.connections_total = st.connections.iter().map(|c| c.count()).sum();
    s.msgs_in_total = st.msgs_in_total();
    s.msgs_out_total = st.msgs_out_total();
    s.rss_bytes = st.rss_bytes();
    s.cpu_time_ms = st.cpu_time_ms();
    s
}

/// `imctl status`; exit code 2 when a server is down.
pub async fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let all = collect(config).await?;
    if as_json {
        json(&all)?;
    } else {
        let mut t = Table::new(&[
            "KIND", "NAME", "ADMIN", "STATE", "UPTIME", "CONNS", "MSGS IN", "MSGS OUT", "RSS",
            "VERSION",
        ]);
        for s in &all {
            t.row(vec![
                s.kind.clone(),
                s.name.clone(),
                s.admin_addr.clone(),
                s.state.clone(),
                if s.state == "down" {
                    "-".into()
                } else {
                    duration_ms(s.uptime_ms)
                },
                s.connections_total.to_string(),
                s.msgs_in_total.to_string(),
                s.msgs_out_total.to_string(),
                if s.rss_bytes > 0 {
                    bytes(s.rss_bytes)
                } else {
                    "-".into()
                },
                s.version.clone(),
            ]);
        }
        t.print();
        for s in all.iter().filter(|s| s.error.is_some()) {
            eprintln!(
                "{} {}: {}",
                s.kind,
                s.admin_addr,
                s.error.as_deref().unwrap_or("")
            );
        }
    }
    let down = all.iter().any(|s| s.state == "down");
    Ok(if down {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
