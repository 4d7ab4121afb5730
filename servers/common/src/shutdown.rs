//! Shutdown: signal -> cancel token -> stop accepting -> drain connections -> flush -> exit 0.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A shutdown token plus the tasks that must finish before the server returns.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A shutdown controlled by `token`.
    pub fn new(token: CancellationToken) -> Self {
        Shutdown {
            token,
            tasks: TaskTracker::new(),
        }
    }

    /// The token; cancelled when shutdown starts.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Tasks that shutdown waits for.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Resolves when shutdown starts.
    pub async fn started(&self) {
        self.token.cancelled().await;
    }

    /// True once shutdown started.
    pub fn is_started(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits for tracked tasks, at most `grace`; returns false if some were still running.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C), for binaries.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
