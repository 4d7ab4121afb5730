//! Flags of the administration commands: users, departments, groups, discovery items.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `imctl user ...`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user, or many from a CSV file (columns: name,password[,nick,sex,dept,email,
    /// phone,domain,avatar,status], a header line naming them is optional).
    Add(UserAddArgs),
    /// List users (by id, a page at a time; --all for every page).
    Ls(UserLsArgs),
    /// Change a user's profile; unset flags stay as they are.
    Edit(UserEditArgs),
    /// Set a user's password (asked on the terminal unless --password or IM_PASSWORD).
    Passwd(UserPasswdArgs),
    /// Disable a user (status 3): no more logins, live sessions kicked.
    Disable(UserRefArgs),
}

/// `imctl user add`
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Login name (omit with --csv).
    #[arg(required_unless_present = "csv", conflicts_with = "csv")]
    pub name: Option<String>,
    /// Password [env: IM_PASSWORD] (asked on the terminal when missing).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Create the users listed in this CSV file instead.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// Profile fields shared by `user add` and `user edit`.
#[derive(Debug, Args, Clone, Default)]
pub struct ProfileArgs {
    /// Nickname (shown by clients; default: the login name).
    #[arg(long)]
    pub nick: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    #[arg(long)]
    pub sex: Option<u32>,
    /// Department id (see `imctl dept ls`).
    #[arg(long, value_name = "ID")]
    pub dept: Option<u32>,
    /// E-mail address.
    #[arg(long)]
    pub email: Option<String>,
    /// Phone number.
    #[arg(long)]
    pub phone: Option<String>,
    /// Pinyin / domain name.
    #[arg(long)]
    pub domain: Option<String>,
    /// Avatar URL.
    #[arg(long, value_name = "URL")]
    pub avatar: Option<String>,
    /// 0 active, 1 probation, 2 regular, 3 left/disabled, 4 intern (only 0 may log in).
    #[arg(long)]
    pub status: Option<u32>,
}

/// `imctl user ls`
#[derive(Debug, Args)]
pub struct UserLsArgs {
    /// Most users per page.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this user id (paging).
    #[arg(long, default_value_t = 0)]
    pub after: u32,
    /// Every page, not just one.
    #[arg(long)]
    pub all: bool,
    /// Only the user with this login name.
    #[arg(long)]
    pub name: Option<String>,
}

/// A user named on the command line.
#[derive(Debug, Args)]
pub struct UserRefArgs {
    /// Login name or numeric user id.
    pub user: String,
}

/// `imctl user edit`
#[derive(Debug, Args)]
pub struct UserEditArgs {
    /// Login name or numeric user id.
    pub user: String,
    #[command(flatten)]
    pub profile: ProfileArgs,
}

/// `imctl user passwd`
#[derive(Debug, Args)]
pub struct UserPasswdArgs {
    /// Login name or numeric user id.
    pub user: String,
    /// New password [env: IM_PASSWORD] (asked on the terminal when missing).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
}

/// `imctl dept ...`
#[derive(Debug, Subcommand)]
pub enum DeptCmd {
    /// Create a department.
    Add(DeptAddArgs),
    /// List departments.
    Ls,
}

/// `imctl dept add`
#[derive(Debug, Args)]
pub struct DeptAddArgs {
    /// Name.
    pub name: String,
    /// Parent department id (0 = top level).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub parent: u32,
    /// Display order.
    #[arg(long, default_value_t = 0)]
    pub priority: u32,
}

/// `imctl group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a group (normal unless --temporary) with its first members.
    Create(GroupCreateArgs),
    /// List groups with their members.
    Ls(GroupLsArgs),
    /// Add members; their clients are told at once.
    Add(GroupMembersArgs),
    /// Remove members; their clients are told at once.
    Rm(GroupMembersArgs),
}

/// `imctl group create`
#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    /// Group name.
    pub name: String,
    /// Members: login names or ids (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, value_name = "USER")]
    pub members: Vec<String>,
    /// A temporary group (clients' kind) instead of a normal (fixed) one.
    #[arg(long)]
    pub temporary: bool,
    /// Avatar URL.
    #[arg(long, value_name = "URL")]
    pub avatar: Option<String>,
    /// Creator shown to clients: a login name or id (default: none, the administrator).
    #[arg(long, value_name = "USER")]
    pub creator: Option<String>,
}

/// `imctl group ls`
#[derive(Debug, Args)]
pub struct GroupLsArgs {
    /// Most groups per page.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this group id (paging).
    #[arg(long, default_value_t = 0)]
    pub after: u32,
}

/// `imctl group add|rm`
#[derive(Debug, Args)]
pub struct GroupMembersArgs {
    /// Group id, or its name when that is unique.
    pub group: String,
    /// Users: login names or ids.
    #[arg(required = true, value_name = "USER")]
    pub users: Vec<String>,
}

/// `imctl discovery ...`
#[derive(Debug, Subcommand)]
pub enum DiscoveryCmd {
    /// List the items clients show in their discovery tab.
    Ls,
    /// Add an item.
    Add(DiscoveryAddArgs),
    /// Remove (hide) an item.
    Rm(DiscoveryRmArgs),
}

/// `imctl discovery add`
#[derive(Debug, Args)]
pub struct DiscoveryAddArgs {
    /// Title shown by clients.
    pub name: String,
    /// URL it opens.
    pub url: String,
    /// Display order.
    #[arg(long, default_value_t = 0)]
    pub priority: u32,
}

/// `imctl discovery rm`
#[derive(Debug, Args)]
pub struct DiscoveryRmArgs {
    /// Item id (see `imctl discovery ls`).
    pub id: u32,
}
