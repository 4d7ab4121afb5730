//! The msg_server binary: flags, config, logging, signals; everything else is in the library.

// The system allocator, unlike the other servers (mimalloc): msg_server's 1:1 maximum was
// the same either way (36.8k vs 35.8k msgs/s, bench.sh), and what matters here is the memory
// of idle connections (1.84 KB of RSS each on fresh msg_servers holding 16,667 each, 2026-12-05;
// when it was 2.2 KB, jemalloc preloaded gave 2.17 KB: the allocator is not where that memory
// goes, and mimalloc gave 3.6 KB when connections still had a writer task each).

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
