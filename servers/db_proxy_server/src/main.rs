//! The `db_proxy_server` binary: flags, config, logging, signals; the server is in the library.

/// mimalloc: far cheaper than glibc malloc for the many small, short-lived buffers of a
/// busy server (measured with scripts/bench.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser as _;
use db_proxy_server::{Cli, Config, Listeners, run_seeded};
use im_common::config::{env_prefix, load};

fn main() -> ExitCode {
    // Before any thread exists that could open an SQLite connection (see the function).
    im_storage::sqlite::install_page_cache();
    start()
}

#[tokio::main]
async fn start() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("db_proxy_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_inner() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = load(cli.config.as_deref(), &env_prefix("db_proxy_server"))?;
    im_common::telemetry::init(&config.log)?;
    config.validate()?;
    let listeners = Listeners::bind(&config).await?;
    let shutdown = im_common::shutdown_on_signals();
    run_seeded(config, listeners, shutdown, cli.seed.as_deref()).await
}
