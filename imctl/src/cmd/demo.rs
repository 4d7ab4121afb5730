//! `imctl demo`: the whole suite in this process (im-cluster) on SQLite in a data directory,
//! seeded with the demo users and groups on first start. It prints the login URL, the users
//! and the commands to try, writes an imctl.toml beside the database so that every other
//! command works against it, and stops cleanly on Ctrl-C (or SIGTERM), exit code 0.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use im_cluster::{Cluster, ClusterOptions, Ports, random_token};
use im_common::config::{LogConfig, LogFormat};
use serde::{Deserialize, Serialize};

use crate::cli::DemoArgs;
use crate::config::Config;

/// The demo data (fixtures/seed/demo.toml), built in so the demo runs from any directory.
pub const SEED: &str = include_str!("../../../fixtures/seed/demo.toml");

/// File names inside the data directory.
const SEED_FILE: &str = "demo-seed.toml";
const CONFIG_FILE: &str = "imctl.toml";

/// The commands printed under "try next", after `imctl --config <data-dir>/imctl.toml`.
/// `top` and `sim` join this list when those commands exist.
const TRY_NEXT: &[(&str, &str)] = &[
    ("status", "every server, its state and load"),
    ("servers", "the msg_servers login_server hands out"),
    ("route ls", "who is online, and where"),
    (
        "chat zhangsan --password 123456 --to lisi",
        "log in as zhangsan and type messages to lisi",
    ),
    (
        "send --as lisi --to zhangsan \"hello from imctl\"",
        "send a message on lisi's behalf",
    ),
    ("user ls", "the accounts"),
    ("group ls", "the groups and their members"),
];

/// What the seed file lists (only what the banner shows).
#[derive(Debug, Default, Deserialize)]
struct SeedSummary {
    #[serde(default)]
    user: Vec<SeedUser>,
    #[serde(default)]
    group: Vec<SeedGroup>,
}

#[derive(Debug, Deserialize)]
struct SeedUser {
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    nick: String,
}

#[derive(Debug, Deserialize)]
struct SeedGroup {
    name: String,
}

/// A demo user as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Nickname.
    pub nick: String,
}

/// What `imctl demo --json` prints once the suite is ready (one line).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReady {
    /// Always "ready".
    pub event: &'static str,
    /// login_server's `GET /msg_server` URL.
    pub login_url: String,
    /// Client addresses of the msg_servers.
    pub msg_servers: Vec<String>,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// The imctl config written there.
    pub config: PathBuf,
    /// The demo accounts.
    pub users: Vec<DemoUser>,
    /// The demo groups.
    pub groups: Vec<String>,
}

/// The admin token: the one of an earlier run (so a saved imctl.toml keeps working), else a
/// fresh random one.
fn token_for(config_path: &Path) -> String {
    std::fs::read_to_string(config_path)
        .ok()
        .and_then(|t| toml::from_str::<Config>(&t).ok())
        .map(|c| c.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(random_token)
}

/// The address handed to clients: the bind address, or loopback when binding every
/// interface (0.0.0.0 is not an address a client can dial).
fn advertised(bind: IpAddr) -> IpAddr {
    if bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind
    }
}

