//! One module per command.

mod chat;
mod demo;
mod dept;
mod discovery;
mod drain;
mod group;
// `imctl top` kicks through the same code path.
pub(crate) mod kick;
mod lookup;
pub mod migrate;
mod route;
mod send;
mod servers;
mod status;
mod user;

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
    if let Command::Migrate(m) = &cli.command {
        // Migrations name their databases on the command line; no cluster config.
        return migrate::run(m, g.json).await;
    }
    if let Command::Demo(a) = &cli.command {
        // The demo makes the cluster; it reads no config (it writes one).
        return demo::run(a, g.json).await;
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
        Command::User(c) => user::run(&config, c, json).await,
        Command::Dept(c) => dept::run(&config, c, json).await,
        Command::Group(c) => group::run(&config, c, json).await,
        Command::Discovery(c) => discovery::run(&config, c, json).await,
        Command::Send(a) => send::run(&config, a, json).await,
        Command::Chat(a) => chat::run(&config, a, json).await,
        Command::Top(a) => crate::top::run(&config, a, json).await,
        Command::Sim(a) => crate::sim::run(&config, a, json).await,
        Command::Bench(a) => crate::bench::run(&config, a, json).await,
        Command::Completions(_) | Command::Demo(_) | Command::Migrate(_) => Ok(ExitCode::SUCCESS),
    }
}
