//! `imctl migrate`: create a schema, copy a deployment between SQLite and MySQL/MariaDB (with
//! its Redis or embedded cache data), import an original TeamTalk deployment. The work is
//! `im_storage::migrate`'s; this file parses flags, draws a progress bar per table and prints
//! the report.
//!
//! Exit codes: 0 done (and verified), 1 error, 2 copied but the verification found a
//! difference.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use im_storage::config::{RedisConfig, RedisDbs};
use im_storage::migrate::{self, CopyObserver, CopyOptions, CopyReport, SchemaReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{self, Table};

/// Exit code when the copy finished but the verification found differences.
const VERIFY_FAILED: u8 = 2;

/// `imctl migrate ...`
#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Database schemas.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// Copy every table, batched and resumable, plus the cache data, then verify row counts
    /// and checksums. Re-run the same command after an interruption to continue.
    Copy(CopyArgs),
    /// Import an original TeamTalk deployment (its MySQL and Redis) into ours; legacy
    /// passwords keep working.
    ImportTeamtalk(ImportArgs),
}

/// `imctl migrate schema ...`
#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Create the tables (or migrate an older schema) of a database.
    Up(SchemaUpArgs),
}

/// `imctl migrate schema up`
#[derive(Debug, Args)]
pub struct SchemaUpArgs {
    /// The database: a SQLite path, sqlite://PATH, or mysql://USER:PASSWORD@HOST:3306/DB.
    #[arg(long, value_name = "URL")]
    pub db: String,
}

/// `imctl migrate copy`
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source database: a SQLite path, sqlite://PATH or mysql://USER:PASSWORD@HOST:3306/DB.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Destination database (created and migrated if needed).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Redis of a MySQL source, e.g. redis://127.0.0.1:6379/: its counters, tokens and
    /// group settings are copied too.
    #[arg(long, value_name = "URL")]
    pub from_redis: Option<String>,
    /// Database numbers of the source Redis: unread,group_set,sync,token,group_member.
    #[arg(long, value_name = "LIST", default_value = "1,2,3,4,5")]
    pub from_redis_dbs: String,
    /// Key prefix of the source Redis (empty for a real deployment).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub from_redis_prefix: String,
    /// Redis of a MySQL destination: receives the cache data and the group member hashes.
    #[arg(long, value_name = "URL")]
    pub to_redis: Option<String>,
    /// Database numbers of the destination Redis: unread,group_set,sync,token,group_member.
    #[arg(long, value_name = "LIST", default_value = "1,2,3,4,5")]
    pub to_redis_dbs: String,
    /// Key prefix of the destination Redis.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub to_redis_prefix: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `imctl migrate import-teamtalk`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The original deployment's MySQL, e.g. mysql://teamtalk:PASSWORD@HOST:3306/teamtalk.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The original deployment's Redis, e.g. redis://HOST:6379/.
    #[arg(long, value_name = "URL")]
    pub redis: String,
    /// Its database numbers (dbproxyserver.conf): unread,group_set,sync,token,group_member.
    #[arg(long, value_name = "LIST", default_value = "1,2,3,4,5")]
    pub redis_dbs: String,
    /// Its key prefix (empty for a real deployment).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub redis_prefix: String,
    /// Destination database: a SQLite path, sqlite://PATH or mysql://...
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Redis of a MySQL destination.
    #[arg(long, value_name = "URL")]
    pub to_redis: Option<String>,
    /// Database numbers of the destination Redis.
    #[arg(long, value_name = "LIST", default_value = "1,2,3,4,5")]
    pub to_redis_dbs: String,
    /// Key prefix of the destination Redis.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub to_redis_prefix: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a copy runs.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Rows per batch (one destination transaction each).
    #[arg(long, value_name = "N", default_value_t = migrate::DEFAULT_BATCH)]
    pub batch: usize,
    /// Skip the final comparison of row counts and checksums.
    #[arg(long)]
    pub no_verify: bool,
    /// Forget the recorded progress and copy everything again (rows already there are
    /// replaced).
    #[arg(long)]
    pub restart: bool,
    /// Pause this long between batches, to go easy on a live source.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub pause_ms: u64,
}

