//! The HTTP front: one service per connection, dispatching on the method (FLOWS.md 17).
//!
//! POST (any path) uploads, GET and HEAD download; anything else is `405 Method Not Allowed`
//! with `Allow` (the original answered 403, which says "forbidden for you" rather than "not a
//! method here"; stock clients only GET and POST). Every answer carries
//! `X-Content-Type-Options: nosniff`, so a browser never second-guesses the content type
//! (WEAKNESSES 12).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use hyper::{Method, Request, Response, StatusCode};
use im_common::http1::ConnInfo;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::FileStore;

/// The body type of every answer: a small buffer or a file stream.
pub type ResBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// What every connection's service shares.
#[derive(Debug)]
pub struct App {
    /// Configuration.
    pub config: Config,
    /// The data directory.
    pub store: Arc<FileStore>,
    /// Counters.
    pub metrics: Metrics,
    /// The idle rule, also applied to a stalled upload body.
    pub idle: Duration,
}

/// A JSON answer as the original sends it: `Content-Type:text/html;charset=utf-8` and the
/// connection closed afterwards.
pub fn json_response(status: StatusCode, body: String) -> Response<ResBody> {
    let mut rsp = Response::new(full(Bytes::from(body)));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    rsp
}

/// An answer with a status and no body.
pub fn empty_response(status: StatusCode) -> Response<ResBody> {
    let mut rsp = Response::new(full(Bytes::new()));
    *rsp.status_mut() = status;
    rsp
}

fn full(b: Bytes) -> ResBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// Answers one request.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    info: ConnInfo,
) -> Result<Response<ResBody>, Infallible> {
    let mut rsp = match *req.method() {
        Method::POST => crate::upload::upload(&app, req, &info.local.to_string()).await,
        Method::GET | Method::HEAD => {
            let path = req.uri().path().to_owned();
            crate::download::download(&app, &path, req.headers()).await
        }
        _ => {
            let mut rsp = empty_response(StatusCode::METHOD_NOT_ALLOWED);
            rsp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            // The request body (if any) is not read; the connection cannot be reused.
            rsp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            rsp
        }
    };
    rsp.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(rsp)
}
