//! A seeded in-process suite, an imctl.toml pointing at it, the binary, and TeamTalk clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use im_cluster::{Cluster, ClusterOptions};
use im_proto::base::ClientType;
use im_proto::client::{ClientConfig, Events, ImClient, LoginParams};
use im_proto::{Command, Pdu};

/// Generous bound for anything that must happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// The demo seed's password.
pub const PASSWORD: &str = "123456";

/// The binary under test.
pub const IMCTL: &str = env!("CARGO_BIN_EXE_imctl");

/// The repository root (fixtures, man pages).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running suite and an imctl config for it.
pub struct Suite {
    pub cluster: Cluster,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Suite {
    /// Two msg_servers, one route_server, SQLite, the demo users and groups.
    pub async fn start() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = ClusterOptions::new(dir.path().join("data"));
        opts.seed = Some(repo_root().join("fixtures/seed/demo.toml"));
        let cluster = Cluster::start(opts).await.expect("cluster starts");
        let mut admin: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (kind, addr) in cluster.admin_endpoints() {
            admin.entry(kind.to_owned()).or_default().push(addr);
        }
        let config = imctl::config::Config {
            token: cluster.admin_token().to_owned(),
            login_url: cluster.login_url().to_owned(),
            aes_key: String::new(),
            admin,
        };
        let path = dir.path().join("imctl.toml");
        config.write(&path).unwrap();
        Suite {
            cluster,
            config: path,
            dir,
        }
    }

    /// Runs `imctl --config <ours> ARGS` with `stdin` (none when empty).
    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(&self.config, args, stdin, &[]).await
    }

    /// Runs `imctl --config <ours> ARGS`.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "").await
    }

    /// Runs `imctl --config <ours> --json ARGS`, expects success, parses stdout.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        ok(&out, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "imctl {args:?}: stdout is not JSON ({e}): {}",
                text(&out.stdout)
            )
        })
    }

    /// Client address of msg_server `i`.
    pub fn msg_server(&self, i: usize) -> SocketAddr {
        self.cluster.msg_server_addr(i).unwrap()
    }
}

/// Runs the binary with a config file, stdin text and extra environment.
pub async fn run(config: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(IMCTL);
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("IM_ADMIN_TOKEN").env_remove("IM_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(WAIT * 2, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("imctl {args:?} did not finish"))
        .unwrap()
}

/// Text of an output stream.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success, printing both streams otherwise.
pub fn ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "imctl {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A logged-in TeamTalk client.
pub struct User {
    pub c: ImClient,
    pub ev: Events,
    pub id: u32,
}

/// Logs `name` (a seeded user) in on the msg_server at `addr`.
pub async fn login(addr: SocketAddr, name: &str, ct: ClientType) -> User {
    login_with(addr, name, PASSWORD, ct).await
}

/// Logs `name` in with `password`.
pub async fn login_with(addr: SocketAddr, name: &str, password: &str, ct: ClientType) -> User {
    let (c, ev) = ImClient::connect(
        &addr.to_string(),
        ClientConfig {
            request_timeout: WAIT,
            heartbeat_interval: Some(Duration::from_secs(30)),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let res = c
        .login(&LoginParams::new(name, password).with_client_type(ct))
        .await
        .unwrap_or_else(|e| panic!("login {name}: {e}"));
    let id = res.user_info.unwrap().user_id;
    User { c, ev, id }
}

impl User {
    /// The next unsolicited PDU of `M`, skipping others.
    pub async fn next<M: Command>(&mut self) -> (Pdu, M) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let pdu = tokio::time::timeout_at(deadline, self.ev.recv())
                .await
                .unwrap_or_else(|_| panic!("user {} got no {} in time", self.id, M::NAME))
                .unwrap_or_else(|| panic!("user {}: connection closed", self.id));
            if pdu.command_id() == M::COMMAND_ID {
                let m = pdu.decode::<M>().unwrap();
                return (pdu, m);
            }
        }
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ev.recv()).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(_) => panic!("user {}: connection still open", self.id),
            }
        }
    }
}

/// Polls `f` until true (fails after [`WAIT`]).
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
