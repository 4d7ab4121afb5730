//! The msg_server binary: flags, config, logging, signals; everything else is in the library.

// No mimalloc here, unlike the other servers: with it an idle client connection cost
// msg_server about 3.6 KB of RSS instead of well under 1 KB (bench.sh, 50,000 idle
// connections), while the 1:1 maximum stayed within noise (36.8k vs 35.8k msgs/s).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use msg_server::cli::Cli;
use msg_server::{Config, Listeners, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msg_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    let prefix = im_common::config::env_prefix("msg_server");
    let config: Config = im_common::config::load(cli.config.as_deref(), &prefix)?;
    config.validate()?;
    im_common::telemetry::init(&config.log)?;
    let listeners = Listeners::bind(&config)
        .await
        .context("starting msg_server")?;
    let shutdown = im_common::shutdown_on_signals();
    run(config, listeners, shutdown).await
}
