//! Names on the command line: users and groups may be given by name or id. Names are looked
//! up through db_proxy's admin port (user list with a name filter, group pages).

use anyhow::{Context, bail};
use im_proto::admin::{ImAdminGroupListReq, ImAdminUserListReq};

use crate::admin::{AdminClient, check};
use crate::config::Config;

/// Largest page asked for while scanning groups by name.
const GROUP_SCAN_PAGE: u32 = 500;

/// An authenticated connection to the first db_proxy_server's admin port.
pub async fn db_proxy(config: &Config) -> anyhow::Result<AdminClient> {
    AdminClient::connect(
        config.require_one("db_proxy_server")?,
        config.require_token()?,
    )
    .await
}

/// A numeric id, when `s` is all digits (so a login name made only of digits must be given
/// by its id).
pub fn as_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|id| *id != 0)
}

/// The id of `user` (a login name or an id).
pub async fn user_id(db: &AdminClient, user: &str) -> anyhow::Result<u32> {
    if let Some(id) = as_id(user) {
        return Ok(id);
    }
    let rsp = db
        .call(&ImAdminUserListReq {
            after_user_id: None,
            limit: None,
            name: Some(user.to_owned()),
        })
        .await?;
    check(
        rsp.result_code(),
        None,
        &format!("looking up user {user:?}"),
    )?;
    match rsp.users.first() {
        Some(u) => Ok(u.user_id()),
        None => bail!("no user named {user:?} (give a login name or a numeric id)"),
    }
}

/// The ids of several users, in order.
pub async fn user_ids(db: &AdminClient, users: &[String]) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::with_capacity(users.len());
    for u in users {
        ids.push(user_id(db, u).await?);
    }
    Ok(ids)
}

/// The id of `group` (an id, or a name that exactly one group has).
pub async fn group_id(db: &AdminClient, group: &str) -> anyhow::Result<u32> {
    if let Some(id) = as_id(group) {
        return Ok(id);
    }
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let rsp = db
            .call(&ImAdminGroupListReq {
                after_group_id: Some(after),
                limit: Some(GROUP_SCAN_PAGE),
            })
            .await?;
        check(rsp.result_code(), None, "listing groups")?;
        found.extend(
            rsp.groups
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.group_id()),
        );
        after = rsp.next_after_group_id();
        if after == 0 {
            break;
        }
    }
    match found.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no group named {group:?} (give a group id or its exact name)"),
        ids => bail!(
            "{} groups are named {group:?} (ids {ids:?}); give the id",
            ids.len()
        ),
    }
}

/// The first route_server that answers, for kicks and group notifies.
pub async fn route_server(config: &Config) -> anyhow::Result<AdminClient> {
    let token = config.require_token()?;
    config.require_one("route_server")?;
    let mut last = None;
    for addr in config.endpoints("route_server") {
        match AdminClient::connect(addr, token).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no route_server configured")))
        .context("no route_server answered")
}
