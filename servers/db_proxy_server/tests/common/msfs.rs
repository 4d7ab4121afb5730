//! A STAND-IN for msfs, until our msfs server exists: a small HTTP server that behaves as
//! FLOWS.md 17 describes the original (upload: one multipart part found by byte search,
//! `Content-Type:` part header required, answer JSON with `url` = http://<Host>/<path>;
//! download: GET of that path, 404 when missing). Replace it with the real msfs in these
//! tests once that server is built.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// The stand-in's state.
#[derive(Clone, Default)]
pub struct StandIn {
    /// Stored files by path (without the leading slash).
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Uploads received.
    pub uploads: Arc<AtomicU64>,
}

/// A running stand-in.
pub struct StandInMsfs {
    /// Base URL, e.g. `http://127.0.0.1:12345/`.
    pub url: String,
    /// State.
    pub state: StandIn,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandInMsfs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the stand-in on 127.0.0.1:0.
pub async fn start() -> StandInMsfs {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let state = StandIn::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    StandInMsfs { url, state, task }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn json(code: u32, msg: &str, path: &str, url: &str) -> Response {
    let body = format!(
        "{{\"error_code\":{code},\"error_msg\": \"{msg}\",\"path\":\"{path}\",\"url\":\"{url}\"}}"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html;charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        body,
    )
        .into_response()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<StandIn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match method {
        Method::GET => {
            let path = uri.path().trim_start_matches('/').to_owned();
            match state.files.lock().unwrap().get(&path) {
                Some(bytes) => (
                    [(header::CONTENT_TYPE, "multipart/form-data")],
                    bytes.clone(),
                )
                    .into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        Method::POST => {
            let format_error = || json(2, "格式错误", "", "");
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(b) = ct.find("boundary=") else {
                return format_error();
            };
            let boundary = format!("\r\n--{}", &ct[b + 9..]);
            let Some(disp) = find(&body, b"Content-Disposition:", 0) else {
                return format_error();
            };
            if find(&body, b"filename=\"", disp).is_none() {
                return format_error();
            }
            let Some(ctype) = find(&body, b"Content-Type:", disp) else {
                return format_error();
            };
            let Some(blank) = find(&body, b"\r\n\r\n", ctype) else {
                return format_error();
            };
            let start = blank + 4;
            let Some(end) = find(&body, boundary.as_bytes(), start) else {
                return format_error();
            };
            let n = state.uploads.fetch_add(1, Ordering::Relaxed);
            let path = format!("g0/000/000/{}_{n}.audio", 1_700_000_000_000_000u64 + n);
            state
                .files
                .lock()
                .unwrap()
                .insert(path.clone(), body[start..end].to_vec());
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1");
            json(0, "成功", &path, &format!("http://{host}/{path}"))
        }
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}
