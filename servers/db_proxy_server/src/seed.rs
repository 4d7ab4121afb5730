//! Demo data: departments, users (with documented passwords) and groups from a TOML file
//! (`fixtures/seed/demo.toml`), loaded through the [`Store`] API so that it works on either
//! backend. Loading is skipped when the database already has users, so it can run at every
//! start.
//!
//! ```toml
//! [[department]]            # in order; a parent must come before its children
//! name = "研发部"
//! parent = "总部"            # optional; absent = top level
//! priority = 2               # optional, display order
//!
//! [[user]]
//! name = "zhangsan"          # login name
//! password = "123456"        # plain; stored in the original's salted format
//! nick = "张三"
//! department = "研发部"
//! sex = 1                    # optional: 0 unknown, 1 male, 2 female
//! email = "..."              # optional, as are phone, domain, avatar
//!
//! [[group]]
//! name = "全体员工"
//! kind = "normal"            # or "temporary"
//! creator = "zhangsan"       # optional login name; absent = created by the admin (0)
//! members = ["*"]            # login names; "*" = every user of the file
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use im_storage::{GroupKind, NewGroup, NewUser, Store};
use serde::Deserialize;

/// The seed file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Departments, parents first.
    #[serde(default)]
    pub department: Vec<SeedDepartment>,
    /// Users.
    #[serde(default)]
    pub user: Vec<SeedUser>,
    /// Groups.
    #[serde(default)]
    pub group: Vec<SeedGroup>,
}

/// A department of the seed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDepartment {
    /// Name (unique within the file).
    pub name: String,
    /// Parent's name; absent = top level.
    #[serde(default)]
    pub parent: Option<String>,
    /// Display order.
    #[serde(default)]
    pub priority: u32,
}

/// A user of the seed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Login name.
    pub name: String,
    /// Plain password (demo only).
    pub password: String,
    /// Nickname.
    pub nick: String,
    /// Department name.
    pub department: String,
    /// 0 unknown, 1 male, 2 female.
    #[serde(default)]
    pub sex: u8,
    /// E-mail.
    #[serde(default)]
    pub email: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
    /// Pinyin / domain.
    #[serde(default)]
    pub domain: String,
    /// Avatar URL.
    #[serde(default)]
    pub avatar: String,
}

/// A group of the seed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// Name.
    pub name: String,
    /// "normal" or "temporary".
    pub kind: String,
    /// Creator's login name; absent = the admin (0).
    #[serde(default)]
    pub creator: Option<String>,
    /// Members' login names; "*" = every user of the file.
    pub members: Vec<String>,
    /// Avatar URL.
    #[serde(default)]
    pub avatar: String,
}

/// What loading did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// True when the database had users already and nothing was loaded.
    pub skipped: bool,
    /// Departments created.
    pub departments: usize,
    /// Users created.
    pub users: usize,
    /// Groups created.
    pub groups: usize,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.skipped {
            f.write_str("skipped: the database already has users")
        } else {
            write!(
                f,
                "{} departments, {} users, {} groups",
                self.departments, self.users, self.groups
            )
        }
    }
}

/// Parses a seed file.
pub fn parse(text: &str) -> anyhow::Result<SeedFile> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Loads the seed file at `path` into `store`, unless it has users already.
pub async fn load<S: Store>(store: &S, path: &Path) -> anyhow::Result<SeedReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read seed file {}", path.display()))?;
    let seed = parse(&text).with_context(|| format!("seed file {}", path.display()))?;
    load_parsed(store, &seed).await
}

/// Loads parsed seed data into `store`, unless it has users already.
pub async fn load_parsed<S: Store>(store: &S, seed: &SeedFile) -> anyhow::Result<SeedReport> {
    if !store.list_users(0, 1).await?.is_empty() {
        return Ok(SeedReport {
            skipped: true,
            ..SeedReport::default()
        });
    }
    let mut report = SeedReport::default();
    let mut depts: HashMap<&str, u32> = HashMap::new();
    for d in &seed.department {
        let parent = match d.parent.as_deref() {
            None | Some("") => 0,
            Some(p) => match depts.get(p) {
                Some(id) => *id,
                None => bail!(
                    "department {:?}: parent {p:?} is not defined before it",
                    d.name
                ),
            },
        };
        let id = store.add_department(&d.name, parent, d.priority).await?;
        depts.insert(&d.name, id);
        report.departments += 1;
    }
    let mut users: HashMap<&str, u32> = HashMap::new();
    for u in &seed.user {
        let Some(&depart_id) = depts.get(u.department.as_str()) else {
            bail!("user {:?}: unknown department {:?}", u.name, u.department);
        };
        let id = store
            .add_user(NewUser {
                name: u.name.clone(),
                password: u.password.clone(),
                nick: u.nick.clone(),
                sex: u.sex,
                domain: u.domain.clone(),
                phone: u.phone.clone(),
                email: u.email.clone(),
                avatar: u.avatar.clone(),
                depart_id,
                status: 0,
            })
            .await
            .with_context(|| format!("user {:?}", u.name))?;
        users.insert(&u.name, id);
        report.users += 1;
    }
    for g in &seed.group {
        let kind = match g.kind.as_str() {
            "normal" => GroupKind::Normal,
            "temporary" => GroupKind::Temporary,
            other => bail!(
                "group {:?}: kind {other:?} is not \"normal\" or \"temporary\"",
                g.name
            ),
        };
        let creator = match g.creator.as_deref() {
            None | Some("") => 0,
            Some(c) => *users
                .get(c)
                .with_context(|| format!("group {:?}: unknown creator {c:?}", g.name))?,
        };
        let mut members = Vec::new();
        for m in &g.members {
            if m == "*" {
                members.extend(seed.user.iter().filter_map(|u| users.get(u.name.as_str())));
            } else {
                match users.get(m.as_str()) {
                    Some(id) => members.push(*id),
                    None => bail!("group {:?}: unknown member {m:?}", g.name),
                }
            }
        }
        members.sort_unstable();
        members.dedup();
        store
            .create_group(NewGroup {
                creator,
                name: g.name.clone(),
                avatar: g.avatar.clone(),
                kind,
                members,
            })
            .await
            .with_context(|| format!("group {:?}", g.name))?;
        report.groups += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_file_parses_and_is_consistent() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/seed/demo.toml");
        let text = std::fs::read_to_string(path).expect("demo seed file");
        let seed = parse(&text).expect("parses");
        assert!(seed.department.len() >= 3);
        assert!((18..=25).contains(&seed.user.len()), "{}", seed.user.len());
        assert_eq!(seed.group.len(), 3);
        let depts: Vec<&str> = seed.department.iter().map(|d| d.name.as_str()).collect();
        let users: Vec<&str> = seed.user.iter().map(|u| u.name.as_str()).collect();
        for u in &seed.user {
            assert!(depts.contains(&u.department.as_str()), "{}", u.name);
            assert!(!u.password.is_empty(), "{}", u.name);
        }
        for g in &seed.group {
            for m in &g.members {
                assert!(m == "*" || users.contains(&m.as_str()), "{m}");
            }
        }
        // The README table in the file's header lists every user and password.
        for u in &seed.user {
            assert!(
                text.lines()
                    .any(|l| l.starts_with('#') && l.contains(&u.name) && l.contains(&u.password)),
                "user {} is missing from the header table",
                u.name
            );
        }
    }
}
