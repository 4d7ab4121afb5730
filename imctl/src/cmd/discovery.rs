//! `imctl discovery ls|add|rm`: the items of the clients' discovery tab (FLOWS.md 21).

use std::process::ExitCode;

use im_proto::admin::{ImAdminDiscoveryAddReq, ImAdminDiscoveryListReq, ImAdminDiscoveryRemoveReq};
use serde::Serialize;

use super::lookup;
use crate::admin::check;
use crate::cli::DiscoveryCmd;
use crate::config::Config;
use crate::output::{Table, json};

/// A discovery item as printed.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryRow {
    /// Id.
    pub id: u32,
    /// Title.
    pub name: String,
    /// URL.
    pub url: String,
    /// Display order.
    pub priority: u32,
}

/// `imctl discovery ...`
pub async fn run(config: &Config, cmd: &DiscoveryCmd, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    match cmd {
        DiscoveryCmd::Ls => {
            let rsp = db.call(&ImAdminDiscoveryListReq {}).await?;
            check(rsp.result_code(), None, "listing discovery items")?;
            let rows: Vec<DiscoveryRow> = rsp
                .items
                .iter()
                .map(|d| DiscoveryRow {
                    id: d.id(),
                    name: d.name().to_owned(),
                    url: d.url().to_owned(),
                    priority: d.priority(),
                })
                .collect();
            if as_json {
                json(&rows)?;
            } else {
                let mut t = Table::new(&["ID", "NAME", "URL", "PRIORITY"]);
                for r in &rows {
                    t.row(vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.url.clone(),
                        r.priority.to_string(),
                    ]);
                }
                t.print();
            }
        }
        DiscoveryCmd::Add(a) => {
            let rsp = db
                .call(&ImAdminDiscoveryAddReq {
                    name: Some(a.name.clone()),
                    url: Some(a.url.clone()),
                    priority: Some(a.priority),
                })
                .await?;
            check(
                rsp.result_code(),
                rsp.result_string.as_deref(),
                "adding a discovery item",
            )?;
            if as_json {
                json(&serde_json::json!({ "id": rsp.id(), "name": a.name, "url": a.url }))?;
            } else {
                println!("added discovery item {} (id {})", a.name, rsp.id());
            }
        }
        DiscoveryCmd::Rm(a) => {
            let rsp = db
                .call(&ImAdminDiscoveryRemoveReq { id: Some(a.id) })
                .await?;
            check(
                rsp.result_code(),
                rsp.result_string.as_deref(),
                &format!("removing discovery item {}", a.id),
            )?;
            if as_json {
                json(&serde_json::json!({ "id": a.id, "removed": true }))?;
            } else {
                println!("removed discovery item {}", a.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
