//! Command-line flags of the push_server binary (here so that man pages can be generated
//! from the library).

use std::path::PathBuf;

use clap::Parser;

/// push_server: delivers msg_servers' pushes to APNs, FCM or a webhook.
#[derive(Debug, Parser)]
#[command(name = "push_server", version, about, long_about = None)]
pub struct Cli {
    /// TOML config file; without it, defaults plus `IM_PUSH_SERVER_*` environment variables.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
