//! `imctl servers`: the msg_servers login_server knows, with their load.

use std::process::ExitCode;

use im_proto::admin::ImAdminMsgServerListReq;
use serde::Serialize;

use crate::admin::{AdminClient, check};
use crate::config::Config;
use crate::output::{Table, duration_ms, json};

/// One msg_server as login_server sees it.
#[derive(Debug, Clone, Serialize)]
pub struct MsgServerRow {
    /// Host name it registered with.
    pub host_name: String,
    /// Address handed to clients.
    pub ip1: String,
    /// Backup address.
    pub ip2: String,
    /// Client port.
    pub port: u32,
    /// Authenticated connections it reported.
    pub cur_conn_cnt: u32,
    /// Its configured maximum.
    pub max_conn_cnt: u32,
    /// Logins handed out but not reported yet.
    pub pending_logins: u32,
    /// Excluded from new logins.
    pub draining: bool,
    /// Time since it registered, ms.
    pub registered_ms: u64,
    /// Logins handed out to it.
    pub assignments_total: u64,
}

/// Fetches the list from the first login_server.
pub async fn fetch(config: &Config) -> anyhow::Result<Vec<MsgServerRow>> {
    let c =
        AdminClient::connect(config.require_one("login_server")?, config.require_token()?).await?;
    let rsp = c.call(&ImAdminMsgServerListReq {}).await?;
    check(rsp.result_code(), None, "listing msg_servers")?;
    Ok(rsp
        .servers
        .iter()
        .map(|s| MsgServerRow {
            host_name: s.host_name().to_owned(),
            ip1: s.ip1().to_owned(),
            ip2: s.ip2().to_owned(),
            port: s.port(),
            cur_conn_cnt: s.cur_conn_cnt(),
            max_conn_cnt: s.max_conn_cnt(),
            pending_logins: s.pending_logins(),
            draining: s.draining(),
            registered_ms: s.registered_ms(),
            assignments_total: s.assignments_total(),
        })
        .collect())
}

/// `imctl servers`
pub async fn run(config: &Config, as_json: bool) -> anyhow::Result<ExitCode> {
    let rows = fetch(config).await?;
    if as_json {
        json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "HOST",
        "ADDRESS",
        "USERS",
        "MAX",
        "PENDING",
        "STATE",
        "REGISTERED",
        "ASSIGNED",
    ]);
    for r in &rows {
        t.row(vec![
            r.host_name.clone(),
            format!("{}:{}", r.ip1, r.port),
            r.cur_conn_cnt.to_string(),
            r.max_conn_cnt.to_string(),
            r.pending_logins.to_string(),
            if r.draining { "draining" } else { "up" }.into(),
            duration_ms(r.registered_ms),
            r.assignments_total.to_string(),
        ]);
    }
    t.print();
    if rows.is_empty() {
        eprintln!("login_server has no msg_server registered");
    }
    Ok(ExitCode::SUCCESS)
}