/// `imctl demo`
pub async fn run(a: &DemoArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    im_common::telemetry::init(&LogConfig {
        format: LogFormat::Text,
        level: a.log.clone(),
    })?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating the data directory {}", a.data_dir.display()))?;
    let data_dir = std::path::absolute(&a.data_dir)
        .with_context(|| format!("resolving {}", a.data_dir.display()))?;
    let seed_path = data_dir.join(SEED_FILE);
    std::fs::write(&seed_path, SEED).with_context(|| format!("writing {}", seed_path.display()))?;
    let config_path = data_dir.join(CONFIG_FILE);
    let token = token_for(&config_path);
    let advertise = advertised(a.bind);
    let opts = ClusterOptions {
        msg_servers: a.msg_servers.max(1),
        seed: Some(seed_path),
        admin_token: Some(token.clone()),
        bind_ip: a.bind,
        ports: if a.ephemeral {
            Ports::Ephemeral
        } else {
            Ports::Standard
        },
        tune: Some(Arc::new(move |c: &mut im_cluster::ServerConfigs| {
            for m in &mut c.msg {
                m.ip1 = advertise.to_string();
            }
        })),
        ..ClusterOptions::new(&data_dir)
    };
    let shutdown = im_common::shutdown_on_signals();
    let cluster = tokio::select! {
        c = Cluster::start(opts) => c.context(
            "starting the demo suite (another demo, or a TeamTalk server on the standard \
             ports? try --ephemeral)",
        )?,
        () = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
    };
    let login_url = cluster
        .login_url()
        .replacen(&a.bind.to_string(), &advertise.to_string(), 1);
    let mut admin: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, addr) in cluster.admin_endpoints() {
        admin.entry(kind.to_owned()).or_default().push(addr);
    }
    let config = Config {
        token,
        login_url: login_url.clone(),
        aes_key: String::new(),
        admin,
    };
    config.write(&config_path)?;
    let seed: SeedSummary = toml::from_str(SEED).unwrap_or_default();
    let ready = DemoReady {
        event: "ready",
        login_url,
        msg_servers: (0..a.msg_servers.max(1))
            .filter_map(|i| cluster.msg_server_addr(i))
            .map(|s| format!("{advertise}:{}", s.port()))
            .collect(),
        data_dir,
        config: config_path,
        users: seed
            .user
            .iter()
            .map(|u| DemoUser {
                name: u.name.clone(),
                password: u.password.clone(),
                nick: u.nick.clone(),
            })
            .collect(),
        groups: seed.group.iter().map(|g| g.name.clone()).collect(),
    };
    if as_json {
        println!("{}", serde_json::to_string(&ready)?);
    } else {
        print_banner(&ready);
    }
    shutdown.cancelled().await;
    eprintln!("stopping the demo suite...");
    cluster
        .shutdown()
        .await
        .context("stopping the demo suite")?;
    eprintln!("stopped; the data stays in {}", ready.data_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn print_banner(r: &DemoReady) {
    // The binary as it was started (under `cargo run` a path into target/).
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "imctl".to_owned());
    let cfg = r.config.display();
    println!("The TeamTalk demo suite is running. Stop it with Ctrl-C.");
    println!();
    println!("  login URL    {}", r.login_url);
    println!("  msg_servers  {}", r.msg_servers.join(", "));
    println!("  data         {}", r.data_dir.display());
    println!("  imctl config {cfg}");
    println!();
    println!("Point a TeamTalk client's login server at the login URL, or use `imctl chat`.");
    println!();
    let password = r.users.first().map_or("", |u| u.password.as_str());
    println!("Demo users (password {password}):");
    for row in r.users.chunks(4) {
        let cells: Vec<String> = row
            .iter()
            .map(|u| format!("{:<12}{}", u.name, u.nick))
            .collect();
        println!("  {}", cells.join("    "));
    }
    println!("Groups: {}", r.groups.join(", "));
    println!();
    println!("Try next, in another terminal:");
    for (cmd, what) in TRY_NEXT {
        println!("  {me} --config {cfg} {cmd}");
        println!("      {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_seed_lists_the_demo_users() {
        let seed: SeedSummary = toml::from_str(SEED).unwrap();
        assert!(
            seed.user
                .iter()
                .any(|u| u.name == "zhangsan" && u.password == "123456")
        );
        assert!(seed.user.iter().any(|u| u.name == "lisi"));
        assert!(!seed.group.is_empty());
        assert_eq!(
            advertised("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn a_saved_token_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CONFIG_FILE);
        let fresh = token_for(&p);
        assert!(fresh.len() >= 16);
        std::fs::write(&p, "token = \"kept-token-0123456789\"\n").unwrap();
        assert_eq!(token_for(&p), "kept-token-0123456789");
    }
}
