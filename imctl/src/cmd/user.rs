//! `imctl user add|ls|edit|passwd|disable`: accounts through db_proxy's admin port. Every
//! change bumps the user's `updated`, so clients' incremental syncs see it; disabling also
//! kicks the user's live sessions through route_server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use im_proto::admin::{
    AdminUser, ImAdminUserAddReq, ImAdminUserEditReq, ImAdminUserListReq, NewUserSpec,
};
use serde::Serialize;

use super::lookup;
use crate::admin::{AdminClient, check};
use crate::cli::{ProfileArgs, UserAddArgs, UserCmd, UserEditArgs, UserLsArgs, UserPasswdArgs};
use crate::config::Config;
use crate::output::{Table, json};
use crate::terminal::ask_password;

/// Users sent per request when adding from a CSV (db_proxy accepts up to 1000).
const ADD_CHUNK: usize = 500;

/// `imctl user ...`
pub async fn run(config: &Config, cmd: &UserCmd, as_json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Add(a) => add(config, a, as_json).await,
        UserCmd::Ls(a) => ls(config, a, as_json).await,
        UserCmd::Edit(a) => edit(config, a, as_json).await,
        UserCmd::Passwd(a) => passwd(config, a, as_json).await,
        UserCmd::Disable(a) => disable(config, &a.user, as_json).await,
    }
}

/// A user as printed.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    /// Id.
    pub user_id: u32,
    /// Login name.
    pub name: String,
    /// Nickname.
    pub nick: String,
    /// 0 unknown, 1 male, 2 female.
    pub sex: u32,
    /// Department id.
    pub depart_id: u32,
    /// 0 active ... 3 disabled.
    pub status: u32,
    /// E-mail.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Pinyin / domain.
    pub domain: String,
    /// Avatar URL.
    pub avatar: String,
    /// Signature.
    pub sign_info: String,
    /// Created (unix seconds).
    pub created: u32,
    /// Last change (unix seconds).
    pub updated: u32,
}

fn user_row(u: &AdminUser) -> UserRow {
    UserRow {
        user_id: u.user_id(),
        name: u.name().to_owned(),
        nick: u.nick().to_owned(),
        sex: u.sex(),
        depart_id: u.depart_id(),
        status: u.status(),
        email: u.email().to_owned(),
        phone: u.phone().to_owned(),
        domain: u.domain().to_owned(),
        avatar: u.avatar().to_owned(),
        sign_info: u.sign_info().to_owned(),
        created: u.created(),
        updated: u.updated(),
    }
}

/// Status as a word.
fn status_name(s: u32) -> &'static str {
    match s {
        0 => "active",
        1 => "probation",
        2 => "regular",
        3 => "disabled",
        4 => "intern",
        _ => "unknown",
    }
}

/// One created (or refused) user.
#[derive(Debug, Clone, Serialize)]
pub struct AddedUser {
    /// Login name.
    pub name: String,
    /// New id (0 when refused).
    pub user_id: u32,
    /// Why it was refused (absent when created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn spec(name: &str, password: &str, p: &ProfileArgs) -> NewUserSpec {
    NewUserSpec {
        name: Some(name.to_owned()),
        password: Some(password.to_owned()),
        nick: p.nick.clone(),
        sex: p.sex,
        domain: p.domain.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
        avatar: p.avatar.clone(),
        depart_id: p.dept,
        status: p.status,
    }
}

/// Column names a CSV header may use, in the default order.
const CSV_COLUMNS: &[&str] = &[
    "name", "password", "nick", "sex", "dept", "email", "phone", "domain", "avatar", "status",
];

