//! `POST <any path>`: one multipart/form-data file part, streamed to disk (FLOWS.md 17).
//!
//! Answers, byte for byte as the original (HTTP 200, `Content-Type:text/html;charset=utf-8`):
//! ```text
//! {"error_code":0,"error_msg": "成功","path":"<path>","url":"http://<Host>/<path>"}
//! {"error_code":1,"error_msg":"上传文件过大","url":""}
//! {"error_code":N,"error_msg":"格式错误","path":"","url":""}        N = 2..6, see FormatError
//! ```
//! Ours: 401 with error_code 20 when an upload token is configured and missing; 500 with
//! error_code 21 when the disk fails.
//!
//! The body is read by a pump task that counts bytes against `max_upload_bytes` and feeds the
//! multipart parser through a small channel, so neither the request nor the file is ever held
//! in memory whole. When the answer is decided before the body has been read (too large, a
//! format error, the file part done), the pump keeps reading and discarding a bounded amount,
//! so that the client, still sending, gets to read the answer instead of a connection reset.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST};
use hyper::{HeaderMap, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

use crate::service::{App, ResBody, json_response};
use crate::store::{Allocation, Suffix};

/// Chunks buffered between the pump and the parser (hyper's chunks are up to ~16 KiB).
const PUMP_CHANNEL: usize = 8;

/// Bytes read and thrown away after an early answer, beyond the limit itself: enough for the
/// closing boundary of any sane upload, bounded for the insane ones.
const DRAIN_EXTRA: u64 = 1 << 20;

/// Why an upload is a "format error", with the error_code answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// 2: the Content-Type has no multipart boundary.
    NoBoundary = 2,
    /// 3: no part carries a file name.
    NoFilePart = 3,
    /// 4: the file name is empty, too long, or has a bad extension.
    BadFileName = 4,
    /// 5: the multipart body is malformed or ends early.
    Malformed = 5,
    /// 6: the file part is empty.
    EmptyFile = 6,
}

/// The success answer.
pub fn success_body(path: &str, url: &str) -> String {
    format!(
        "{{\"error_code\":0,\"error_msg\": \"成功\",\"path\":{},\"url\":{}}}",
        json_str(path),
        json_str(url)
    )
}

/// The "file too large" answer.
pub const TOO_LARGE_BODY: &str = "{\"error_code\":1,\"error_msg\":\"上传文件过大\",\"url\":\"\"}";

fn format_error(e: FormatError) -> Response<ResBody> {
    json_response(
        StatusCode::OK,
        format!(
            "{{\"error_code\":{},\"error_msg\":\"格式错误\",\"path\":\"\",\"url\":\"\"}}",
            e as u8
        ),
    )
}

fn too_large() -> Response<ResBody> {
    json_response(StatusCode::OK, TOO_LARGE_BODY.to_owned())
}

fn unauthorized() -> Response<ResBody> {
    let mut rsp = json_response(
        StatusCode::UNAUTHORIZED,
        "{\"error_code\":20,\"error_msg\":\"未授权\",\"path\":\"\",\"url\":\"\"}".to_owned(),
    );
    rsp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    rsp
}

fn disk_error() -> Response<ResBody> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "{\"error_code\":21,\"error_msg\":\"服务器错误\",\"path\":\"\",\"url\":\"\"}".to_owned(),
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Handles one upload.
pub async fn upload(app: &Arc<App>, req: Request<Incoming>, local: &str) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let limit = app.config.max_upload_bytes;
    // A client waiting for "100 Continue" has not sent its body: an early answer needs no
    // drain, and not reading the body keeps hyper from inviting it.
    let waits_for_continue = parts
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let refuse_early = |body: Incoming| {
        if !waits_for_continue {
            Pump::drain(body, limit, app.idle);
        }
    };
    if !token_ok(app, &parts.headers, parts.uri.query()) {
        app.metrics.upload_refused("token");
        refuse_early(body);
        return unauthorized();
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        app.metrics.upload_refused("too_large");
        refuse_early(body);
        return too_large();
    }
    let boundary = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        app.metrics.upload_refused("format");
        refuse_early(body);
        return format_error(FormatError::NoBoundary);
    };
    let pump = Pump::spawn(body, limit, app.idle);
    let too_large_seen = pump.too_large.clone();
    let mut multipart = multer::Multipart::new(pump.stream, boundary);
    let outcome = receive(app, &mut multipart, &too_large_seen).await;
    match outcome {
        Ok((alloc, size)) => {
            app.store.stored(size);
            app.metrics.uploads.inc();
            app.metrics.upload_bytes.add(size);
            let url = public_url(app, &parts.headers, local, &alloc.url_path);
            tracing::debug!(path = %alloc.url_path, bytes = size, "file stored");
            json_response(StatusCode::OK, success_body(&alloc.url_path, &url))
        }
        Err(Refusal::TooLarge) => {
            app.metrics.upload_refused("too_large");
            too_large()
        }
        Err(Refusal::Format(e)) => {
            app.metrics.upload_refused("format");
            format_error(e)
        }
        Err(Refusal::Disk(e)) => {
            app.metrics.upload_refused("disk");
            tracing::error!(error = %e, "cannot store an upload");
            disk_error()
        }
    }
}

enum Refusal {
    TooLarge,
    Format(FormatError),
    Disk(io::Error),
}

