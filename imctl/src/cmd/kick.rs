//! `imctl kick USER [--client-type T]`: through route_server, every msg_server holding a
//! matching connection sends IMKickUser (reason 1) and closes it.

use std::process::ExitCode;

use im_proto::admin::{AdminResult, ImAdminKickUserReq};
use serde::Serialize;

use crate::admin::{AdminClient, check};
use crate::cli::{KickArgs, parse_client_type};
use crate::config::Config;
use crate::output::json;

/// Result of a kick.
#[derive(Debug, Clone, Serialize)]
pub struct KickResult {
    /// User.
    pub user_id: u32,
    /// Connections closed.
    pub kicked: u32,
}

/// Kicks `user` (all client types when `client_type` is 0) through the first route_server.
pub async fn kick(config: &Config, user: u32, client_type: u32) -> anyhow::Result<Option<u32>> {
    let c =
        AdminClient::connect(config.require_one("route_server")?, config.require_token()?).await?;
    let rsp = c
        .call(&ImAdminKickUserReq {
            user_id: Some(user),
            client_type: Some(client_type),
        })
        .await?;
    if rsp.result_code() == AdminResult::AdminNotFound {
        return Ok(None);
    }
    check(rsp.result_code(), rsp.result_string.as_deref(), "kicking")?;
    Ok(Some(rsp.kicked()))
}

/// `imctl kick`; exit code 3 when the user had no matching connection.
pub async fn run(config: &Config, a: &KickArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let ct = match &a.client_type {
        Some(t) => parse_client_type(t)?,
        None => 0,
    };
    let kicked = kick(config, a.user, ct).await?;
    let r = KickResult {
        user_id: a.user,
        kicked: kicked.unwrap_or(0),
    };
    if as_json {
        json(&r)?;
    } else if kicked.is_some() {
        println!("kicked {} connection(s) of user {}", r.kicked, r.user_id);
    } else {
        println!("user {} has no matching connection", r.user_id);
    }
    Ok(if kicked.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
