//! The idle preset: N authenticated idle connections, and the msg_servers' resident memory
//! per connection (admin stats before and after). One process can hold only as many sockets
//! as its open-file limit allows, so larger runs are split over worker processes (this same
//! binary, `--hold-until-eof`), each holding its share until the parent has measured.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::servers::{self, Sample};
use super::{BenchArgs, finish, plan, settings};
use crate::config::Config;
use crate::loadgen::dial::Dialer;
use crate::loadgen::engine::{self, RunOptions};
use crate::loadgen::report::Report;
use crate::loadgen::stats::Summary;

/// File descriptors a process keeps for everything but client sockets (HTTP logins in
/// flight, admin links, the runtime).
const FD_MARGIN: usize = 1000;

/// How long the connection count may stay flat before the measurement proceeds anyway.
const STALL: Duration = Duration::from_secs(60);

/// The soft open-file limit of this process (from /proc; `None` elsewhere).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Runs the idle preset (in this process or over workers).
pub async fn run(
    config: &Config,
    args: &BenchArgs,
    names: Vec<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let n = names.len();
    let per_process = open_file_limit()
        .unwrap_or(1024)
        .saturating_sub(FD_MARGIN)
        .max(100);
    let processes = match args.processes {
        0 => n.div_ceil(per_process),
        p => p,
    };
    if args.hold_until_eof || processes <= 1 {
        return in_process(config, args, names, json).await;
    }
    anyhow::ensure!(
        args.pattern.is_none() && args.names.is_empty(),
        "--pattern and --names cannot be split over worker processes; use the default bench names"
    );
    over_workers(config, args, n, processes, json).await
}

/// Waits until the msg_servers hold `want` more connections than in `before` (or the count
/// stops growing, or `done` fires); then samples again.
async fn wait_and_sample(
    config: &Config,
    before: &[Sample],
    want: u64,
    done: &CancellationToken,
) -> Vec<Sample> {
    let base = servers::total_connections(before);
    let (mut last, mut since) = (0, tokio::time::Instant::now());
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = done.cancelled() => break,
        }
        let Ok(now) = servers::sample(config).await else {
            break;
        };
        let added = servers::total_connections(&now).saturating_sub(base);
        if added >= want {
            // Let the last logins' buffers settle before reading memory.
            tokio::time::sleep(Duration::from_secs(2)).await;
            break;
        }
        if added != last {
            (last, since) = (added, tokio::time::Instant::now());
        } else if since.elapsed() > STALL {
            break;
        }
    }
    servers::sample(config).await.unwrap_or_default()
}

fn add_memory(report: &mut Report, before: &[Sample], after: &[Sample]) {
    let (rows, per) = servers::compare(before, after);
    report.servers = rows;
    if let Some(per) = per {
        report.settings.insert(
            "rss_per_connection_bytes".into(),
            (per.round() as i64).into(),
        );
    }
}

async fn in_process(
    config: &Config,
    args: &BenchArgs,
    names: Vec<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let n = names.len();
    let measure = !args.hold_until_eof;
    let before = if measure {
        servers::sample(config).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let stop = CancellationToken::new();
    if args.hold_until_eof {
        let s = stop.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut buf).await, Ok(k) if k > 0) {}
            s.cancel();
        });
    }
    let plan = plan(args, names)?;
    let dialer = Dialer::new(&config.login_url, args.msg_server.clone(), args.sources(n))?;
    let opts = RunOptions {
        progress: !args.report.quiet && !json,
        aes_key: config.aes_key.clone(),
        stop: Some(stop.clone()),
    };
    let done = CancellationToken::new();
    let sampler = if measure && !before.is_empty() {
        let (config, before, done) = (config.clone(), before.clone(), done.clone());
        Some(tokio::spawn(async move {
            wait_and_sample(&config, &before, n as u64, &done).await
        }))
    } else {
        None
    };
    let outcome = engine::run(plan, dialer, &opts).await;
    done.cancel();
    let outcome = outcome?;
    let mut report = Report::from_outcome("bench", &outcome, &args.report.label);
    settings(args, &mut report);
    if let Some(s) = sampler {
        let after = s.await.unwrap_or_default();
        add_memory(&mut report, &before, &after);
    }
    finish(args, &report, json)
}

async fn over_workers(
    config: &Config,
    args: &BenchArgs,
    n: usize,
    processes: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let before = servers::sample(config)
        .await
        .context("the idle preset over several processes reads msg_servers' admin stats")?;
    anyhow::ensure!(
        !before.is_empty(),
        "the idle preset over several processes needs the msg_servers' admin addresses and \
         token in the imctl config"
    );
    let exe = std::env::current_exe().context("locating the imctl binary")?;
    let share = n.div_ceil(processes);
    let sources = args.sources(n).len();
    let mut children = Vec::new();
    for w in 0..processes {
        let first = args.first_user + w * share;
        let count = share.min(n.saturating_sub(w * share));
        if count == 0 {
            break;
        }
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--login-url", &config.login_url, "--json", "bench", "idle"])
            .args(["--users", &count.to_string()])
            .args(["--first-user", &first.to_string()])
            .args(["--password", &args.password])
            .args(["--client-type", &args.client_type])
            .args(["--login-concurrency", &args.login_concurrency.to_string()])
            .args(["--source-ips", &sources.max(1).to_string()])
            .args(["--hold-until-eof", "--quiet", "--processes", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(m) = &args.msg_server {
            cmd.args(["--msg-server", m]);
        }
        children.push(cmd.spawn().context("starting an idle worker process")?);
    }
    eprintln!(
        "imctl: {n} idle connections over {} worker processes",
        children.len()
    );
    let after = wait_and_sample(config, &before, n as u64, &CancellationToken::new()).await;
    let mut report = Report {
        tool: "bench".into(),
        name: "idle".into(),
        label: args.report.label.clone(),
        users: n,
        passed: true,
        ..Report::default()
    };
    settings(args, &mut report);
    report
        .settings
        .insert("processes".into(), children.len().into());
    let mut login = Summary::default();
    for mut child in children {
        drop(child.stdin.take());
        let out = child.wait_with_output().await?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let num = |p: &str| {
            v.pointer(p)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        report.logins.ok += num("/logins/ok") as u64;
        report.logins.failed += num("/logins/failed") as u64;
        report.other.disconnects += num("/other/disconnects") as u64;
        report.other.errors += num("/other/errors") as u64;
        // Percentiles cannot be added; the report keeps the worst worker's.
        login.count += num("/latency_ms/login/count") as u64;
        login.p50 = login.p50.max(num("/latency_ms/login/p50"));
        login.p90 = login.p90.max(num("/latency_ms/login/p90"));
        login.p99 = login.p99.max(num("/latency_ms/login/p99"));
        login.p999 = login.p999.max(num("/latency_ms/login/p999"));
        login.max = login.max.max(num("/latency_ms/login/max"));
        login.mean = login.mean.max(num("/latency_ms/login/mean"));
        if let Some(errs) = v.get("errors").and_then(serde_json::Value::as_array) {
            for e in errs.iter().filter_map(serde_json::Value::as_str) {
                if report.errors.len() < 10 {
                    report.errors.push(e.to_owned());
                }
            }
        }
    }
    report.latency_ms.login = login;
    add_memory(&mut report, &before, &after);
    finish(args, &report, json)
}
