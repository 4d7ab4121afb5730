//! `imctl group create|ls|add|rm`: groups through db_proxy's admin port, as the
//! administrator. After a member change route_server broadcasts the member-change notify, so
//! every msg_server refreshes its member cache and tells the members' clients (Decisions 10).

use std::process::ExitCode;

use im_proto::admin::{
    ImAdminGroupCreateReq, ImAdminGroupListReq, ImAdminGroupMembersReq, ImAdminGroupNotifyReq,
};
use serde::Serialize;

use super::lookup;
use crate::admin::check;
use crate::cli::{GroupCmd, GroupCreateArgs, GroupLsArgs, GroupMembersArgs};
use crate::config::Config;
use crate::output::{Table, json};

/// `GROUP_MODIFY_TYPE_ADD` / `_DEL`; IM.BaseDefine.GroupType normal / temporary.
const MODIFY_ADD: u32 = 1;
const MODIFY_DEL: u32 = 2;
const GROUP_NORMAL: u32 = 1;
const GROUP_TEMPORARY: u32 = 2;

/// `imctl group ...`
pub async fn run(config: &Config, cmd: &GroupCmd, as_json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        GroupCmd::Create(a) => create(config, a, as_json).await,
        GroupCmd::Ls(a) => ls(config, a, as_json).await,
        GroupCmd::Add(a) => members(config, a, MODIFY_ADD, as_json).await,
        GroupCmd::Rm(a) => members(config, a, MODIFY_DEL, as_json).await,
    }
}

/// A group as printed.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    /// Id.
    pub group_id: u32,
    /// Name.
    pub name: String,
    /// "normal" or "temporary".
    pub kind: String,
    /// Creator (0 = the administrator).
    pub creator: u32,
    /// Membership version.
    pub version: u32,
    /// Member ids.
    pub members: Vec<u32>,
}

async fn create(config: &Config, a: &GroupCreateArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let members = lookup::user_ids(&db, &a.members).await?;
    let creator = match &a.creator {
        Some(c) => Some(lookup::user_id(&db, c).await?),
        None => None,
    };
    let rsp = db
        .call(&ImAdminGroupCreateReq {
            name: Some(a.name.clone()),
            avatar: a.avatar.clone(),
            group_type: Some(if a.temporary {
                GROUP_TEMPORARY
            } else {
                GROUP_NORMAL
            }),
            member_ids: members.clone(),
            creator,
        })
        .await?;
    check(
        rsp.result_code(),
        rsp.result_string.as_deref(),
        &format!("creating group {:?}", a.name),
    )?;
    if as_json {
        json(&serde_json::json!({
            "group_id": rsp.group_id(),
            "name": a.name,
            "members": members,
        }))?;
    } else {
        println!(
            "created group {} (id {}) with {} member(s)",
            a.name,
            rsp.group_id(),
            members.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn ls(config: &Config, a: &GroupLsArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let rsp = db
        .call(&ImAdminGroupListReq {
            after_group_id: Some(a.after),
            limit: Some(a.limit),
        })
        .await?;
    check(rsp.result_code(), None, "listing groups")?;
    let rows: Vec<GroupRow> = rsp
        .groups
        .iter()
        .map(|g| GroupRow {
            group_id: g.group_id(),
            name: g.name().to_owned(),
            kind: if g.group_type() == GROUP_TEMPORARY {
                "temporary"
            } else {
                "normal"
            }
            .to_owned(),
            creator: g.creator(),
            version: g.version(),
            members: g.member_ids.clone(),
        })
        .collect();
    if as_json {
        json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["ID", "NAME", "KIND", "CREATOR", "VERSION", "MEMBERS"]);
    for r in &rows {
        let members: Vec<String> = r.members.iter().map(u32::to_string).collect();
        t.row(vec![
            r.group_id.to_string(),
            r.name.clone(),
            r.kind.clone(),
            r.creator.to_string(),
            r.version.to_string(),
            members.join(","),
        ]);
    }
    t.print();
    if rsp.next_after_group_id() != 0 {
        eprintln!("more: --after {}", rsp.next_after_group_id());
    }
    Ok(ExitCode::SUCCESS)
}

/// What a member change did.
#[derive(Debug, Clone, Serialize)]
pub struct MembersResult {
    /// The group.
    pub group_id: u32,
    /// "add" or "rm".
    pub change: &'static str,
    /// Users added or removed.
    pub changed: Vec<u32>,
    /// Members now.
    pub members: Vec<u32>,
    /// The group's new version.
    pub version: u32,
    /// msg_servers the member-change notify went to.
    pub notified_msg_servers: u32,
}

async fn members(
    config: &Config,
    a: &GroupMembersArgs,
    change: u32,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let group = lookup::group_id(&db, &a.group).await?;
    let users = lookup::user_ids(&db, &a.users).await?;
    let rsp = db
        .call(&ImAdminGroupMembersReq {
            group_id: Some(group),
            change_type: Some(change),
            user_ids: users,
        })
        .await?;
    check(
        rsp.result_code(),
        rsp.result_string.as_deref(),
        &format!("changing the members of group {}", a.group),
    )?;
    // The change is stored; now every msg_server hears of it (route_server broadcasts).
    let route = lookup::route_server(config).await?;
    let notify = route
        .call(&ImAdminGroupNotifyReq {
            change_type: Some(change),
            group_id: Some(group),
            cur_user_ids: rsp.cur_user_ids.clone(),
            chg_user_ids: rsp.chg_user_ids.clone(),
        })
        .await?;
    check(
        notify.result_code(),
        None,
        "telling the msg_servers (the change itself is stored)",
    )?;
    let mut current = rsp.cur_user_ids.clone();
    current.sort_unstable();
    let r = MembersResult {
        group_id: group,
        change: if change == MODIFY_ADD { "add" } else { "rm" },
        changed: rsp.chg_user_ids.clone(),
        members: current,
        version: rsp.version(),
        notified_msg_servers: notify.msg_servers(),
    };
    if as_json {
        json(&r)?;
    } else {
        println!(
            "group {}: {} {:?}; {} member(s) now, version {}; {} msg_server(s) told",
            r.group_id,
            if change == MODIFY_ADD {
                "added"
            } else {
                "removed"
            },
            r.changed,
            r.members.len(),
            r.version,
            r.notified_msg_servers
        );
    }
    Ok(ExitCode::SUCCESS)
}
