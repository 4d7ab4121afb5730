//! A TeamTalk suite of separate processes on loopback, as scripts/cluster.sh runs it: one
//! login_server, route_server(s), one db_proxy_server (SQLite, or MariaDB + Redis of its own),
//! msg_servers, and optionally file_server, push_server, msfs and http_msg_server. Every
//! server gets fixed free ports (so peers find it and a restart keeps its address), a config
//! file and a log file in the suite's temporary directory. Servers can be killed (SIGKILL),
//! terminated (SIGTERM) and started again one by one; everything is killed on drop, and the
//! logs are printed when a test fails.

pub mod config;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{Context, bail};
use im_proto::admin::{ServerStats, UpstreamLink};
use im_proto::client::fetch_msg_server;
use rand::Rng;

use crate::admin::{Admin, is_connected};
use crate::bins::binary;
use crate::ports::free_port;
use crate::process::{ChildProcess, EXIT_WAIT, wait_port};
use crate::services::{Mariadb, Redis};
use config::{MsgLinks, StorageSection};

/// How long a server may take to listen, and the whole suite to be ready.
const START_WAIT: Duration = Duration::from_secs(30);

/// Keep the temporary directory (configs, logs, databases) after the test when set.
pub const KEEP_ENV: &str = "IM_E2E_KEEP";

/// The servers' log filter (RUST_LOG) unless overridden here.
pub const LOG_ENV: &str = "IM_E2E_LOG";

/// Which server of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerId {
    /// login_server.
    Login,
    /// db_proxy_server.
    DbProxy,
    /// route_server number i (from 0).
    Route(usize),
    /// msg_server number i (from 0).
    Msg(usize),
    /// file_server.
    File,
    /// push_server.
    Push,
    /// msfs.
    Msfs,
    /// http_msg_server.
    HttpMsg,
}

impl ServerId {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            ServerId::Login => "login_server",
            ServerId::DbProxy => "db_proxy_server",
            ServerId::Route(_) => "route_server",
            ServerId::Msg(_) => "msg_server",
            ServerId::File => "file_server",
            ServerId::Push => "push_server",
            ServerId::Msfs => "msfs",
            ServerId::HttpMsg => "http_msg_server",
        }
    }
}

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerId::Route(i) | ServerId::Msg(i) => write!(f, "{}-{}", self.binary(), i + 1),
            _ => f.write_str(self.binary()),
        }
    }
}

/// Where db_proxy_server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// One SQLite file in the suite's directory.
    Sqlite,
    /// A private MariaDB and Redis, started with the suite.
    MariadbRedis,
}

/// The shape of a suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Number of msg_servers.
    pub msg_servers: usize,
    /// Number of route_servers.
    pub route_servers: usize,
    /// Also file_server, push_server, msfs and http_msg_server.
    pub extras: bool,
    /// Storage.
    pub storage: StorageKind,
    /// Users seeded (named by [`config::user_name`]).
    pub users: usize,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            msg_servers: 2,
            route_servers: 1,
            extras: false,
            storage: StorageKind::Sqlite,
            users: 40,
        }
    }
}

/// One server process and its ports.
#[derive(Debug)]
pub struct Node {
    /// Which server.
    pub id: ServerId,
    /// Main port (msg_server: clients; login_server: HTTP; file_server: clients).
    pub port: u16,
    /// Admin port.
    pub admin: u16,
    /// login_server: the msg_server port; file_server: the msg_server port.
    pub extra: Option<u16>,
    process: ChildProcess,
}

/// A running suite; see the module documentation.
#[derive(Debug)]
pub struct Suite {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    token: String,
    nodes: Vec<Node>,
    login_url: String,
    users: usize,
    mariadb: Option<Mariadb>,
    redis: Option<Redis>,
}

fn random_token() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