/// Users from a CSV file: a header naming [`CSV_COLUMNS`] (any order, `depart_id` is accepted
/// for `dept`), or no header and the default order.
pub fn csv_specs(text: &str, origin: &Path) -> anyhow::Result<Vec<NewUserSpec>> {
    let records =
        crate::csv::parse(text).map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?;
    let mut rows = records.into_iter().peekable();
    let header = rows
        .peek()
        .filter(|r| r.first().is_some_and(|f| f.eq_ignore_ascii_case("name")))
        .cloned();
    let columns: Vec<String> = match header {
        Some(h) => {
            rows.next();
            h.iter()
                .map(|c| match c.to_ascii_lowercase().as_str() {
                    "depart_id" | "department" => "dept".to_owned(),
                    other => other.to_owned(),
                })
                .collect()
        }
        None => CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
    };
    if let Some(bad) = columns.iter().find(|c| !CSV_COLUMNS.contains(&c.as_str())) {
        bail!(
            "{}: unknown column {bad:?}; columns: {}",
            origin.display(),
            CSV_COLUMNS.join(", ")
        );
    }
    let mut specs = Vec::new();
    for (i, row) in rows.enumerate() {
        let mut s = NewUserSpec::default();
        for (col, value) in columns.iter().zip(row) {
            let number = |v: &str| -> anyhow::Result<Option<u32>> {
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse().map(Some).with_context(|| {
                    format!(
                        "{}: record {}: {col} {v:?} is not a number",
                        origin.display(),
                        i + 1
                    )
                })
            };
            let text = |v: String| (!v.is_empty()).then_some(v);
            match col.as_str() {
                "name" => s.name = text(value),
                "password" => s.password = text(value),
                "nick" => s.nick = text(value),
                "sex" => s.sex = number(&value)?,
                "dept" => s.depart_id = number(&value)?,
                "email" => s.email = text(value),
                "phone" => s.phone = text(value),
                "domain" => s.domain = text(value),
                "avatar" => s.avatar = text(value),
                _ => s.status = number(&value)?,
            }
        }
        specs.push(s);
    }
    if specs.is_empty() {
        bail!("{}: no users in the file", origin.display());
    }
    Ok(specs)
}

