//! Which accounts the simulated users log in as: a name list, a name pattern
//! (`user{0001..2000}`), or a user id range (looked up on db_proxy_server's admin port); and
//! creating them first through db_proxy_server's admin port when asked.

use anyhow::{Context, bail};
use im_proto::admin::{AdminResult, ImAdminUserAddReq, ImAdminUserListReq, NewUserSpec};

use crate::admin::AdminClient;
use crate::config::Config;

/// Most names one pattern may produce (a typo such as `{1..10000000}` should not eat memory).
pub const MAX_USERS: u64 = 1_000_000;

/// Users per IMAdminUserAddReq (db_proxy_server's cap per request).
const ADD_CHUNK: usize = 1000;

/// Users per IMAdminUserListReq page.
const LIST_PAGE: u32 = 1000;

/// Expands `prefix{A..B}suffix` into names; the width of `A` (with its leading zeros) is kept,
/// so `user{0001..0003}` gives `user0001`, `user0002`, `user0003`. A text without braces is one
/// name.
pub fn expand_pattern(pattern: &str) -> anyhow::Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') || pattern.trim().is_empty() {
            bail!("user pattern {pattern:?}: expected a name or prefix{{A..B}}suffix");
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|c| c + open)
        .with_context(|| format!("user pattern {pattern:?}: `{{` without `}}`"))?;
    let (prefix, range, suffix) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if suffix.contains('{') {
        bail!("user pattern {pattern:?}: only one {{A..B}} range is supported");
    }
    let (a, b) = range.split_once("..").with_context(|| {
        format!("user pattern {pattern:?}: the braces must hold a range such as {{0001..2000}}")
    })?;
    let parse = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("user pattern {pattern:?}: {s:?} is not a number"))
    };
    let (from, to) = (parse(a)?, parse(b)?);
    if from > to {
        bail!("user pattern {pattern:?}: the range {from}..{to} is empty");
    }
    if to - from + 1 > MAX_USERS {
        bail!(
            "user pattern {pattern:?}: {} names, at most {MAX_USERS}",
            to - from + 1
        );
    }
    let width = a.len();
    Ok((from..=to)
        .map(|n| format!("{prefix}{n:0width$}{suffix}"))
        .collect())
}

/// Parses `A..B` (inclusive) into a user id range.
pub fn parse_id_range(text: &str) -> anyhow::Result<(u32, u32)> {
    let (a, b) = text
        .split_once("..")
        .with_context(|| format!("user id range {text:?}: expected FROM..TO, e.g. 1..20"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .with_context(|| format!("user id range {text:?}: {s:?} is not a user id"))
    };
    let (from, to) = (parse(a)?, parse(b)?);
    if from == 0 || from > to {
        bail!("user id range {text:?}: expected 1 <= FROM <= TO");
    }
    Ok((from, to))
}

async fn db_admin(config: &Config) -> anyhow::Result<AdminClient> {
    let token = config.require_token()?;
    let addr = config.require_one("db_proxy_server")?;
    AdminClient::connect(addr, token).await
}

/// Login names of the users with ids in `from..=to`, from db_proxy_server's admin port.
pub async fn names_of_ids(config: &Config, from: u32, to: u32) -> anyhow::Result<Vec<String>> {
    let admin = db_admin(config).await?;
    let mut names = Vec::new();
    let mut after = from - 1;
    loop {
        let page = admin
            .call(&ImAdminUserListReq {
                after_user_id: Some(after),
                limit: Some(LIST_PAGE),
                name: None,
            })
            .await?;
        crate::admin::check(page.result_code(), None, "listing users")?;
        for u in &page.users {
            let id = u.user_id.unwrap_or(0);
            if (from..=to).contains(&id) {
                names.push(u.name.clone().unwrap_or_default());
            }
        }
        match page.next_after_user_id {
            Some(n) if n != 0 && n < to => after = n,
            _ => break,
        }
    }
    admin.close();
    if names.is_empty() {
        bail!("no users with ids {from}..{to} in the database");
    }
    Ok(names)
}

/// What [`create_users`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// New accounts.
    pub created: usize,
    /// Names that already existed (kept as they are).
    pub existing: usize,
}

/// Creates the accounts through db_proxy_server's admin port (IMAdminUserAddReq, in chunks);
/// names that are taken already are left alone, so a second run reuses them.
pub async fn create_users(
    config: &Config,
    names: &[String],
    password: &str,
) -> anyhow::Result<Created> {
    let admin = db_admin(config).await?;
    let mut done = Created::default();
    for chunk in names.chunks(ADD_CHUNK) {
        let req = ImAdminUserAddReq {
            users: chunk
                .iter()
                .map(|n| NewUserSpec {
                    name: Some(n.clone()),
                    password: Some(password.to_owned()),
                    nick: Some(n.clone()),
                    ..NewUserSpec::default()
                })
                .collect(),
        };
        let rsp = admin.call(&req).await?;
        if rsp.result_code() == AdminResult::AdminUnsupported {
            bail!("db_proxy_server cannot create users through its admin port (too old?)");
        }
        for (i, name) in chunk.iter().enumerate() {
            let id = rsp.user_ids.get(i).copied().unwrap_or(0);
            let why = rsp.errors.get(i).map(String::as_str).unwrap_or("");
            if id != 0 {
                done.created += 1;
            } else if why.contains("taken") || why.contains("exist") || why.contains("duplicate") {
                done.existing += 1;
            } else {
                bail!(
                    "creating user {name:?}: {}",
                    if why.is_empty() {
                        rsp.result_string.as_deref().unwrap_or("failed")
                    } else {
                        why
                    }
                );
            }
        }
    }
    admin.close();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            expand_pattern("user{0001..0003}").unwrap_or_default(),
            ["user0001", "user0002", "user0003"]
        );
        assert_eq!(
            expand_pattern("a{8..10}b").unwrap_or_default(),
            ["a8b", "a9b", "a10b"]
        );
        assert_eq!(expand_pattern("zhangsan").unwrap_or_default(), ["zhangsan"]);
        for bad in [
            "u{3..1}",
            "u{1..x}",
            "u{1-3}",
            "u{1..2",
            "u{1..2}{3..4}",
            "",
        ] {
            assert!(expand_pattern(bad).is_err(), "{bad}");
        }
        assert!(expand_pattern("u{1..9999999}").is_err());
        assert_eq!(parse_id_range("1..20").ok(), Some((1, 20)));
        assert!(parse_id_range("0..3").is_err() && parse_id_range("5").is_err());
    }
}
