//! The HTTP front (FLOWS.md 16): `/query/<name>` behind the API token, `/api/discovery` open.
//!
//! Answers carry the original's headers: `Content-Type: text/html;charset=utf-8`,
//! `Cache-Control: no-cache`, `Connection: close`. A `/query/` request without the token
//! (`Authorization: Bearer <token>` or `X-Api-Token: <token>`, compared in constant time) is
//! answered 401 with `{"error_code":2,"error_msg":"认证失败"}` before anything is parsed.
//! The original closed the connection on a path outside `/query/` and on unparseable JSON;
//! we answer 404 and error 1 instead, which tells an operator what went wrong.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::query::{Answer, Code, group, message};
use crate::server::Server;

/// Header carrying the token for clients that cannot set `Authorization`.
pub const TOKEN_HEADER: &str = "x-api-token";

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    rsp
}

fn answer(status: StatusCode, a: &Answer) -> Response<Full<Bytes>> {
    respond(status, "text/html;charset=utf-8", Bytes::from(a.to_json()))
}

/// Answers one request.
pub async fn handle(
    s: Arc<Server>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/api/discovery" {
        s.metrics.request("discovery");
        return Ok(discovery(&s, req.method()).await);
    }
    let Some(name) = path.strip_prefix("/query/") else {
        s.metrics.request("other");
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "text/html;charset=utf-8",
            Bytes::new(),
        ));
    };
    s.metrics.request(name);
    let (parts, body) = req.into_parts();
    let max = s.config.max_body_bytes;
    if !token_ok(&s.config.api_token, &parts.headers) {
        s.metrics.unauthorized.inc();
        tracing::info!(endpoint = name, "HTTP API request without a valid token");
        // Read (and drop) the body, so that the client gets the answer instead of a reset.
        drain(body, max).await;
        let mut rsp = answer(StatusCode::UNAUTHORIZED, &Code::Unauthorized.into());
        rsp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(rsp);
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::info!(endpoint = name, error = %e, "HTTP API request body refused");
            s.metrics.failed();
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Code::BadParam.into(),
            ));
        }
    };
    let query = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.is_object() => v,
        _ => {
            s.metrics.failed();
            return Ok(answer(StatusCode::OK, &Code::BadParam.into()));
        }
    };
    let a = match name {
        "CreateGroup" => group::create_group(&s, &query).await,
        "ChangeMembers" => group::change_members(&s, &query).await,
        "SendMessage" => message::send_message(&s, &query).await,
        _ => {
            s.metrics.failed();
            return Ok(answer(StatusCode::NOT_FOUND, &Code::BadParam.into()));
        }
    };
    if a.code != Code::Ok {
        s.metrics.failed();
    }
    Ok(answer(StatusCode::OK, &a))
}

async fn discovery(s: &Server, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut rsp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/html;charset=utf-8",
            Bytes::new(),
        );
        rsp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return rsp;
    }
    match crate::discovery::list(s).await {
        Some(body) => respond(StatusCode::OK, "application/json;charset=utf-8", body),
        None => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json;charset=utf-8",
            Bytes::from_static(b"[]"),
        ),
    }
}

/// The request carries `token` as a bearer token or in `X-Api-Token`.
fn token_ok(token: &str, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let header = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    !token.is_empty()
        && [bearer, header]
            .into_iter()
            .flatten()
            .any(|got| bool::from(got.as_bytes().ct_eq(token.as_bytes())))
}

/// Reads and drops up to `max` body bytes.
async fn drain(mut body: Incoming, max: usize) {
    let mut seen = 0usize;
    while seen <= max {
        match body.frame().await {
            Some(Ok(f)) => seen += f.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let mut h = HeaderMap::new();
        assert!(!token_ok("secret-token-012345", &h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert!(!token_ok("secret-token-012345", &h));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer secret-token-012345"),
        );
        assert!(token_ok("secret-token-012345", &h));
        let mut h = HeaderMap::new();
        h.insert(
            TOKEN_HEADER,
            HeaderValue::from_static("secret-token-012345"),
        );
        assert!(token_ok("secret-token-012345", &h));
        assert!(!token_ok("", &HeaderMap::new()));
    }
}