impl Suite {
    /// Writes every config, starts every server and waits until a client can log in and
    /// every msg_server has all its links up.
    pub async fn start(opts: SuiteOptions) -> anyhow::Result<Suite> {
        let dir = tempfile::Builder::new()
            .prefix("im-e2e-")
            .tempdir()
            .context("creating the suite's directory")?;
        let path = dir.path().to_path_buf();
        // MariaDB runs as the `mysql` user, which must be able to reach its directory.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .context("opening the suite's directory to the mysql user")?;
        }
        let mut suite = Suite {
            dir: Some(dir),
            path: path.clone(),
            token: random_token(),
            nodes: Vec::new(),
            login_url: String::new(),
            users: opts.users,
            mariadb: None,
            redis: None,
        };
        let storage = match opts.storage {
            StorageKind::Sqlite => {
                StorageSection::Sqlite(path.join("teamtalk.db").display().to_string())
            }
            StorageKind::MariadbRedis => {
                let db = Mariadb::start(&path).await?;
                let redis = Redis::start(&path).await?;
                let s = StorageSection::Mysql {
                    url: db.url(),
                    redis: redis.url(),
                };
                suite.mariadb = Some(db);
                suite.redis = Some(redis);
                s
            }
        };
        write(&path.join("seed.toml"), &config::seed(opts.users))?;
        suite.configure(&opts, &storage)?;
        for i in 0..suite.nodes.len() {
            let id = suite.nodes[i].id;
            suite.start_server(id).await?;
        }
        suite.wait_ready().await?;
        Ok(suite)
    }

    /// Picks the ports and writes the configs of every server, in start order.
    fn configure(&mut self, opts: &SuiteOptions, storage: &StorageSection) -> anyhow::Result<()> {
        let p = free_port;
        let t = self.token.clone();
        let dir = self.path.clone();
        let (msfs, msfs_admin) = (p()?, p()?);
        let (db, db_admin) = (p()?, p()?);
        let routes: Vec<(u16, u16)> = (0..opts.route_servers)
            .map(|_| Ok((p()?, p()?)))
            .collect::<anyhow::Result<_>>()?;
        let route_ports: Vec<u16> = routes.iter().map(|r| r.0).collect();
        let (file_client, file_msg, file_admin) = (p()?, p()?, p()?);
        let (push, push_admin) = (p()?, p()?);
        let (http_msg, http_msg_admin) = (p()?, p()?);
        let (login_http, login_msg, login_admin) = (p()?, p()?, p()?);
        self.login_url = format!("http://127.0.0.1:{login_http}/msg_server");
        let dir_of = |name: &str| dir.join(name).display().to_string();
        let mut add = |id: ServerId, port, admin, extra, text: String| -> anyhow::Result<()> {
            self.add_node(id, port, admin, extra, &text)
        };
        if opts.extras {
            add(
                ServerId::Msfs,
                msfs,
                msfs_admin,
                None,
                config::msfs(msfs, msfs_admin, &t, &dir_of("msfs")),
            )?;
        }
        add(
            ServerId::DbProxy,
            db,
            db_admin,
            None,
            config::db_proxy(db, db_admin, &t, msfs, storage),
        )?;
        for (i, (port, admin)) in routes.iter().enumerate() {
            add(
                ServerId::Route(i),
                *port,
                *admin,
                None,
                config::route(i + 1, *port, *admin, &t),
            )?;
        }
        if opts.extras {
            let files = dir_of("offline_file");
            add(
                ServerId::File,
                file_client,
                file_admin,
                Some(file_msg),
                config::file(file_client, file_msg, file_admin, &t, &files, db),
            )?;
            add(
                ServerId::Push,
                push,
                push_admin,
                None,
                config::push(push, push_admin, &t, db),
            )?;
            let api = format!("{t}-api");
            add(
                ServerId::HttpMsg,
                http_msg,
                http_msg_admin,
                None,
                config::http_msg(http_msg, http_msg_admin, &t, &api, db, &route_ports),
            )?;
        }
        add(
            ServerId::Login,
            login_http,
            login_admin,
            Some(login_msg),
            config::login(login_http, login_msg, login_admin, &t, msfs, http_msg),
        )?;
        let links = MsgLinks {
            db_proxy: db,
            routes: route_ports.clone(),
            login: login_msg,
            file: opts.extras.then_some(file_msg),
            push: opts.extras.then_some(push),
        };
        for i in 0..opts.msg_servers {
            let (port, admin) = (p()?, p()?);
            add(
                ServerId::Msg(i),
                port,
                admin,
                None,
                config::msg(i + 1, port, admin, &t, &links),
            )?;
        }
        Ok(())
    }

    fn add_node(
        &mut self,
        id: ServerId,
        port: u16,
        admin: u16,
        extra: Option<u16>,
        text: &str,
    ) -> anyhow::Result<()> {
        let name = id.to_string();
        let cfg = self.path.join(format!("{name}.toml"));
        write(&cfg, text)?;
        let bin = binary(id.binary())?;
        let mut process = ChildProcess::new(
            &name,
            &bin,
            &self.path,
            &self.path.join(format!("{name}.log")),
        );
        process.arg("--config").arg(&cfg);
        if id == ServerId::DbProxy {
            process.arg("--seed").arg(self.path.join("seed.toml"));
        }
        let level = std::env::var(LOG_ENV).unwrap_or_else(|_| "info".into());
        process.env("RUST_LOG", &level);
        self.nodes.push(Node {
            id,
            port,
            admin,
            extra,
            process,
        });
        Ok(())
    }

    /// The server `id`.
    pub fn node(&self, id: ServerId) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no {id} in this suite"))
    }

    fn node_mut(&mut self, id: ServerId) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no {id} in this suite"))
    }

    /// Every server of the suite, in start order.
    pub fn ids(&self) -> Vec<ServerId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Starts server `id` (again) and waits until its main port accepts connections;
    /// returns how long that took.
    pub async fn start_server(&mut self, id: ServerId) -> anyhow::Result<Duration> {
        let node = self.node_mut(id)?;
        let start = Instant::now();
        node.process.start()?;
        let port = node.port;
        loop {
            if wait_port(port, Duration::from_millis(100)).await.is_ok() {
                return Ok(start.elapsed());
            }
            let node = self.node_mut(id)?;
            if let Some(status) = node.process.exited() {
                bail!(
                    "{id} exited during start-up ({status}); its log:\n{}",
                    node.process.log_tail(30)
                );
            }
            if start.elapsed() > START_WAIT {
                bail!("{id} does not listen on {port} after {START_WAIT:?}");
            }
        }
    }

    /// SIGKILL on server `id`.
    pub async fn kill9(&mut self, id: ServerId) -> anyhow::Result<()> {
        self.node_mut(id)?.process.kill9().await
    }

    /// SIGTERM on server `id`; waits for it to exit and returns its status and how long the
    /// shutdown took.
    pub async fn terminate(&mut self, id: ServerId) -> anyhow::Result<(ExitStatus, Duration)> {
        self.node_mut(id)?.process.terminate(EXIT_WAIT).await
    }

    /// True while server `id` runs.
    pub fn is_running(&mut self, id: ServerId) -> bool {
        self.node_mut(id).is_ok_and(|n| n.process.is_running())
    }

    /// The URL clients fetch a msg_server from.
    pub fn login_url(&self) -> &str {
        &self.login_url
    }

    /// The admin token of every server.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Number of seeded users.
    pub fn user_count(&self) -> usize {
        self.users
    }

    /// Number of msg_servers (running or not).
    pub fn msg_server_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.id, ServerId::Msg(_)))
            .count()
    }

    /// Client address of msg_server `i`.
    pub fn msg_addr(&self, i: usize) -> anyhow::Result<String> {
        Ok(format!("127.0.0.1:{}", self.node(ServerId::Msg(i))?.port))
    }

    /// The private MariaDB, when the suite has one.
    pub fn mariadb(&mut self) -> Option<&mut Mariadb> {
        self.mariadb.as_mut()
    }

    /// The private Redis, when the suite has one.
    pub fn redis(&mut self) -> Option<&mut Redis> {
        self.redis.as_mut()
    }

    /// The upstream links msg_server `i` reports.
    pub async fn msg_links(&self, i: usize) -> anyhow::Result<Vec<UpstreamLink>> {
        let admin = self.node(ServerId::Msg(i))?.admin;
        Ok(crate::admin::stats(admin, &self.token).await?.upstreams)
    }

    /// The admin stats of server `id`.
    pub async fn stats(&self, id: ServerId) -> anyhow::Result<ServerStats> {
        crate::admin::stats(self.node(id)?.admin, &self.token).await
    }

    /// Waits until every running msg_server reports each of its links to a `kind` server
    /// ("route_server", "db_proxy_server", "login_server", "file_server", "push_server")
    /// connected; returns when the last of them connected, from the links' state age.
    pub async fn wait_links_up(
        &mut self,
        kind: &str,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let start = Instant::now();
        let msgs: Vec<usize> = (0..self.msg_server_count())
            .filter(|&i| self.is_running(ServerId::Msg(i)))
            .collect();
        loop {
            let mut last = None::<Instant>;
            let mut all_up = true;
            for &i in &msgs {
                let observed = Instant::now();
                let links = self.msg_links(i).await.unwrap_or_default();
                let of_kind: Vec<&UpstreamLink> =
                    links.iter().filter(|l| l.kind() == kind).collect();
                if of_kind.is_empty() || of_kind.iter().any(|l| !is_connected(l)) {
                    all_up = false;
                    break;
                }
                for l in of_kind {
                    let at = observed
                        .checked_sub(Duration::from_millis(l.state_age_ms()))
                        .unwrap_or(observed);
                    last = Some(last.map_or(at, |x| x.max(at)));
                }
            }
            if all_up && let Some(at) = last {
                return Ok(at);
            }
            if start.elapsed() > timeout {
                bail!("msg_servers' {kind} links not all up after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every running msg_server has every link up, login_server lists every
    /// running msg_server, every running route_server links every one of them, and
    /// login_server hands one out.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut why = String::new();
        while start.elapsed() < START_WAIT {
            match self.readiness().await {
                Ok(None) => return Ok(()),
                Ok(Some(w)) => why = w,
                Err(e) => why = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("suite not ready after {START_WAIT:?}: {why}")
    }

    async fn readiness(&mut self) -> anyhow::Result<Option<String>> {
        let running: Vec<ServerId> = self
            .ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect();
        let msg_up = running
            .iter()
            .filter(|id| matches!(id, ServerId::Msg(_)))
            .count();
        for &id in &running {
            let admin = self.node(id)?.admin;
            match id {
                ServerId::Msg(i) => {
                    let links = self.msg_links(i).await?;
                    if let Some(l) = links.iter().find(|l| !is_connected(l)) {
                        return Ok(Some(format!(
                            "{id}: link to {} {} not up",
                            l.kind(),
                            l.addr()
                        )));
                    }
                }
                ServerId::Login => {
                    let n = Admin::connect(admin, &self.token)
                        .await?
                        .msg_server_count()
                        .await?;
                    if n < msg_up {
                        return Ok(Some(format!(
                            "login_server lists {n} of {msg_up} msg_servers"
                        )));
                    }
                }
                ServerId::Route(_) => {
                    let n = Admin::connect(admin, &self.token)
                        .await?
                        .route_links()
                        .await? as usize;
                    if n < msg_up {
                        return Ok(Some(format!("{id} links {n} of {msg_up} msg_servers")));
                    }
                }
                _ => {}
            }
        }
        if msg_up > 0 {
            fetch_msg_server(&self.login_url).await?;
        }
        Ok(None)
    }

    /// Stops every server with SIGTERM in reverse start order and checks that each exits 0.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        let ids: Vec<ServerId> = self.ids().into_iter().rev().collect();
        for id in ids {
            if !self.is_running(id) {
                continue;
            }
            match self.terminate(id).await {
                Ok((status, _)) if status.success() => {}
                Ok((status, _)) => failures.push(format!("{id} exited with {status}")),
                Err(e) => failures.push(format!("{id}: {e:#}")),
            }
        }
        if !failures.is_empty() {
            self.print_logs();
            bail!("shutdown: {}", failures.join("; "));
        }
        Ok(())
    }

    /// Prints the end of every log to stderr.
    pub fn print_logs(&self) {
        eprintln!("\n===== im-e2e: logs in {} =====", self.path.display());
        for n in &self.nodes {
            eprintln!(
                "----- {} ({}) -----\n{}",
                n.id,
                n.process.log_path().display(),
                n.process.log_tail(40)
            );
        }
    }

    /// The suite's directory (configs, logs, SQLite file).
    pub fn dir(&self) -> &Path {
        &self.path
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        // Servers first, then the databases they use (fields drop in declaration order,
        // which would remove the directory first).
        self.nodes.clear();
        self.mariadb = None;
        self.redis = None;
        if std::env::var_os(KEEP_ENV).is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("im-e2e: kept {}", d.keep().display());
        }
    }
}
