//! `imctl bench PRESET`: load shapes with flags, over the same simulated users as `imctl sim`
//! (TeamTalk's client protocol only, so it can be pointed at the original servers too).
//!
//! * `chat`: 1:1 messages between users paired across msg_servers;
//! * `group`: group fan-out, users split into temporary groups;
//! * `login`: a login storm of distinct users;
//! * `idle`: authenticated idle connections, and msg_servers' memory per connection.
//!
//! Open model (`--rate`, a fixed offered rate over all users) or closed model (`--closed`,
//! each user keeps `--in-flight` messages unacked); a warm-up, then a measured steady phase.
//! Latency percentiles belong to an open-model run at a fixed rate; maximum throughput to a
//! separate closed-model run.

mod idle;
mod servers;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::loadgen::dial::{Dialer, client_type, loopback_sources, sources_for};
use crate::loadgen::engine::{self, RunOptions};
use crate::loadgen::plan::{
    Behaviour, GroupRef, GroupSetup, Pace, Pairing, Phases, Plan, SendStep, Step, Target, UserSlot,
};
use crate::loadgen::report::{Report, ReportArgs};
use crate::loadgen::users::{create_users, expand_pattern};
use crate::loadgen::{EXIT_ERROR, EXIT_THRESHOLD};

/// msg_server's default per-connection message limit: the bench warns when one sender would
/// have to exceed it.
const PER_CONNECTION_LIMIT: f64 = 100.0;

/// The load shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Authenticated idle connections; memory per connection from the msg_servers' admin.
    Idle,
    /// 1:1 messages, pairs across msg_servers.
    Chat,
    /// Group messages, users in temporary groups of --group-size.
    Group,
    /// A login storm: every user logs in as fast as --login-concurrency allows.
    Login,
}

/// `imctl bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The load shape.
    #[arg(value_enum)]
    pub preset: Preset,
    /// Simulated users (default: idle 1000, chat 2000, group 500, login 5000).
    #[arg(long)]
    pub users: Option<usize>,
    /// First user number of the default pattern (idle worker processes split the range).
    #[arg(long, default_value_t = 1, hide = true)]
    pub first_user: usize,
    /// Login names: a pattern such as bench{00001..02000} (default: bench{00001..N}).
    #[arg(long, value_name = "PATTERN", conflicts_with = "names")]
    pub pattern: Option<String>,
    /// Login names as a comma-separated list (e.g. demo users).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub names: Vec<String>,
    /// Password of every user.
    #[arg(long, default_value = "123456")]
    pub password: String,
    /// Create the users first through db_proxy_server's admin port (names already taken are
    /// reused).
    #[arg(long)]
    pub create_users: bool,
    /// Open model: messages per second offered over all users.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Closed model: each user keeps --in-flight messages waiting for their ack (maximum
    /// throughput); --rate is ignored.
    #[arg(long)]
    pub closed: bool,
    /// Closed model: unacked messages per user.
    #[arg(long, default_value_t = 2)]
    pub in_flight: u32,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds after the steady phase for the last deliveries (also the delivery window).
    #[arg(long, default_value_t = 3.0)]
    pub cool_down: f64,
    /// Message text bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Group preset: members per group.
    #[arg(long, default_value_t = 50)]
    pub group_size: usize,
    /// Client type of every user (android by default: mobile logins send no presence
    /// broadcast to every PC client).
    #[arg(long, default_value = "android")]
    pub client_type: String,
    /// Logins in progress at once.
    #[arg(long, default_value_t = 256)]
    pub login_concurrency: usize,
    /// Spread client sockets over 127.0.0.1..127.0.0.N (0: as many as the connection count
    /// needs, ~25,000 per address).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub source_ips: usize,
    /// Log in straight to this msg_server, skipping login_server's HTTP step.
    #[arg(long, value_name = "HOST:PORT")]
    pub msg_server: Option<String>,
    /// Do not send delivery acks (stock clients do).
    #[arg(long)]
    pub no_data_ack: bool,
    /// Idle preset: seconds to hold the connections after all logged in.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Idle preset: worker processes (0: as many as the open-file limit needs).
    #[arg(long, default_value_t = 0)]
    pub processes: usize,
    /// Idle worker: hold until standard input closes (set by the parent process).
    #[arg(long, hide = true)]
    pub hold_until_eof: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

