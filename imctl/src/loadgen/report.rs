//! The result of a run: printed for people, written as JSON (`--out-json`) and Markdown
//! (`--out-md`), and checked against thresholds.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::engine::Outcome;
use super::machine::MachineLoad;
use super::stats::{SeriesPoint, Summary, get};
use super::verify::Verdict;

/// Logins.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Logins {
    /// Succeeded.
    pub ok: u64,
    /// Refused or failed.
    pub failed: u64,
    /// Successful logins per second, from the first start to the last first login.
    pub per_sec: f64,
}

/// Message counts and rates.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Messages {
    /// Sent over the whole run.
    pub sent: u64,
    /// Acked over the whole run.
    pub acked: u64,
    /// First deliveries over the whole run.
    pub delivered: u64,
    /// Sent within the measured window.
    pub measured_sent: u64,
    /// Of those, acked.
    pub measured_acked: u64,
    /// Of those, delivered (each receiver counts).
    pub measured_delivered: u64,
    /// Acked messages per second over the measured window.
    pub acked_per_sec: f64,
    /// Deliveries per second over the measured window.
    pub delivered_per_sec: f64,
    /// Sends skipped (peer unknown yet, user offline).
    pub skipped: u64,
    /// Messages received that this run did not send.
    pub foreign: u64,
}

/// Latency summaries, milliseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latencies {
    /// HTTP + TCP login.
    pub login: Summary,
    /// Send → IMMsgDataAck.
    pub send_ack: Summary,
    /// Send → delivery.
    pub send_deliver: Summary,
    /// History request → answer.
    pub history: Summary,
    /// Duplicate login → kick of the older connection.
    pub kick: Summary,
}

/// Less frequent counters.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Other {
    /// P2P commands sent.
    pub p2p_sent: u64,
    /// P2P commands received.
    pub p2p_received: u64,
    /// Kicks received as expected.
    pub kicks: u64,
    /// Kicks that did not come.
    pub kicks_missed: u64,
    /// `expect` steps that timed out.
    pub expect_failures: u64,
    /// History answers.
    pub history: u64,
    /// Connections that ended unasked.
    pub disconnects: u64,
    /// Errors.
    pub errors: u64,
}

/// A server's state sampled by the run (idle bench: memory per connection).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerSample {
    /// Admin address.
    pub addr: String,
    /// Server name.
    pub name: String,
    /// RSS before the connections were opened, bytes.
    pub rss_before: u64,
    /// RSS with every connection open, bytes.
    pub rss_after: u64,
    /// Client connections it held.
    pub connections: u64,
}

/// One threshold and how it went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// Metric name.
    pub metric: String,
    /// `<=` or `>=`.
    pub op: &'static str,
    /// The limit.
    pub limit: f64,
    /// What was measured.
    pub value: f64,
    /// Whether it held.
    pub ok: bool,
}

/// Everything a run reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// `sim` or `bench`.
    pub tool: String,
    /// Scenario or preset.
    pub name: String,
    /// Free label (e.g. the storage the cluster ran on).
    pub label: String,
    /// Run id (hex), as written in every message.
    pub run_id: String,
    /// Start, Unix seconds.
    pub started_unix: u64,
    /// The settings that shaped the run.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Simulated users.
    pub users: usize,
    /// Wall time of the run, seconds.
    pub elapsed_secs: f64,
    /// Length of the measured window, seconds.
    pub measured_secs: f64,
    /// Logins.
    pub logins: Logins,
    /// Messages.
    pub messages: Messages,
    /// Delivery matching.
    pub verification: Verdict,
    /// Latencies (ms).
    pub latency_ms: Latencies,
    /// Send → delivery per second of the measured window, by send time.
    pub deliver_per_second: Vec<SeriesPoint>,
    /// Other counters.
    pub other: Other,
    /// A few error texts.
    pub errors: Vec<String>,
    /// The machine's CPU load over the measured window (Linux; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineLoad>,
    /// Server samples.
    pub servers: Vec<ServerSample>,
    /// Threshold results.
    pub checks: Vec<Check>,
    /// True when every check held.
    pub passed: bool,
}