/// Finds the file part and streams it to disk; returns where it went and its size.
async fn receive(
    app: &App,
    multipart: &mut multer::Multipart<'static>,
    too_large: &AtomicBool,
) -> Result<(Allocation, u64), Refusal> {
    let body_error = |_| {
        if too_large.load(Ordering::Relaxed) {
            Refusal::TooLarge
        } else {
            Refusal::Format(FormatError::Malformed)
        }
    };
    // Parts without a file name (form fields) come before the file in some clients.
    let mut field = loop {
        match multipart.next_field().await.map_err(body_error)? {
            Some(f) if f.file_name().is_some() => break f,
            Some(_) => {}
            None => return Err(Refusal::Format(FormatError::NoFilePart)),
        }
    };
    let suffix = Suffix::from_file_name(field.file_name().unwrap_or_default())
        .map_err(|_| Refusal::Format(FormatError::BadFileName))?;
    let usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let alloc = app.store.allocate(&suffix, usec);
    tokio::fs::create_dir_all(&alloc.dir)
        .await
        .map_err(Refusal::Disk)?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&alloc.temp)
        .await
        .map_err(Refusal::Disk)?;
    let written: Result<u64, Refusal> = async {
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(body_error)? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(Refusal::Disk)?;
        }
        if size == 0 {
            return Err(Refusal::Format(FormatError::EmptyFile));
        }
        file.flush().await.map_err(Refusal::Disk)?;
        // Answered means stored: the bytes are on disk before the path is handed out.
        file.sync_all().await.map_err(Refusal::Disk)?;
        Ok(size)
    }
    .await;
    drop(file);
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&alloc.temp).await;
            return Err(e);
        }
    };
    // A hard link never replaces an existing file, unlike a rename.
    let linked = tokio::fs::hard_link(&alloc.temp, &alloc.file).await;
    let _ = tokio::fs::remove_file(&alloc.temp).await;
    linked.map_err(Refusal::Disk)?;
    Ok((alloc, size))
}

/// `upload_token` is off, or the request carries it as a bearer token or `token=` parameter.
fn token_ok(app: &App, headers: &HeaderMap, query: Option<&str>) -> bool {
    let want = app.config.upload_token.as_bytes();
    if want.is_empty() {
        return true;
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let param = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    [bearer, param]
        .into_iter()
        .flatten()
        .any(|got| bool::from(got.as_bytes().ct_eq(want)))
}

/// The `url` of an answer: `public_url` + path, or `http://<Host>/` + path as the original.
fn public_url(app: &App, headers: &HeaderMap, local: &str, path: &str) -> String {
    if !app.config.public_url.is_empty() {
        let base = app.config.public_url.trim_end_matches('/');
        return format!("{base}/{path}");
    }
    // A Host header is echoed only if it looks like a host: it ends up in other users' chats.
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or(local);
    format!("http://{host}/{path}")
}

/// Reads a request body for the multipart parser, enforcing the size limit and the idle rule.
struct Pump {
    stream: ReceiverStream<Result<Bytes, io::Error>>,
    too_large: Arc<AtomicBool>,
}

impl Pump {
    fn spawn(body: Incoming, limit: u64, idle: Duration) -> Pump {
        let (tx, rx) = mpsc::channel(PUMP_CHANNEL);
        let too_large = Arc::new(AtomicBool::new(false));
        tokio::spawn(pump(body, Some(tx), limit, idle, too_large.clone()));
        Pump {
            stream: ReceiverStream::new(rx),
            too_large,
        }
    }

    /// Reads and discards the body (bounded) after an early answer.
    fn drain(body: Incoming, limit: u64, idle: Duration) {
        tokio::spawn(pump(
            body,
            None,
            limit,
            idle,
            Arc::new(AtomicBool::new(false)),
        ));
    }
}

async fn pump(
    mut body: Incoming,
    mut tx: Option<mpsc::Sender<Result<Bytes, io::Error>>>,
    limit: u64,
    idle: Duration,
    too_large: Arc<AtomicBool>,
) {
    let drain_cap = limit.saturating_add(DRAIN_EXTRA);
    let mut total = 0u64;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                if let Some(tx) = &tx {
                    let _ = tx.send(Err(io::Error::other(e))).await;
                }
                return;
            }
            Err(_) => {
                if let Some(tx) = &tx {
                    let _ = tx
                        .send(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "upload stalled",
                        )))
                        .await;
                }
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len() as u64);
        if let Some(sender) = &tx {
            if total > limit {
                too_large.store(true, Ordering::Relaxed);
                let _ = sender
                    .send(Err(io::Error::other("upload larger than the limit")))
                    .await;
                tx = None;
            } else if sender.send(Ok(data)).await.is_err() {
                // The parser is done (answer decided): drain from here on.
                tx = None;
            }
        }
        if tx.is_none() && total > drain_cap {
            // Dropping the body makes hyper close the connection after the answer.
            return;
        }
    }
}

/// A `Stream` over an mpsc receiver (tokio-stream's wrapper, without the dependency).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    /// Yields what the channel receives until every sender is gone.
    #[derive(Debug)]
    pub struct ReceiverStream<T>(mpsc::Receiver<T>);

    impl<T> ReceiverStream<T> {
        /// Wraps `rx`.
        pub fn new(rx: mpsc::Receiver<T>) -> Self {
            ReceiverStream(rx)
        }
    }

    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
