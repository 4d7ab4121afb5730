//! `imctl route ls` / `imctl route who USER`: route_server's user table.

use std::process::ExitCode;

use im_proto::admin::{AdminResult, ImAdminLocateUserReq, ImAdminRouteListReq, RouteEntry};
use serde::Serialize;

use crate::admin::{AdminClient, check};
use crate::cli::{RouteLsArgs, RouteWhoArgs, client_type_name};
use crate::config::Config;
use crate::output::{Table, json};

/// One user and where they are.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    /// User id.
    pub user_id: u32,
    /// online/offline as the wire reports it (PC presence only).
    pub wire_status: String,
    /// (msg_server, client type, connections).
    pub locations: Vec<Location>,
}

/// One (msg_server, client type) location.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// msg_server as route_server names it.
    pub msg_server: String,
    /// Client type name.
    pub client_type: String,
    /// Connections.
    pub connections: u32,
}

fn row(e: &RouteEntry) -> RouteRow {
    RouteRow {
        user_id: e.user_id(),
        wire_status: if e.wire_status() == 1 {
            "online"
        } else {
            "offline"
        }
        .into(),
        locations: e
            .locations
            .iter()
            .map(|l| Location {
                msg_server: l.msg_server().to_owned(),
                client_type: client_type_name(l.client_type() as u32).to_owned(),
                connections: l.connections(),
            })
            .collect(),
    }
}

fn print_rows(rows: &[RouteRow]) {
    let mut t = Table::new(&["USER", "WIRE", "MSG_SERVER", "CLIENT", "CONNS"]);
    for r in rows {
        for (i, l) in r.locations.iter().enumerate() {
            t.row(vec![
                if i == 0 {
                    r.user_id.to_string()
                } else {
                    String::new()
                },
                if i == 0 {
                    r.wire_status.clone()
                } else {
                    String::new()
                },
                l.msg_server.clone(),
                l.client_type.clone(),
                l.connections.to_string(),
            ]);
        }
    }
    t.print();
}

/// Paged listing.
#[derive(Debug, Clone, Serialize)]
pub struct RoutePage {
    /// Users on this page.
    pub users: Vec<RouteRow>,
    /// Users online in total.
    pub total_users: u64,
    /// msg_server links of route_server.
    pub msg_server_links: u32,
    /// `--after` for the next page (0 = last page).
    pub next_after: u32,
}

/// `imctl route ls`
pub async fn ls(config: &Config, a: &RouteLsArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let c =
        AdminClient::connect(config.require_one("route_server")?, config.require_token()?).await?;
    let rsp = c
        .call(&ImAdminRouteListReq {
            after_user_id: Some(a.after),
            limit: Some(a.limit),
        })
        .await?;
    check(rsp.result_code(), None, "listing routes")?;
    let page = RoutePage {
        users: rsp.entries.iter().map(row).collect(),
        total_users: rsp.total_users(),
        msg_server_links: rsp.msg_server_links(),
        next_after: rsp.next_after_user_id(),
    };
    if as_json {
        json(&page)?;
    } else {
        print_rows(&page.users);
        eprintln!(
            "{} users online over {} msg_server links{}",
            page.total_users,
            page.msg_server_links,
            if page.next_after != 0 {
                format!("; next page: --after {}", page.next_after)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `imctl route who USER`; exit code 3 when the user is offline.
pub async fn who(config: &Config, a: &RouteWhoArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let c =
        AdminClient::connect(config.require_one("route_server")?, config.require_token()?).await?;
    let rsp = c
        .call(&ImAdminLocateUserReq {
            user_id: Some(a.user),
            user_ids: Vec::new(),
        })
        .await?;
    if rsp.result_code() == AdminResult::AdminNotFound {
        if as_json {
            json(&serde_json::json!({ "user_id": a.user, "online": false }))?;
        } else {
            println!("user {} is not connected", a.user);
        }
        return Ok(ExitCode::from(3));
    }
    check(rsp.result_code(), None, "locating the user")?;
    let r = rsp.entry.as_ref().map(row);
    match (&r, as_json) {
        (Some(r), true) => json(r)?,
        (Some(r), false) => print_rows(std::slice::from_ref(r)),
        (None, _) => anyhow::bail!("route_server answered without an entry"),
    }
    Ok(ExitCode::SUCCESS)
}
