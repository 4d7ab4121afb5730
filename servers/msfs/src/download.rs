//! `GET /<path>` (and `HEAD`): a stored file streamed from disk (FLOWS.md 17), with single
//! byte ranges (`206`, `416`).
//!
//! The path is the `path` an upload answered, behind any first segment (`g0`); only that shape
//! resolves ([`crate::store::FileStore::resolve`]), so `..` and other tricks name nothing
//! (400). A missing file is a complete `404 Not Found` (the original cut its error answers by
//! one byte, WEAKNESSES 52). Stored files never change, so clients may cache them for good.

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::service::{App, ResBody, empty_response};
use crate::store::{PathRefusal, content_type};

/// Read size when streaming a file.
const READ_CHUNK: usize = 64 * 1024;

/// Stored paths are never rewritten: a year of caching is safe.
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) range: the whole file. Several ranges and syntax errors land here too;
    /// RFC 9110 lets a server ignore them.
    Whole,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads a `Range` header value against a file of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeAsk::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // "-n": the last n bytes.
        return match num(last) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    // "a-" or "a-b".
    let Some(start) = num(first) else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        None
    } else {
        match num(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeAsk::Whole,
        }
    };
    if start >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part {
        start,
        end: end.map_or(len - 1, |e| e.min(len - 1)),
    }
}

/// Handles one GET or HEAD.
pub async fn download(app: &Arc<App>, path: &str, headers: &HeaderMap) -> Response<ResBody> {
    let file_path = match app.store.resolve(path) {
        Ok(p) => p,
        Err(PathRefusal::Malformed) => {
            app.metrics.download_refused("malformed");
            tracing::debug!(path, "refused a malformed download path");
            return empty_response(StatusCode::BAD_REQUEST);
        }
        Err(PathRefusal::NotFound) => return not_found(app),
    };
    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(app),
        Err(e) => {
            tracing::warn!(path = %file_path.display(), error = %e, "cannot open a stored file");
            app.metrics.download_refused("disk");
            return empty_response(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return not_found(app),
        Err(e) => {
            tracing::warn!(path = %file_path.display(), error = %e, "cannot stat a stored file");
            app.metrics.download_refused("disk");
            return empty_response(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let ask = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeAsk::Whole, |v| parse_range(v, len));
    let (status, start, count) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, len),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAsk::Unsatisfiable => {
            app.metrics.download_refused("range");
            let mut rsp = empty_response(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                rsp.headers_mut().insert(CONTENT_RANGE, v);
            }
            return rsp;
        }
    };
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::warn!(path = %file_path.display(), error = %e, "cannot seek in a stored file");
        return empty_response(StatusCode::INTERNAL_SERVER_ERROR);
    }
    app.metrics.downloads.inc();
    let counter = app.metrics.download_bytes.clone();
    let stream =
        ReaderStream::with_capacity(file.take(count), READ_CHUNK).map_ok(move |b: Bytes| {
            counter.add(b.len() as u64);
            Frame::data(b)
        });
    let body = StreamBody::new(stream).boxed_unsync();
    let mut rsp = Response::new(body);
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type(&file_path)) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_FOREVER));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(CONTENT_RANGE, v);
    }
    rsp
}

fn not_found(app: &App) -> Response<ResBody> {
    app.metrics.download_refused("not_found");
    empty_response(StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str| parse_range(v, 100);
        assert_eq!(p("bytes=0-9"), RangeAsk::Part { start: 0, end: 9 });
        assert_eq!(p("bytes=90-"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=90-500"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), RangeAsk::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-500"), RangeAsk::Part { start: 0, end: 99 });
        assert_eq!(p("BYTES = 5-5"), RangeAsk::Part { start: 5, end: 5 });
        assert_eq!(p("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=100-200"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
        for ignored in [
            "bytes=9-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-1",
            "bytes=1-x",
            "bytes",
            "bytes=-",
        ] {
            assert_eq!(p(ignored), RangeAsk::Whole, "{ignored}");
        }
    }
}
