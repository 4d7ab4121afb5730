//! Flags of the commands that act as a user (send, chat) and of `demo`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

/// Where a message goes: one user or one group.
#[derive(Debug, Args, Clone)]
#[command(group(ArgGroup::new("target").args(["to", "group"])))]
pub struct TargetArgs {
    /// Receiver: a login name or user id.
    #[arg(long, value_name = "USER")]
    pub to: Option<String>,
    /// Group: an id, or its name when that is unique.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// `imctl send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Sender: a login name or user id. Nobody logs in as them; their own clients stay
    /// connected and see the message as sent from another device.
    #[arg(long = "as", value_name = "USER")]
    pub from: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The text (encrypted the way stock clients do, with the configured aes_key).
    #[arg(required = true)]
    pub text: Vec<String>,
}

/// `imctl chat`
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Log in as this user (login name).
    pub user: String,
    /// Password [env: IM_PASSWORD] (asked on the terminal when missing).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `imctl demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the SQLite database and the demo's imctl.toml live (created if missing).
    #[arg(long, value_name = "DIR", default_value = "imctl-demo")]
    pub data_dir: PathBuf,
    /// Ports chosen by the system instead of TeamTalk's standard ones (8080, 8000, ...).
    #[arg(long)]
    pub ephemeral: bool,
    /// Number of msg_servers.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub msg_servers: usize,
    /// Address every server listens on and hands to clients.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Server log filter (RUST_LOG overrides it), e.g. info or warn,msg_server=debug.
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    pub log: String,
}
