//! One module per command.

mod drain;
mod kick;
mod route;
mod servers;
mod status;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command, RouteCmd};
use crate::config::{Config, Overrides};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    let over = Overrides {
        path: g.config.clone(),
        token: g.token.clone(),
        login_url: g.login_url.clone(),
        admin: g.admin.clone(),
    };
    if let Command::Completions(a) = &cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(a.shell, &mut cmd, "imctl", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&over)?;
    let json = g.json;
    match &cli.command {
        Command::Status => status::run(&config, json).await,
        Command::Servers => servers::run(&config, json).await,
        Command::Route(RouteCmd::Ls(a)) => route::ls(&config, a, json).await,
        Command::Route(RouteCmd::Who(a)) => route::who(&config, a, json).await,
        Command::Kick(a) => kick::run(&config, a, json).await,
        Command::Drain(a) => drain::run(&config, a, json).await,
        Command::Completions(_) => Ok(ExitCode::SUCCESS),
    }
}
