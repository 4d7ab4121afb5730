//! A demo-seeded suite in this process, and the real imctl binary run against it.

use std::path::{Path, PathBuf};
use std::process::Output;

use im_cluster::{Cluster, ClusterOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Two msg_servers, one route_server, db_proxy on SQLite with the demo users.
pub async fn cluster(dir: &Path) -> Cluster {
    let mut opts = ClusterOptions::new(dir);
    opts.seed = Some(repo().join("fixtures/seed/demo.toml"));
    Cluster::start(opts).await.expect("cluster starts")
}

/// An imctl.toml for the cluster.
pub fn imctl_config(cl: &Cluster, dir: &Path) -> PathBuf {
    let mut text = format!(
        "token = \"{}\"\nlogin_url = \"{}\"\n[admin]\n",
        cl.admin_token(),
        cl.login_url()
    );
    let mut kinds: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (kind, addr) in cl.admin_endpoints() {
        kinds.entry(kind).or_default().push(format!("\"{addr}\""));
    }
    for (kind, addrs) in kinds {
        text.push_str(&format!("{kind} = [{}]\n", addrs.join(", ")));
    }
    let path = dir.join("imctl.toml");
    std::fs::write(&path, text).expect("write imctl.toml");
    path
}

/// Runs imctl with these arguments from the repository root (so that scenario names resolve)
/// on a blocking thread, while the cluster keeps running on the test's runtime.
pub async fn imctl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_imctl"))
            .args(&args)
            .current_dir(repo())
            .env_remove("IMCTL_CONFIG")
            .env_remove("IM_ADMIN_TOKEN")
            .env_remove("IM_LOGIN_URL")
            .output()
            .expect("imctl runs")
    })
    .await
    .expect("join")
}

/// stdout and stderr, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Arguments from string slices.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