impl BenchArgs {
    fn users(&self) -> usize {
        if !self.names.is_empty() {
            return self.names.len();
        }
        self.users.unwrap_or(match self.preset {
            Preset::Idle => 1000,
            Preset::Chat => 2000,
            Preset::Group => 500,
            Preset::Login => 5000,
        })
    }

    fn names(&self) -> anyhow::Result<Vec<String>> {
        if !self.names.is_empty() {
            return Ok(self.names.clone());
        }
        match &self.pattern {
            Some(p) => expand_pattern(p),
            None => {
                let last = self.first_user + self.users() - 1;
                expand_pattern(&format!("bench{{{:05}..{last:05}}}", self.first_user))
            }
        }
    }

    fn sources(&self, connections: usize) -> Vec<std::net::IpAddr> {
        match self.source_ips {
            0 => match sources_for(connections) {
                0 => Vec::new(),
                n => loopback_sources(n),
            },
            n => loopback_sources(n),
        }
    }
}

/// Runs `imctl bench ...`.
pub async fn run(config: &Config, args: &BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let names = args.names()?;
    if args.create_users {
        let done = create_users(config, &names, &args.password).await?;
        eprintln!(
            "imctl: users: {} created, {} existed already",
            done.created, done.existing
        );
    }
    if args.preset == Preset::Idle {
        return idle::run(config, args, names, json).await;
    }
    let plan = plan(args, names)?;
    let report = run_plan(config, args, plan, json).await?;
    finish(args, &report, json)
}

/// Runs a plan and builds its report (the idle preset's workers use it too).
async fn run_plan(
    config: &Config,
    args: &BenchArgs,
    plan: Plan,
    json: bool,
) -> anyhow::Result<Report> {
    let dialer = Dialer::new(
        &config.login_url,
        args.msg_server.clone(),
        args.sources(plan.len()),
    )?;
    let opts = RunOptions {
        progress: !args.report.quiet && !json,
        aes_key: config.aes_key.clone(),
        stop: None,
    };
    let outcome = engine::run(plan, dialer, &opts).await?;
    let mut report = Report::from_outcome("bench", &outcome, &args.report.label);
    settings(args, &mut report);
    Ok(report)
}

/// Prints and writes the report; the exit code says whether the run was clean.
fn finish(args: &BenchArgs, report: &Report, json: bool) -> anyhow::Result<ExitCode> {
    args.report.emit(report, json)?;
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
    let v = &report.verification;
    if v.lost + v.duplicates + v.reordered > 0 {
        eprintln!(
            "imctl: delivery check failed: {} lost, {} duplicates, {} reordered",
            v.lost, v.duplicates, v.reordered
        );
        return Ok(ExitCode::from(EXIT_THRESHOLD));
    }
    Ok(ExitCode::SUCCESS)
}

fn settings(args: &BenchArgs, r: &mut Report) {
    let s = &mut r.settings;
    s.insert(
        "preset".into(),
        format!("{:?}", args.preset).to_lowercase().into(),
    );
    s.insert("users".into(), args.users().into());
    s.insert("client_type".into(), args.client_type.clone().into());
    if matches!(args.preset, Preset::Chat | Preset::Group) {
        if args.closed {
            s.insert("model".into(), "closed".into());
            s.insert("in_flight".into(), args.in_flight.into());
        } else {
            s.insert("model".into(), "open".into());
            s.insert("offered_rate".into(), args.rate.into());
        }
        s.insert("size".into(), args.size.into());
        s.insert("warmup_secs".into(), args.warmup.into());
        s.insert("duration_secs".into(), args.duration.into());
        s.insert("data_ack".into(), (!args.no_data_ack).into());
    }
    if args.preset == Preset::Group {
        s.insert("group_size".into(), args.group_size.into());
    }
    if args.preset == Preset::Login {
        s.insert("login_concurrency".into(), args.login_concurrency.into());
    }
}

