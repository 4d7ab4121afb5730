//! The file_server binary: flags, config, logging, signals; everything else is in the library.

/// mimalloc: far cheaper than glibc malloc for the many small, short-lived buffers of a
/// busy server (measured with scripts/bench.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use file_server::cli::Cli;
use file_server::{Config, Listeners, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("file_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    let prefix = im_common::config::env_prefix("file_server");
    let config: Config = im_common::config::load(cli.config.as_deref(), &prefix)?;
    config.validate()?;
    im_common::telemetry::init(&config.log)?;
    let listeners = Listeners::bind(&config)
        .await
        .context("starting file_server")?;
    let shutdown = im_common::shutdown_on_signals();
    run(config, listeners, shutdown).await
}
