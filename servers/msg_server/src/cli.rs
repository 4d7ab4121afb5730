//! Command-line flags of the msg_server binary (here so that man pages can be generated from
//! the library).

use std::path::PathBuf;

use clap::Parser;

/// msg_server: the server TeamTalk clients talk to.
#[derive(Debug, Parser)]
#[command(name = "msg_server", version, about, long_about = None)]
pub struct Cli {
    /// TOML config file; without it, defaults plus `IM_MSG_SERVER_*` environment variables.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
