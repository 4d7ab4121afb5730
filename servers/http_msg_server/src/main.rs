//! The `http_msg_server` binary: flags, config, logging, signals; the server is in the library.

/// mimalloc: far cheaper than glibc malloc for the many small, short-lived buffers of a
/// busy server (measured with scripts/bench.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;
use http_msg_server::{Cli, Config, Listeners, run};
use im_common::config::{env_prefix, load};

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_msg_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_inner() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = load(cli.config.as_deref(), &env_prefix("http_msg_server"))?;
    im_common::telemetry::init(&config.log)?;
    config.validate()?;
    let listeners = Listeners::bind(&config).await?;
    let shutdown = im_common::shutdown_on_signals();
    run(config, listeners, shutdown).await
}