/// The plan of a preset.
fn plan(args: &BenchArgs, names: Vec<String>) -> anyhow::Result<Plan> {
    let n = names.len();
    anyhow::ensure!(n > 0, "no users");
    let secs = |key: &str, v: f64| -> anyhow::Result<Duration> {
        anyhow::ensure!(
            v.is_finite() && (0.0..=86_400.0).contains(&v),
            "--{key} {v}: expected seconds between 0 and 86400"
        );
        Ok(Duration::from_secs_f64(v))
    };
    let ct = client_type(&args.client_type)?;
    let pace = if args.closed {
        anyhow::ensure!(args.in_flight > 0, "--in-flight: expected at least 1");
        Pace::InFlight(args.in_flight)
    } else {
        anyhow::ensure!(
            args.rate > 0.0 && args.rate.is_finite(),
            "--rate {}: expected messages per second above 0 (or --closed)",
            args.rate
        );
        let per_user = args.rate / n as f64;
        if per_user > PER_CONNECTION_LIMIT * 0.9 {
            eprintln!(
                "imctl: warning: {per_user:.0} msgs/s per user is near msg_server's \
                 per-connection limit ({PER_CONNECTION_LIMIT}/s); use more --users"
            );
        }
        Pace::Rate(per_user)
    };
    let send = |to: Target| {
        Step::Send(SendStep {
            to,
            pace,
            count: None,
            duration: None,
            size: args.size,
        })
    };
    let (steps, groups, pairing, warmup, steady, cool_down) = match args.preset {
        Preset::Chat => (
            vec![Step::Login, send(Target::Peer)],
            GroupSetup::None,
            Pairing::CrossServer,
            secs("warmup", args.warmup)?,
            secs("duration", args.duration)?,
            secs("cool-down", args.cool_down)?,
        ),
        Preset::Group => {
            anyhow::ensure!(args.group_size >= 2, "--group-size: at least 2");
            (
                vec![Step::Login, send(Target::Group(GroupRef::Own))],
                GroupSetup::Temporary {
                    size: args.group_size,
                },
                Pairing::Neighbours,
                secs("warmup", args.warmup)?,
                secs("duration", args.duration)?,
                secs("cool-down", args.cool_down)?,
            )
        }
        Preset::Login => (
            vec![Step::Login],
            GroupSetup::None,
            Pairing::Neighbours,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
        ),
        Preset::Idle => (
            vec![Step::Login],
            GroupSetup::None,
            Pairing::Neighbours,
            Duration::ZERO,
            if args.hold_until_eof {
                Duration::from_secs(86_400)
            } else {
                secs("hold", args.hold)?
            },
            Duration::ZERO,
        ),
    };
    Ok(Plan {
        name: format!("{:?}", args.preset).to_lowercase(),
        users: names
            .into_iter()
            .map(|name| UserSlot {
                name,
                password: args.password.clone(),
                client_type: ct,
                behaviour: 0,
            })
            .collect(),
        behaviours: vec![Behaviour {
            name: "bench".into(),
            steps,
        }],
        phases: Phases {
            ramp_per_sec: 0.0,
            together: true,
            warmup,
            steady,
            cool_down,
        },
        pairing,
        groups,
        global_rate: None,
        settle: Duration::from_millis(300),
        window: cool_down.max(Duration::from_secs(1)),
        login_concurrency: args.login_concurrency.max(1),
        data_ack: !args.no_data_ack,
    })
}