async fn add(config: &Config, a: &UserAddArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let specs = match (&a.csv, &a.name) {
        (Some(path), _) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            csv_specs(&text, path)?
        }
        (None, Some(name)) => {
            let pw = ask_password(a.password.clone(), format!("password for {name}: ")).await?;
            vec![spec(name, &pw, &a.profile)]
        }
        (None, None) => bail!("give a login name or --csv FILE"),
    };
    let db = lookup::db_proxy(config).await?;
    let mut added = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(ADD_CHUNK) {
        let rsp = db
            .call(&ImAdminUserAddReq {
                users: chunk.to_vec(),
            })
            .await?;
        if rsp.user_ids.len() != chunk.len() {
            check(
                rsp.result_code(),
                rsp.result_string.as_deref(),
                "adding users",
            )?;
            bail!(
                "db_proxy answered {} results for {} users",
                rsp.user_ids.len(),
                chunk.len()
            );
        }
        for (i, s) in chunk.iter().enumerate() {
            let error = rsp.errors.get(i).filter(|e| !e.is_empty()).cloned();
            added.push(AddedUser {
                name: s.name().to_owned(),
                user_id: rsp.user_ids[i],
                error,
            });
        }
    }
    let failed = added.iter().filter(|u| u.error.is_some()).count();
    if as_json {
        json(&added)?;
    } else {
        for u in &added {
            match &u.error {
                None => println!("created {} (id {})", u.name, u.user_id),
                Some(e) => eprintln!("not created {}: {e}", u.name),
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} users not created", added.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn ls(config: &Config, a: &UserLsArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let mut rows = Vec::new();
    let mut after = a.after;
    let next = loop {
        let rsp = db
            .call(&ImAdminUserListReq {
                after_user_id: Some(after),
                limit: Some(a.limit),
                name: a.name.clone(),
            })
            .await?;
        check(rsp.result_code(), None, "listing users")?;
        rows.extend(rsp.users.iter().map(user_row));
        after = rsp.next_after_user_id();
        if after == 0 || !a.all {
            break after;
        }
    };
    if as_json {
        json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["ID", "NAME", "NICK", "DEPT", "STATUS", "EMAIL", "PHONE"]);
    for r in &rows {
        t.row(vec![
            r.user_id.to_string(),
            r.name.clone(),
            r.nick.clone(),
            r.depart_id.to_string(),
            status_name(r.status).to_owned(),
            r.email.clone(),
            r.phone.clone(),
        ]);
    }
    t.print();
    if next != 0 {
        eprintln!("more: --after {next} (or --all)");
    }
    Ok(ExitCode::SUCCESS)
}

/// What an edit did.
#[derive(Debug, Clone, Serialize)]
pub struct EditResult {
    /// The user.
    pub user_id: u32,
    /// The command ("edit", "passwd", "disable").
    pub action: &'static str,
    /// Connections kicked (disable only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kicked: Option<u32>,
}

async fn apply(db: &AdminClient, req: ImAdminUserEditReq, what: &str) -> anyhow::Result<()> {
    let rsp = db.call(&req).await?;
    check(rsp.result_code(), rsp.result_string.as_deref(), what)
}

fn print_edit(r: &EditResult, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        json(r)?;
    } else {
        match r.kicked {
            Some(n) => println!(
                "user {}: {} ({n} connection(s) kicked)",
                r.user_id, r.action
            ),
            None => println!("user {}: {}", r.user_id, r.action),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn edit(config: &Config, a: &UserEditArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let user = lookup::user_id(&db, &a.user).await?;
    let p = &a.profile;
    let req = ImAdminUserEditReq {
        user_id: Some(user),
        nick: p.nick.clone(),
        sex: p.sex,
        domain: p.domain.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
        avatar: p.avatar.clone(),
        depart_id: p.dept,
        status: p.status,
        password: None,
    };
    apply(&db, req, &format!("editing user {}", a.user)).await?;
    let r = EditResult {
        user_id: user,
        action: "edited",
        kicked: None,
    };
    print_edit(&r, as_json)
}

async fn passwd(config: &Config, a: &UserPasswdArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let user = lookup::user_id(&db, &a.user).await?;
    let pw = ask_password(a.password.clone(), format!("new password for {}: ", a.user)).await?;
    if pw.is_empty() {
        bail!("the password is empty");
    }
    let req = ImAdminUserEditReq {
        user_id: Some(user),
        password: Some(pw),
        ..Default::default()
    };
    apply(&db, req, &format!("setting the password of {}", a.user)).await?;
    let r = EditResult {
        user_id: user,
        action: "password changed",
        kicked: None,
    };
    print_edit(&r, as_json)
}

async fn disable(config: &Config, user_arg: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let db = lookup::db_proxy(config).await?;
    let user = lookup::user_id(&db, user_arg).await?;
    let req = ImAdminUserEditReq {
        user_id: Some(user),
        status: Some(3),
        ..Default::default()
    };
    apply(&db, req, &format!("disabling user {user_arg}")).await?;
    // The status stops new logins; the live sessions go now (every client type).
    let kicked = super::kick::kick(config, user, 0)
        .await
        .with_context(|| format!("user {user} is disabled, but its sessions were not kicked"))?;
    let r = EditResult {
        user_id: user,
        action: "disabled",
        kicked: Some(kicked.unwrap_or(0)),
    };
    print_edit(&r, as_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_and_without_header() {
        let p = Path::new("users.csv");
        let with = csv_specs("name,nick,password,depart_id\namy,Amy,pw,3\n", p).unwrap();
        assert_eq!(with.len(), 1);
        assert_eq!(
            (
                with[0].name(),
                with[0].nick(),
                with[0].password(),
                with[0].depart_id()
            ),
            ("amy", "Amy", "pw", 3)
        );
        let without = csv_specs("bob,pw2,Bob,2\n", p).unwrap();
        assert_eq!((without[0].name(), without[0].sex()), ("bob", 2));
        let e = csv_specs("name,colour\nx,red\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("password"), "{e}");
        let e = csv_specs("name,sex\nx,male\n", p).unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("male"), "{e}");
    }
}
