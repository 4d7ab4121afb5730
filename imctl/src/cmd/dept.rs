//! `imctl dept add|ls`: departments through db_proxy's admin port.

use std::process::ExitCode;

use im_proto::admin::{ImAdminDeptAddReq, ImAdminDeptListReq};
use serde::Serialize;

use super::lookup;
use crate::admin::check;
use crate::cli::DeptCmd;
use crate::config::Config;
use crate::output::{Table, json};

/// A department as printed.
#[derive(Debug, Clone, Serialize)]
pub struct DeptRow {
    /// Id.
    pub dept_id: u32,
    /// Name.
    pub name: String,
    /// Parent id (0 = top level).
    pub parent_id: u32,
    /// Display order.
    pub priority: u32,
    /// 0 ok, 1 deleted.
    pub status: u32,
}

/// `imctl dept ...`
pub async fn run(config: &Config, cmd: &DeptCmd, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    match cmd {
        DeptCmd::Add(a) => {
            let rsp = db
                .call(&ImAdminDeptAddReq {
                    name: Some(a.name.clone()),
                    parent_id: Some(a.parent),
                    priority: Some(a.priority),
                })
                .await?;
            check(
                rsp.result_code(),
                rsp.result_string.as_deref(),
                &format!("adding department {:?}", a.name),
            )?;
            if as_json {
                json(&serde_json::json!({ "dept_id": rsp.dept_id(), "name": a.name }))?;
            } else {
                println!("created department {} (id {})", a.name, rsp.dept_id());
            }
        }
        DeptCmd::Ls => {
            let rsp = db.call(&ImAdminDeptListReq {}).await?;
            check(rsp.result_code(), None, "listing departments")?;
            let rows: Vec<DeptRow> = rsp
                .depts
                .iter()
                .map(|d| DeptRow {
                    dept_id: d.dept_id(),
                    name: d.name().to_owned(),
                    parent_id: d.parent_id(),
                    priority: d.priority(),
                    status: d.status(),
                })
                .collect();
            if as_json {
                json(&rows)?;
            } else {
                let mut t = Table::new(&["ID", "NAME", "PARENT", "PRIORITY", "STATUS"]);
                for r in &rows {
                    t.row(vec![
                        r.dept_id.to_string(),
                        r.name.clone(),
                        r.parent_id.to_string(),
                        r.priority.to_string(),
                        if r.status == 0 { "ok" } else { "deleted" }.to_owned(),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