/// Runs `imctl migrate ...`.
pub async fn run(cmd: &MigrateCmd, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        MigrateCmd::Schema(SchemaCmd::Up(a)) => {
            let report = migrate::schema_up(&a.db).await?;
            print_schema(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        MigrateCmd::Copy(a) => {
            let options = CopyOptions {
                from_redis: redis(
                    a.from_redis.as_deref(),
                    &a.from_redis_dbs,
                    &a.from_redis_prefix,
                )?,
                to_redis: redis(a.to_redis.as_deref(), &a.to_redis_dbs, &a.to_redis_prefix)?,
                ..options(&a.run)
            };
            copy(&a.from, &a.to, &options, json).await
        }
        MigrateCmd::ImportTeamtalk(a) => {
            if !a.from.starts_with("mysql://") && !a.from.starts_with("mariadb://") {
                bail!(
                    "--from {:?}: an original TeamTalk deployment is mysql://...",
                    a.from
                );
            }
            let options = CopyOptions {
                from_redis: redis(Some(&a.redis), &a.redis_dbs, &a.redis_prefix)?,
                to_redis: redis(a.to_redis.as_deref(), &a.to_redis_dbs, &a.to_redis_prefix)?,
                teamtalk_import: true,
                ..options(&a.run)
            };
            copy(&a.from, &a.to, &options, json).await
        }
    }
}

fn options(run: &RunArgs) -> CopyOptions {
    CopyOptions {
        batch: run.batch,
        verify: !run.no_verify,
        restart: run.restart,
        pause: Duration::from_millis(run.pause_ms),
        ..CopyOptions::default()
    }
}

/// A Redis config from the flags (`None` without a URL).
fn redis(url: Option<&str>, dbs: &str, prefix: &str) -> anyhow::Result<Option<RedisConfig>> {
    let Some(url) = url else {
        return Ok(None);
    };
    Ok(Some(RedisConfig {
        url: url.to_owned(),
        cluster_urls: Vec::new(),
        dbs: parse_dbs(dbs)?,
        key_prefix: prefix.to_owned(),
    }))
}

/// `unread,group_set,sync,token,group_member` database numbers.
pub fn parse_dbs(list: &str) -> anyhow::Result<RedisDbs> {
    let numbers = list
        .split(',')
        .map(|n| n.trim().parse::<u8>())
        .collect::<Result<Vec<u8>, _>>()
        .ok()
        .filter(|n| n.len() == 5)
        .with_context(|| {
            format!(
                "redis databases {list:?}: expected five numbers \
                 unread,group_set,sync,token,group_member (the original's 1,2,3,4,5)"
            )
        })?;
    Ok(RedisDbs {
        unread: numbers[0],
        group_set: numbers[1],
        sync: numbers[2],
        token: numbers[3],
        group_member: numbers[4],
    })
}

async fn copy(from: &str, to: &str, options: &CopyOptions, json: bool) -> anyhow::Result<ExitCode> {
    let bars = Bars::new(json || !std::io::stderr().is_terminal());
    let report = migrate::copy(from, to, options, &bars).await;
    bars.clear();
    let report = report?;
    if json {
        output::json(&report)?;
    } else {
        print_copy(&report);
    }
    if report.verified == Some(false) {
        return Ok(ExitCode::from(VERIFY_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_schema(report: &SchemaReport, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(report);
    }
    println!(
        "{} ({}): schema version {}",
        report.database, report.backend, report.version
    );
    if !report.unique_keys.is_empty() {
        let mut t = Table::new(&["TABLE", "UNIQUE KEY", "STATE"]);
        for k in &report.unique_keys {
            let state = if k.duplicate_groups > 0 {
                format!("{} ({} duplicate groups)", k.state, k.duplicate_groups)
            } else {
                k.state.to_owned()
            };
            t.row(vec![k.table.to_owned(), k.key.to_owned(), state]);
        }
        t.print();
    }
    Ok(())
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "NO".into(),
        None => "-".into(),
    }
}

fn print_copy(r: &CopyReport) {
    println!("{} -> {}", r.from, r.to);
    let mut t = Table::new(&[
        "TABLE", "SOURCE", "COPIED", "SKIPPED", "DEST", "CHECKSUM", "VERIFIED",
    ]);
    for table in &r.tables {
        let source = if table.absent_in_source {
            "absent".to_owned()
        } else {
            table.source_rows.to_string()
        };
        let checksum = table
            .dest_checksum
            .as_deref()
            .map_or("-".to_owned(), |c| c.chars().take(12).collect());
        t.row(vec![
            table.table.to_owned(),
            source,
            table.copied.to_string(),
            table.skipped.to_string(),
            table.dest_rows.map_or("-".into(), |n| n.to_string()),
            checksum,
            yes_no(table.verified),
        ]);
    }
    t.print();
    if let Some(cache) = &r.cache {
        println!("\ncache data: {} -> {}", cache.source, cache.destination);
        let mut t = Table::new(&["CATEGORY", "SOURCE", "DEST", "EQUAL"]);
        for c in &cache.categories {
            t.row(vec![
                c.name.to_owned(),
                c.source.to_string(),
                c.destination.map_or("-".into(), |n| n.to_string()),
                yes_no(c.equal),
            ]);
        }
        t.print();
        if cache.raised_sequences > 0 {
            println!(
                "{} id sequences raised to the highest stored message id",
                cache.raised_sequences
            );
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    let verdict = match r.verified {
        Some(true) => "verified: row counts and checksums match",
        Some(false) => "VERIFICATION FAILED: see the tables marked NO",
        None => "not verified (--no-verify)",
    };
    println!(
        "\n{} rows copied in {:.1} s ({:.0} rows/s); {verdict}",
        r.rows_copied, r.seconds, r.rows_per_second
    );
}

/// One progress bar per table, then one per phase; hidden when not on a terminal or with
/// `--json`.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    style: Option<ProgressStyle>,
}

impl Bars {
    fn new(hidden: bool) -> Bars {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            style: ProgressStyle::with_template(
                "{prefix:>18} [{bar:30}] {pos:>9}/{len:<9} {elapsed:>4} {msg}",
            )
            .ok()
            .map(|s| s.progress_chars("=> ")),
        }
    }

    fn start(&self, name: &str, total: u64, done: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        if let Some(style) = &self.style {
            bar.set_style(style.clone());
        }
        bar.set_prefix(name.to_owned());
        bar.set_position(done);
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(name.to_owned(), bar);
        }
    }

    fn with(&self, name: &str, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(name)
        {
            f(bar);
        }
    }

    /// Removes every bar (a bar dropped unfinished would be drawn again).
    fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

impl CopyObserver for Bars {
    fn table_started(&self, table: &str, total: u64, done: u64) {
        self.start(table, total, done);
    }

    fn rows_copied(&self, table: &str, rows: u64) {
        self.with(table, |bar| bar.inc(rows));
    }

    fn table_finished(&self, table: &str) {
        // Empty tables leave no line behind; the others stay, full.
        self.with(table, |bar| {
            if bar.length() == Some(0) {
                bar.finish_and_clear();
            } else {
                bar.finish();
            }
        });
    }

    fn phase_started(&self, phase: &str, steps: u64) {
        self.start(phase, steps, 0);
        if let Ok(mut bars) = self.bars.lock()
            && let Some(bar) = bars.get(phase).cloned()
        {
            bars.insert("\u{0}phase".into(), bar);
        }
    }

    fn phase_step(&self, what: &str) {
        self.with("\u{0}phase", |bar| {
            bar.inc(1);
            bar.set_message(what.to_owned());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_database_lists() {
        assert_eq!(parse_dbs("1,2,3,4,5").unwrap(), RedisDbs::default());
        let dbs = parse_dbs("0, 0, 0, 0, 9").unwrap();
        assert_eq!((dbs.unread, dbs.group_member), (0, 9));
        let err = parse_dbs("1,2").unwrap_err().to_string();
        assert!(
            err.contains("unread,group_set,sync,token,group_member"),
            "{err}"
        );
        assert!(parse_dbs("1,2,3,4,x").is_err());
    }
}
