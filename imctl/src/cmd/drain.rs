//! `imctl drain SERVER`: login_server stops handing the msg_server out (as if it were full),
//! and the msg_server closes its users gradually so that they reconnect elsewhere.

use std::process::ExitCode;

use im_proto::admin::{ImAdminDrainReq, ImAdminStatsReq};
use serde::Serialize;

use crate::admin::{AdminClient, check};
use crate::cli::DrainArgs;
use crate::config::Config;
use crate::output::json;

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct DrainResult {
    /// The msg_server as given.
    pub server: String,
    /// true = drained, false = undrained.
    pub draining: bool,
    /// login_server stopped (or resumed) assigning it.
    pub login_server: bool,
    /// The msg_server itself was told (its admin address was found in the config).
    pub msg_server: bool,
}

/// Finds the admin address of the msg_server whose name or listen address is `server`.
async fn find_msg_server(config: &Config, token: &str, server: &str) -> Option<AdminClient> {
    for addr in config.endpoints("msg_server") {
        let Ok(c) = AdminClient::connect(addr, token).await else {
            continue;
        };
        if c.name == server || addr == server {
            return Some(c);
        }
        if let Ok(rsp) = c.call(&ImAdminStatsReq {}).await {
            let st = rsp.stats.unwrap_or_default();
            let listen = st.listen_addr();
            let port = listen.rsplit(':').next().unwrap_or("");
            if listen == server || server.ends_with(&format!(":{port}")) && !port.is_empty() {
                return Some(c);
            }
        }
        c.close();
    }
    None
}

/// `imctl drain`
pub async fn run(config: &Config, a: &DrainArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let token = config.require_token()?;
    let req = ImAdminDrainReq {
        msg_server: Some(a.server.clone()),
        undrain: Some(a.undo),
        close_per_sec: Some(a.rate),
    };
    let login = AdminClient::connect(config.require_one("login_server")?, token).await?;
    let rsp = login.call(&req).await?;
    check(
        rsp.result_code(),
        rsp.result_string.as_deref(),
        &format!("login_server drain of {}", a.server),
    )?;
    let mut told_msg_server = false;
    if let Some(ms) = find_msg_server(config, token, &a.server).await {
        let local = ImAdminDrainReq {
            msg_server: None,
            ..req.clone()
        };
        let rsp = ms.call(&local).await?;
        check(
            rsp.result_code(),
            rsp.result_string.as_deref(),
            "msg_server drain",
        )?;
        told_msg_server = true;
    }
    let r = DrainResult {
        server: a.server.clone(),
        draining: !a.undo,
        login_server: true,
        msg_server: told_msg_server,
    };
    if as_json {
        json(&r)?;
    } else {
        let verb = if a.undo { "undrained" } else { "draining" };
        println!("{}: {verb} at login_server", a.server);
        if told_msg_server {
            println!(
                "{}: msg_server told to {}",
                a.server,
                if a.undo {
                    "take users again"
                } else {
                    "move its users away"
                }
            );
        } else {
            eprintln!(
                "{}: its admin address is not in the imctl config; existing users stay until they reconnect",
                a.server
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
