//! A private MariaDB and a private Redis per test, on their own free ports, so that a test can
//! kill and restart them without touching the machine's shared instances (3306/6379) that
//! other tests use. Their binaries come from the system (Debian's mariadb-server and
//! redis-server packages).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ports::free_port;
use crate::process::{ChildProcess, wait_port};

/// How long a database may take to come up (MariaDB's crash recovery included).
const START_WAIT: Duration = Duration::from_secs(60);

/// Password of the `tt` account the suite uses (a throwaway instance on loopback).
const DB_PASSWORD: &str = "e2e-pass";

/// Finds a program on PATH or in the sbin directories (mariadbd lives in /usr/sbin, often not
/// on a normal user's PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Programs the MariaDB/Redis faults need.
const PROGRAMS: [&str; 4] = ["mariadbd", "mariadb-install-db", "mariadb", "redis-server"];

/// True when MariaDB and Redis can be started here. When they cannot: an error if `CI` is set
/// (the tests must run there), otherwise a loud note on stderr and `false` (skip).
pub fn services_available(test: &str) -> anyhow::Result<bool> {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        bail!(
            "{test}: {} not found, but CI is set: install mariadb-server and redis-server",
            missing.join(", ")
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: {} not found (install mariadb-server and redis-server) ***\n",
        missing.join(", ")
    );
    Ok(false)
}

/// True when this process runs as root (then mariadbd must be told to run as `mysql`).
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A private mariadbd with a `teamtalk` database and a `tt` account.
#[derive(Debug)]
pub struct Mariadb {
    dir: PathBuf,
    port: u16,
    process: ChildProcess,
}

impl Mariadb {
    /// Initialises a data directory under `parent` (which the `mysql` user must be able to
    /// traverse) and starts the server.
    pub async fn start(parent: &Path) -> anyhow::Result<Mariadb> {
        let dir = parent.join("mariadb");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let root = running_as_root();
        if root {
            run(
                std::process::Command::new("chown")
                    .arg("-R")
                    .arg("mysql:mysql")
                    .arg(&dir),
                "chown mysql: of the MariaDB directory",
            )?;
        }
        let install = find_program("mariadb-install-db").context("mariadb-install-db")?;
        let mut cmd = std::process::Command::new(install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        if root {
            cmd.arg("--user=mysql");
        }
        run(&mut cmd, "mariadb-install-db")?;
        let port = free_port()?;
        let mariadbd = find_program("mariadbd").context("mariadbd")?;
        let mut process = ChildProcess::new("mariadb", &mariadbd, &dir, &dir.join("mariadb.log"));
        process
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--skip-name-resolve")
            // Decisions 5: an acknowledged message survives even a machine crash.
            .arg("--innodb-flush-log-at-trx-commit=1")
            .arg("--innodb-buffer-pool-size=64M");
        if root {
            process.arg("--user=mysql");
        }
        let mut db = Mariadb { dir, port, process };
        db.start_process().await?;
        let sql = format!(
            "CREATE DATABASE teamtalk CHARACTER SET utf8mb4; \
             CREATE USER 'tt'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL ON teamtalk.* TO 'tt'@'127.0.0.1';"
        );
        db.sql(&sql)?;
        Ok(db)
    }

    async fn start_process(&mut self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.process.start()?;
        loop {
            if wait_port(self.port, Duration::from_millis(200))
                .await
                .is_ok()
                && self.sql("SELECT 1").is_ok()
            {
                return Ok(start.elapsed());
            }
            if !self.process.is_running() {
                bail!("mariadbd exited; its log:\n{}", self.process.log_tail(40));
            }
            if start.elapsed() > START_WAIT {
                bail!(
                    "mariadbd not ready after {START_WAIT:?}:\n{}",
                    self.process.log_tail(40)
                );
            }
        }
    }

    /// Runs SQL as root through the unix socket.
    pub fn sql(&self, sql: &str) -> anyhow::Result<()> {
        let client = find_program("mariadb").context("mariadb client")?;
        run(
            std::process::Command::new(client)
                .arg("--no-defaults")
                .arg(format!(
                    "--socket={}",
                    self.dir.join("mysqld.sock").display()
                ))
                .arg("-uroot")
                .arg("-e")
                .arg(sql),
            "mariadb client",
        )
    }

    /// The URL db_proxy_server connects with.
    pub fn url(&self) -> String {
        format!("mysql://tt:{DB_PASSWORD}@127.0.0.1:{}/teamtalk", self.port)
    }

    /// SIGKILL (a crash: InnoDB recovers what was committed on the next start).
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.process.kill9().await
    }

    /// Starts it again after [`Mariadb::kill9`]; returns how long it took to answer queries.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        self.start_process().await
    }
}

/// A private redis-server without persistence: a restart starts empty.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    process: ChildProcess,
}

impl Redis {
    /// Starts it with its files under `parent`.
    pub async fn start(parent: &Path) -> anyhow::Result<Redis> {
        let dir = parent.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let bin = find_program("redis-server").context("redis-server")?;
        let mut process = ChildProcess::new("redis", &bin, &dir, &dir.join("redis.log"));
        process
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&dir);
        let mut r = Redis { port, process };
        r.restart().await?;
        Ok(r)
    }

    /// The URL db_proxy_server connects with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: everything in memory is gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.process.kill9().await
    }

    /// Starts it (again, empty); returns how long it took to listen.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.process.start()?;
        wait_port(self.port, START_WAIT)
            .await
            .with_context(|| format!("redis-server log:\n{}", self.process.log_tail(20)))?;
        Ok(start.elapsed())
    }
}
