//! The command line (clap). The flags of the larger command families live in submodules:
//! [`accounts`] (user, dept, group, discovery) and [`client`] (send, chat, demo).

pub mod accounts;
pub mod client;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use accounts::{
    DeptAddArgs, DeptCmd, DiscoveryAddArgs, DiscoveryCmd, DiscoveryRmArgs, GroupCmd,
    GroupCreateArgs, GroupLsArgs, GroupMembersArgs, ProfileArgs, UserAddArgs, UserCmd,
    UserEditArgs, UserLsArgs, UserPasswdArgs, UserRefArgs,
};
pub use client::{ChatArgs, DemoArgs, SendArgs, TargetArgs};

/// Operate a TeamTalk-compatible cluster.
#[derive(Debug, Parser)]
#[command(name = "imctl", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Config file naming the cluster's endpoints and token [env: IMCTL_CONFIG]
    /// (default: ./imctl.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Admin token [env: IM_ADMIN_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// login_server URL, e.g. http://127.0.0.1:8080/msg_server [env: IM_LOGIN_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub login_url: Option<String>,
    /// Admin address of a server: KIND=HOST:PORT[,HOST:PORT...] (repeatable)
    /// [env: IM_ADMIN_<KIND>].
    #[arg(long = "admin", global = true, value_name = "KIND=ADDR")]
    pub admin: Vec<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the whole suite in this process on SQLite, with demo users, for a first look.
    Demo(DemoArgs),
    /// Every configured server: state, uptime, connections, messages, memory.
    Status,
    /// The msg_servers login_server hands out, with their load.
    Servers,
    /// route_server's user table.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Disconnect a user everywhere (all devices or one client type).
    Kick(KickArgs),
    /// Drain a msg_server: no new logins, existing users moved away gradually.
    Drain(DrainArgs),
    /// Users: add (one, or many from a CSV), list, edit, set a password, disable.
    #[command(subcommand)]
    User(UserCmd),
    /// Departments: add, list.
    #[command(subcommand)]
    Dept(DeptCmd),
    /// Groups: create, list, add or remove members (their clients are told).
    #[command(subcommand)]
    Group(GroupCmd),
    /// The items of the clients' discovery tab: list, add, remove.
    #[command(subcommand)]
    Discovery(DiscoveryCmd),
    /// Send a message on a user's behalf (their own clients stay connected).
    Send(SendArgs),
    /// A minimal line-based client: log in, print what arrives, send each line typed.
    Chat(ChatArgs),
    /// Live cluster dashboard: verdict, msg_servers, route_server, db_proxy, services.
    Top(crate::top::TopArgs),
    /// Run a scenario of scripted fake clients (fixtures/scenarios/); exit 2 when a
    /// threshold fails, 3 when the scenario is invalid. `imctl sim validate FILE` checks one.
    Sim(crate::sim::SimArgs),
    /// Load generator: idle connections, 1:1 throughput, group fan-out, login storm; HDR
    /// latency percentiles, verified delivery, JSON and Markdown reports.
    Bench(crate::bench::BenchArgs),
    /// Database migrations: create a schema, copy between SQLite and MySQL/MariaDB (with the
    /// Redis or embedded cache data), import an original TeamTalk deployment.
    #[command(subcommand)]
    Migrate(crate::cmd::migrate::MigrateCmd),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// `imctl route ...`
#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// List online users and where they are connected.
    Ls(RouteLsArgs),
    /// Where one user is connected.
    Who(RouteWhoArgs),
}

/// `imctl route ls`
#[derive(Debug, Args)]
pub struct RouteLsArgs {
    /// Most users to list.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this user id (paging).
    #[arg(long, default_value_t = 0)]
    pub after: u32,
}

/// `imctl route who`
#[derive(Debug, Args)]
pub struct RouteWhoArgs {
    /// User id.
    pub user: u32,
}

/// `imctl kick`
#[derive(Debug, Args)]
pub struct KickArgs {
    /// User id.
    pub user: u32,
    /// Only this client type: windows, mac, ios, android, or a number (default: all).
    #[arg(long, value_name = "TYPE")]
    pub client_type: Option<String>,
}

/// `imctl drain`
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The msg_server: its name, host name or ip:port as login_server lists it.
    pub server: String,
    /// Undo a drain.
    #[arg(long)]
    pub undo: bool,
    /// Connections closed per second while draining (0 = the server's default).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
}

/// `imctl completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Parses a client type name or number.
pub fn parse_client_type(s: &str) -> anyhow::Result<u32> {
    match s.to_ascii_lowercase().as_str() {
        "windows" | "win" | "pc" => Ok(0x01),
        "mac" => Ok(0x02),
        "ios" => Ok(0x11),
        "android" => Ok(0x12),
        other => {
            let n = if let Some(h) = other.strip_prefix("0x") {
                u32::from_str_radix(h, 16).ok()
            } else {
                other.parse().ok()
            };
            match n {
                Some(n @ (0x01 | 0x02 | 0x11 | 0x12)) => Ok(n),
                _ => anyhow::bail!(
                    "client type {s:?}: expected windows, mac, ios, android or 1, 2, 17, 18"
                ),
            }
        }
    }
}

/// Display name of a client type.
pub fn client_type_name(t: u32) -> &'static str {
    match t {
        0x01 => "windows",
        0x02 => "mac",
        0x11 => "ios",
        0x12 => "android",
        0 => "-",
        _ => "unknown",
    }
}
