//! The HTTP side port of every server: Prometheus `/metrics`, `/healthz` (the process is up)
//! and `/readyz` (the server can do its job: its upstream links are connected, storage open).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Registry;

/// Readiness as the server reports it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    why_not: Arc<Mutex<String>>,
}

impl Health {
    /// Not ready yet.
    pub fn new() -> Self {
        let h = Health::default();
        h.set_not_ready("starting");
        h
    }

    /// Marks the server ready.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Marks it not ready, with the reason shown by `/readyz`.
    pub fn set_not_ready(&self, why: &str) {
        self.ready.store(false, Ordering::Relaxed);
        if let Ok(mut w) = self.why_not.lock() {
            *w = why.to_owned();
        }
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    health: Health,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, health });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.registry.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let why = s
            .health
            .why_not
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    }
}
