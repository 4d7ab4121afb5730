//! The real msfs on 127.0.0.1:0 with its data in a temp dir, for the voice message tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use im_common::CancellationToken;
use tokio::net::TcpListener;

/// A running msfs.
pub struct Msfs {
    /// Base URL, e.g. `http://127.0.0.1:12345/` (what login_server hands out as msfsPrior).
    pub url: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Msfs {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts msfs on 127.0.0.1:0.
pub async fn start() -> Msfs {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = msfs::Config {
        data_dir: dir.path().to_path_buf(),
        ..msfs::Config::default()
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(msfs::run(
        config,
        msfs::Listeners {
            https: None,
            http: listener,
            admin: None,
            metrics: None,
        },
        shutdown.clone(),
    ));
    Msfs { url, dir, shutdown }
}

impl Msfs {
    /// The stored files (not the counter's state file).
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.file_name().is_some_and(|n| {
                    // The state file, and its temporary copy while msfs saves it (the save
                    // may still run when a test looks: it counted as a second stored file).
                    let n = n.to_string_lossy();
                    n != msfs::store::STATE_FILE && n != format!(".{}.tmp", msfs::store::STATE_FILE)
                }) {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }

    /// Deletes every stored file (a data loss on the msfs side).
    pub fn clear(&self) {
        for f in self.files() {
            std::fs::remove_file(f).unwrap();
        }
    }
}