/// Every metric a threshold may name.
pub const METRICS: &[&str] = &[
    "lost",
    "duplicates",
    "reordered",
    "unacked",
    "delivered_unacked",
    "expected",
    "matched",
    "sent",
    "acked",
    "delivered",
    "skipped",
    "login_failures",
    "logins",
    "logins_per_sec",
    "acked_per_sec",
    "delivered_per_sec",
    "errors",
    "disconnects",
    "expect_failures",
    "kicks",
    "kicks_missed",
    "p2p_received",
    "history",
    "p50_login_ms",
    "p99_login_ms",
    "max_login_ms",
    "p50_ack_ms",
    "p90_ack_ms",
    "p99_ack_ms",
    "p999_ack_ms",
    "max_ack_ms",
    "p50_deliver_ms",
    "p90_deliver_ms",
    "p99_deliver_ms",
    "p999_deliver_ms",
    "max_deliver_ms",
    "cpu_busy_pct",
];

impl Report {
    /// Builds the report of a finished run.
    pub fn from_outcome(tool: &str, o: &Outcome, label: &str) -> Report {
        let ctx = &o.ctx;
        let c = &ctx.stats.counters;
        let measured_us = o
            .timeline
            .steady_end
            .saturating_sub(o.timeline.measure_from);
        let measured_secs = measured_us as f64 / 1e6;
        let per_sec = |n: u64| {
            if measured_secs > 0.0 {
                (n as f64 / measured_secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let logins_ok = get(&c.logins);
        let login_span = ctx
            .last_login_end
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(
                ctx.first_login_start
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(o.elapsed.as_secs());
        Report {
            tool: tool.to_owned(),
            name: ctx.plan.name.clone(),
            label: label.to_owned(),
            run_id: format!("{:08x}", ctx.run_id),
            started_unix,
            settings: BTreeMap::new(),
            users: ctx.plan.len(),
            elapsed_secs: (o.elapsed.as_secs_f64() * 100.0).round() / 100.0,
            measured_secs,
            logins: Logins {
                ok: logins_ok,
                failed: get(&c.login_failures),
                per_sec: if login_span > 0 {
                    (ctx.plan.len().min(logins_ok as usize) as f64 * 1e6 / login_span as f64)
                        .round()
                } else {
                    0.0
                },
            },
            messages: Messages {
                sent: get(&c.sent),
                acked: get(&c.acked),
                delivered: get(&c.delivered),
                measured_sent: get(&c.sent_measured),
                measured_acked: get(&c.acked_measured),
                measured_delivered: get(&c.delivered_measured),
                acked_per_sec: per_sec(get(&c.acked_measured)),
                delivered_per_sec: per_sec(get(&c.delivered_measured)),
                skipped: get(&c.skipped),
                foreign: get(&c.foreign),
            },
            verification: o.verdict.clone(),
            latency_ms: Latencies {
                login: ctx.stats.login.summary(),
                send_ack: ctx.stats.ack.summary(),
                send_deliver: ctx.stats.deliver.summary(),
                history: ctx.stats.history.summary(),
                kick: ctx.stats.kick.summary(),
            },
            deliver_per_second: ctx.stats.deliver_series.points(),
            other: Other {
                p2p_sent: get(&c.p2p_sent),
                p2p_received: get(&c.p2p_received),
                kicks: get(&c.kicks),
                kicks_missed: get(&c.kicks_missed),
                expect_failures: get(&c.expect_failures),
                history: get(&c.history),
                disconnects: get(&c.disconnects),
                errors: get(&c.errors),
            },
            errors: ctx.stats.error_samples(),
            machine: o.machine,
            servers: Vec::new(),
            checks: Vec::new(),
            passed: true,
        }
    }

    /// The value of a metric named in [`METRICS`].
    pub fn metric(&self, name: &str) -> Option<f64> {
        let v = &self.verification;
        let l = &self.latency_ms;
        let o = &self.other;
        let m = &self.messages;
        let n = |x: u64| Some(x as f64);
        match name {
            "lost" => n(v.lost),
            "duplicates" => n(v.duplicates),
            "reordered" => n(v.reordered),
            "unacked" => n(v.unacked),
            "delivered_unacked" => n(v.delivered_unacked),
            "expected" => n(v.expected),
            "matched" => n(v.matched),
            "sent" => n(m.sent),
            "acked" => n(m.acked),
            "delivered" => n(m.delivered),
            "skipped" => n(m.skipped),
            "login_failures" => n(self.logins.failed),
            "logins" => n(self.logins.ok),
            "logins_per_sec" => Some(self.logins.per_sec),
            "acked_per_sec" => Some(m.acked_per_sec),
            "delivered_per_sec" => Some(m.delivered_per_sec),
            "errors" => n(o.errors),
            "disconnects" => n(o.disconnects),
            "expect_failures" => n(o.expect_failures),
            "kicks" => n(o.kicks),
            "kicks_missed" => n(o.kicks_missed),
            "p2p_received" => n(o.p2p_received),
            "history" => n(o.history),
            "p50_login_ms" => Some(l.login.p50),
            "p99_login_ms" => Some(l.login.p99),
            "max_login_ms" => Some(l.login.max),
            "p50_ack_ms" => Some(l.send_ack.p50),
            "p90_ack_ms" => Some(l.send_ack.p90),
            "p99_ack_ms" => Some(l.send_ack.p99),
            "p999_ack_ms" => Some(l.send_ack.p999),
            "max_ack_ms" => Some(l.send_ack.max),
            "p50_deliver_ms" => Some(l.send_deliver.p50),
            "p90_deliver_ms" => Some(l.send_deliver.p90),
            "p99_deliver_ms" => Some(l.send_deliver.p99),
            "p999_deliver_ms" => Some(l.send_deliver.p999),
            "max_deliver_ms" => Some(l.send_deliver.max),
            "cpu_busy_pct" => self.machine.map(|m| m.cpu_busy_pct),
            _ => None,
        }
    }

    /// Evaluates thresholds: `metric -> limit` is "at most", `min_metric -> limit` "at least".
    pub fn check(&mut self, thresholds: &BTreeMap<String, f64>) {
        for (key, &limit) in thresholds {
            let (metric, at_least) = match key.strip_prefix("min_") {
                Some(m) => (m, true),
                None => (key.as_str(), false),
            };
            let value = self.metric(metric).unwrap_or(f64::NAN);
            let ok = if at_least {
                value >= limit
            } else {
                value <= limit
            };
            self.checks.push(Check {
                metric: metric.to_owned(),
                op: if at_least { ">=" } else { "<=" },
                limit,
                value,
                ok,
            });
        }
        self.passed = self.checks.iter().all(|c| c.ok);
    }

    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Writes the Markdown report.
    pub fn write_markdown(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.markdown()).with_context(|| format!("writing {}", path.display()))
    }

    /// The report as Markdown (a heading, a summary table, a latency table).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.label)
        };
        s.push_str(&format!("### imctl {} {}{label}\n\n", self.tool, self.name));
        if !self.settings.is_empty() {
            let settings: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect();
            s.push_str(&format!("Settings: {}\n\n", settings.join(", ")));
        }
        s.push_str("| Metric | Value |\n|---|---|\n");
        let m = &self.messages;
        let v = &self.verification;
        let mut row = |k: &str, val: String| s.push_str(&format!("| {k} | {val} |\n"));
        row("users", self.users.to_string());
        row(
            "logins ok / failed",
            format!("{} / {}", self.logins.ok, self.logins.failed),
        );
        row("logins/s", format!("{:.0}", self.logins.per_sec));
        row("measured window", format!("{:.1} s", self.measured_secs));
        row("acked msgs/s", format!("{:.0}", m.acked_per_sec));
        row("delivered msgs/s", format!("{:.0}", m.delivered_per_sec));
        row(
            "sent / acked / delivered",
            format!("{} / {} / {}", m.sent, m.acked, m.delivered),
        );
        row(
            "lost / duplicates / reordered",
            format!("{} / {} / {}", v.lost, v.duplicates, v.reordered),
        );
        row("unacked", v.unacked.to_string());
        row("errors", self.other.errors.to_string());
        if let Some(l) = &self.machine {
            row(
                "machine CPU busy (measured window)",
                format!(
                    "{:.1}% of {} cores (I/O wait {:.1}%; imctl itself {:.1}%)",
                    l.cpu_busy_pct, l.cores, l.cpu_iowait_pct, l.imctl_pct
                ),
            );
        }
        for srv in &self.servers {
            let per = if srv.connections > 0 {
                srv.rss_after.saturating_sub(srv.rss_before) as f64 / srv.connections as f64
            } else {
                0.0
            };
            row(
                &format!("{} RSS per connection", srv.name),
                format!(
                    "{per:.0} B ({} connections, {} → {})",
                    srv.connections,
                    crate::output::bytes(srv.rss_before),
                    crate::output::bytes(srv.rss_after)
                ),
            );
        }
        s.push_str(
            "\n| Latency (ms) | count | p50 | p90 | p99 | p99.9 | max |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let l = &self.latency_ms;
        for (name, h) in [
            ("login", &l.login),
            ("send→ack", &l.send_ack),
            ("send→deliver", &l.send_deliver),
            ("history", &l.history),
            ("kick", &l.kick),
        ] {
            if h.count == 0 {
                continue;
            }
            s.push_str(&format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                h.count, h.p50, h.p90, h.p99, h.p999, h.max
            ));
        }
        if self.deliver_per_second.len() > 1 {
            // The fine timeline (max per 100 ms) is in the JSON report only.
            let line = |f: fn(&SeriesPoint) -> f64| {
                let v: Vec<String> = self
                    .deliver_per_second
                    .iter()
                    .map(|p| format!("{:.0}", f(p)))
                    .collect();
                v.join(" ")
            };
            s.push_str(&format!(
                "\nsend→deliver per second of the measured window (ms), p99: {}\n\
                 max: {}\n",
                line(|p| p.p99),
                line(|p| p.max)
            ));
        }
        if !self.checks.is_empty() {
            s.push_str("\n| Check | Limit | Value | |\n|---|---|---|---|\n");
            for c in &self.checks {
                s.push_str(&format!(
                    "| {} | {} {} | {} | {} |\n",
                    c.metric,
                    c.op,
                    c.limit,
                    c.value,
                    if c.ok { "ok" } else { "FAILED" }
                ));
            }
        }
        s
    }

    /// A short summary for the terminal.
    pub fn print_summary(&self) {
        print!("{}", self.markdown());
        for e in &self.errors {
            println!("error: {e}");
        }
        for e in &self.verification.lost_examples {
            println!("lost: {e}");
        }
    }
}

/// Report options shared by `imctl sim` and `imctl bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReportArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub out_json: Option<std::path::PathBuf>,
    /// Write the Markdown report here.
    #[arg(long, value_name = "FILE")]
    pub out_md: Option<std::path::PathBuf>,
    /// A label for the report (e.g. the storage: "SQLite").
    #[arg(long, default_value = "")]
    pub label: String,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl ReportArgs {
    /// Prints the report (JSON with `--json`, else Markdown) and writes the files asked for.
    pub fn emit(&self, report: &Report, json: bool) -> anyhow::Result<()> {
        if json {
            crate::output::json(report)?;
        } else {
            report.print_summary();
        }
        if let Some(p) = &self.out_json {
            report.write_json(p)?;
        }
        if let Some(p) = &self.out_md {
            report.write_markdown(p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(second: u64, p99: f64, max: f64) -> SeriesPoint {
        SeriesPoint {
            second,
            count: 10,
            p50: 1.0,
            p99,
            max,
            max_per_100ms: vec![max; 10],
        }
    }

    #[test]
    fn markdown_has_the_per_second_lines_when_the_window_spans_seconds() {
        let mut r = Report::default();
        assert!(!r.markdown().contains("per second"));
        r.deliver_per_second = vec![point(0, 12.4, 20.0)];
        assert!(
            !r.markdown().contains("per second"),
            "one second says nothing"
        );
        r.deliver_per_second.push(point(1, 95.6, 131.0));
        let md = r.markdown();
        assert!(md.contains("p99: 12 96\n"), "{md}");
        assert!(md.contains("max: 20 131\n"), "{md}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["deliver_per_second"][1]["max_per_100ms"][9], 131.0);
    }
}
