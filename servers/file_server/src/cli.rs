//! Command-line flags of the file_server binary (here so that man pages can be generated
//! from the library).

use std::path::PathBuf;

use clap::Parser;

/// file_server: relays online file transfers and stores offline files for TeamTalk clients.
#[derive(Debug, Parser)]
#[command(name = "file_server", version, about, long_about = None)]
pub struct Cli {
    /// TOML config file; without it, defaults plus `IM_FILE_SERVER_*` environment variables.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
