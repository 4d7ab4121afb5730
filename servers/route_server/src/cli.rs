//! Command-line flags of the route_server binary (here so that man pages can be generated
//! from the library).

use std::path::PathBuf;

use clap::Parser;

/// route_server: relays messages between msg_servers and keeps the cluster's presence.
#[derive(Debug, Parser)]
#[command(name = "route_server", version, about, long_about = None)]
pub struct Cli {
    /// TOML config file; without it, defaults plus `IM_ROUTE_SERVER_*` environment variables.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
