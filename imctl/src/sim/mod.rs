//! `imctl sim SCENARIO`: scripted fake clients from a scenario file, with verified delivery
//! and thresholds that set the exit code; `imctl sim validate FILE...` checks files only.
//!
//! Exit codes: 0 every threshold held, 1 the run could not be done, 2 a threshold failed,
//! 3 the scenario is invalid.

pub mod scenario;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::loadgen::dial::{Dialer, loopback_sources};
use crate::loadgen::engine::{self, RunOptions};
use crate::loadgen::report::{Report, ReportArgs};
use crate::loadgen::users::{create_users, names_of_ids, parse_id_range};
use crate::loadgen::{EXIT_ERROR, EXIT_INVALID, EXIT_THRESHOLD};

/// Where shipped scenarios live (relative to the repository root).
pub const SCENARIO_DIR: &str = "fixtures/scenarios";

/// `imctl sim`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCmd>,
    #[command(flatten)]
    pub run: SimRunArgs,
}

/// `imctl sim validate`
#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// Check scenario files without running them (exit 3 if one is invalid).
    Validate {
        /// Scenario files (or names in fixtures/scenarios/).
        #[arg(required = true)]
        files: Vec<String>,
    },
}

/// `imctl sim SCENARIO`
#[derive(Debug, Args)]
pub struct SimRunArgs {
    /// Scenario file, or the name of one in fixtures/scenarios/ (smoke, one_to_one,
    /// group_chat, login_storm, reconnect_storm).
    pub scenario: Option<String>,
    /// Create the users first through db_proxy_server's admin port (as `users.create`).
    #[arg(long)]
    pub create_users: bool,
    /// Log in straight to this msg_server, skipping login_server's HTTP step.
    #[arg(long, value_name = "HOST:PORT")]
    pub msg_server: Option<String>,
    /// Spread client sockets over 127.0.0.1..127.0.0.N (0: the OS picks the source).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub source_ips: usize,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Runs `imctl sim ...`.
pub async fn run(config: &Config, args: &SimArgs, json: bool) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(SimCmd::Validate { files }) => Ok(validate(files)),
        None => {
            let Some(name) = &args.run.scenario else {
                anyhow::bail!(
                    "name a scenario: imctl sim FILE (or one of {SCENARIO_DIR}/*.toml), or \
                     imctl sim validate FILE"
                );
            };
            run_scenario(config, name, &args.run, json).await
        }
    }
}

/// A scenario argument: a path, or a name in the shipped directory.
pub fn resolve(name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.exists() || name.contains('/') || name.ends_with(".toml") {
        return p;
    }
    Path::new(SCENARIO_DIR).join(format!("{name}.toml"))
}

fn validate(files: &[String]) -> ExitCode {
    let mut bad = false;
    for f in files {
        let path = resolve(f);
        match scenario::load(&path) {
            Ok(s) => println!(
                "{}: ok ({}, {} behaviours)",
                path.display(),
                s.name,
                s.behaviours.len()
            ),
            Err(e) => {
                bad = true;
                eprintln!("imctl: {e:#}");
            }
        }
    }
    if bad {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run_scenario(
    config: &Config,
    name: &str,
    args: &SimRunArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = resolve(name);
    let sc = match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("imctl: {e:#}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let names = match sc.static_names()? {
        Some(n) => n,
        None => {
            let (from, to) = parse_id_range(sc.users.ids.as_deref().unwrap_or_default())?;
            names_of_ids(config, from, to).await?
        }
    };
    if sc.users.create || args.create_users {
        let done = create_users(config, &names, &sc.users.password).await?;
        eprintln!(
            "imctl: users: {} created, {} existed already",
            done.created, done.existing
        );
    }
    let plan = sc.plan(names)?;
    let sources = if args.source_ips > 0 {
        loopback_sources(args.source_ips)
    } else {
        Vec::new()
    };
    let dialer = Dialer::new(&config.login_url, args.msg_server.clone(), sources)?;
    let opts = RunOptions {
        progress: !args.report.quiet && !json,
        aes_key: config.aes_key.clone(),
        stop: None,
    };
    let outcome = engine::run(plan, dialer, &opts).await?;
    let mut report = Report::from_outcome("sim", &outcome, &args.report.label);
    report
        .settings
        .insert("scenario".into(), path.display().to_string().into());
    report.check(&sc.thresholds);
    args.report.emit(&report, json)?;
    if report.logins.ok == 0 {
        eprintln!(
            "imctl: no user could log in{}",
            report
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    if !report.passed {
        for c in report.checks.iter().filter(|c| !c.ok) {
            eprintln!(
                "imctl: threshold failed: {} = {} (limit {} {})",
                c.metric, c.value, c.op, c.limit
            );
        }
        return Ok(ExitCode::from(EXIT_THRESHOLD));
    }
    Ok(ExitCode::SUCCESS)
}
