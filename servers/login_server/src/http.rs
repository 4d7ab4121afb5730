//! `GET /msg_server` for clients (FLOWS.md 2), written by hand so that the original's exact
//! behaviour is easy to keep: any method; the request target must start with `/msg_server`
//! (11 characters, query ignored); the whole request must fit in 1024 bytes; anything else is
//! closed without an answer; one answer per connection, closed once written.
//!
//! The responder works on any `AsyncRead + AsyncWrite`: the same answers over HTTPS
//! (`https_listen`). Our one extension: a request whose query says `tls=1`
//! (`/msg_server?tls=1`) prefers a msg_server with a TLS client port and gets it as an extra
//! field `tlsPort`; every other request gets the original answer byte for byte.

use std::sync::Arc;
use std::time::Duration;

use im_common::tls::TlsListen;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::json::{Value, styled_object};
use crate::request::{MAX_REQUEST_LEN, Parse, parse_request};
use crate::server::Shared;
use crate::table::{Assignment, Refusal};

/// The original closes an HTTP connection after 60 s without data (`HTTP_CONN_TIMEOUT`). We
/// apply it to the whole request: a stock client sends its few hundred bytes at once, and a
/// peer trickling bytes must not hold a connection slot for hours.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Time to write the (sub-kilobyte) answer; a peer that does not read it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for connections that are writing their answer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// JSON `msg` when no msg_server is registered ("no msg_server").
pub const MSG_NO_MSG_SERVER: &str = "没有msg_server";
/// JSON `msg` when all are full ("load too high").
pub const MSG_FULL: &str = "负载过高";

/// What happened to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A `/msg_server` request was answered.
    Answered,
    /// Another path: closed without an answer.
    BadPath,
    /// More than 1024 bytes: closed without an answer.
    TooLarge,
    /// Not HTTP/1.x: closed without an answer.
    Malformed,
    /// The request did not arrive in time.
    Timeout,
    /// The peer closed, a socket error, or shutdown.
    Gone,
}

/// Reads one request from `stream` and answers it if it asks for `/msg_server`.
pub(crate) async fn handle<S>(
    stream: &mut S,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::select! {
        r = tokio::time::timeout(REQUEST_TIMEOUT, read_request(stream)) => r,
        () = shutdown.cancelled() => return Outcome::Gone,
    };
    let (is_msg_server, want_tls) = match read {
        Err(_) => return Outcome::Timeout,
        Ok(Err(outcome)) => return outcome,
        Ok(Ok(r)) => r,
    };
    if !is_msg_server {
        return Outcome::BadPath;
    }
    let response = response_with_tls(
        &shared.assign_for(want_tls),
        &shared.config.msfs,
        &shared.config.discovery,
        want_tls,
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Outcome::Answered,
        // The assignment was made; the client retries if it did not get it, and the pending
        // entry expires.
        _ => Outcome::Gone,
    }
}

/// Reads until a whole request is buffered; `Ok((true, _))` when it asks for `/msg_server`,
/// `Ok((_, true))` when its query asks for TLS.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(bool, bool), Outcome> {
    // One byte more than allowed, so that "too large" is seen rather than "incomplete".
    let mut buf = [0u8; MAX_REQUEST_LEN + 1];
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|_| Outcome::Gone)?;
        if n == 0 {
            return Err(Outcome::Gone);
        }
        len += n;
        if len > MAX_REQUEST_LEN {
            return Err(Outcome::TooLarge);
        }
        match parse_request(&buf[..len]) {
            Parse::Incomplete => {}
            Parse::Complete { msg_server } => {
                return Ok((msg_server, msg_server && wants_tls(&buf[..len])));
            }
            Parse::TooLarge => return Err(Outcome::TooLarge),
            Parse::Malformed(_) => return Err(Outcome::Malformed),
        }
    }
}

/// True when the request target's query has `tls=1` (`GET /msg_server?tls=1 HTTP/1.1`).
pub fn wants_tls(request: &[u8]) -> bool {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return false;
    };
    target[q + 1..]
        .split(|&b| b == b'&')
        .any(|kv| kv == b"tls=1")
}

/// The whole HTTP response for an assignment or a refusal (FLOWS.md 2).
pub fn response(result: &Result<Assignment, Refusal>, msfs: &str, discovery: &str) -> String {
    response_with_tls(result, msfs, discovery, false)
}

/// [`response`]; when the client asked for TLS and the msg_server has a TLS port, the
/// original fields are followed by `tlsPort` (a string, like `port`).
pub fn response_with_tls(
    result: &Result<Assignment, Refusal>,
    msfs: &str,
    discovery: &str,
    want_tls: bool,
) -> String {
    let body = match result {
        Ok(a) => {
            let port = a.port.to_string();
            let tls_port = a.tls_port.filter(|_| want_tls).map(|p| p.to_string());
            let mut fields = vec![
                ("code", Value::Int(0)),
                ("msg", Value::Str("")),
                // The original swaps these for "non-telecom" peers, a test that is false for
                // every IPv4 address (FLOWS.md 2), so ip1 is always the prior address.
                ("priorIP", Value::Str(&a.ip1)),
                ("backupIP", Value::Str(&a.ip2)),
                ("msfsPrior", Value::Str(msfs)),
                ("msfsBackup", Value::Str(msfs)),
                ("discovery", Value::Str(discovery)),
                // A string, as in the original; clients parse it as a number.
                ("port", Value::Str(&port)),
            ];
            if let Some(p) = &tls_port {
                fields.push(("tlsPort", Value::Str(p)));
            }
            styled_object(&mut fields)
        }
        Err(Refusal::NoMsgServer) => styled_object(&mut [
            ("code", Value::Int(1)),
            ("msg", Value::Str(MSG_NO_MSG_SERVER)),
        ]),
        Err(Refusal::Full) => {
            styled_object(&mut [("code", Value::Int(2)), ("msg", Value::Str(MSG_FULL))])
        }
    };
    // The original's header spelling: no space after the colons.
    format!(
        "HTTP/1.1 200 OK\r\nConnection:close\r\nContent-Length:{}\r\n\
         Content-Type:text/html;charset=utf-8\r\n\r\n{body}",
        body.len()
    )
}

/// Accepts HTTP (or, with `tls`, HTTPS) connections until `shutdown`, one task per
/// connection, at most as many at a time as `limit` has permits (`http_max_connections`,
/// shared by the HTTP and HTTPS ports).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsListen>,
    limit: Arc<Semaphore>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let name = if tls.is_some() { "https" } else { "http" };
    im_common::net::widen_backlog(&listener);
    let tasks = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tracing::info!(listener = name, addr = ?listener.local_addr().ok(), "listening");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared.metrics.http_over_limit.inc();
            tracing::warn!(listener = name, %peer, max = shared.config.http_max_connections,
                "HTTP connection limit reached, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let m = &shared.metrics;
            m.http_open.add(1);
            let outcome = match &tls {
                None => handle(&mut stream, &shared, &shutdown).await,
                Some(tls) => {
                    let secured = tokio::select! {
                        r = im_common::tls::accept(tls, stream) => r,
                        () = shutdown.cancelled() => Err(std::io::ErrorKind::Interrupted.into()),
                    };
                    match secured {
                        Ok(mut stream) => handle(&mut stream, &shared, &shutdown).await,
                        Err(e) => {
                            im_common::tls::log_handshake_failure(name, peer, &e);
                            Outcome::Gone
                        }
                    }
                }
            };
            m.http_open.add(-1);
            drop(permit);
            match outcome {
                Outcome::Answered => m.http_answered.inc(),
                Outcome::BadPath => m.http_closed_bad_path.inc(),
                Outcome::TooLarge => m.http_closed_too_large.inc(),
                Outcome::Malformed => m.http_closed_malformed.inc(),
                Outcome::Timeout => m.http_closed_timeout.inc(),
                Outcome::Gone => {}
            }
            if !matches!(outcome, Outcome::Answered | Outcome::Gone) {
                tracing::debug!(%peer, ?outcome, "HTTP connection closed without an answer");
            }
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "HTTP connections still writing at shutdown"
        );
    }
    tracing::info!(listener = name, "stopped");
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;
    use crate::{Config, LoginServer};

    fn shared() -> Arc<Shared> {
        LoginServer::new(Config::default())
            .map(|s| s.shared)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_completes_times_out_after_60_s() {
        let shared = shared();
        let (mut client, mut server) = duplex(4096);
        let start = tokio::time::Instant::now();
        let answer = tokio::spawn(async move {
            let outcome = handle(&mut server, &shared, &CancellationToken::new()).await;
            (outcome, start.elapsed())
        });
        // A slow client: a byte every 10 s, never the end of the head.
        for b in b"GET /msg_server HTTP/1.1\r\nX: " {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let (outcome, took) = answer.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, Outcome::Timeout);
        assert_eq!(took, REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_waiting_request_and_a_whole_one_is_answered() {
        let shared = shared();
        let shutdown = CancellationToken::new();
        let (_client, mut server) = duplex(4096);
        let (s2, t2) = (shared.clone(), shutdown.clone());
        let waiting = tokio::spawn(async move { handle(&mut server, &s2, &t2).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        assert_eq!(waiting.await.ok(), Some(Outcome::Gone));

        let (mut client, mut server) = duplex(4096);
        let answer =
            tokio::spawn(
                async move { handle(&mut server, &shared, &CancellationToken::new()).await },
            );
        let _ = client.write_all(b"GET /msg_server HTTP/1.1\r\n\r\n").await;
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got).await;
        assert_eq!(answer.await.ok(), Some(Outcome::Answered));
        let none = response(&Err(Refusal::NoMsgServer), "", "");
        assert_eq!(String::from_utf8_lossy(&got), none);
    }

    #[test]
    fn tls_port_only_when_asked_and_known() {
        assert!(wants_tls(b"GET /msg_server?tls=1 HTTP/1.1\r\n\r\n"));
        assert!(wants_tls(b"GET /msg_server?a=b&tls=1 HTTP/1.1\r\n\r\n"));
        assert!(!wants_tls(b"GET /msg_server HTTP/1.1\r\n\r\n"));
        assert!(!wants_tls(b"GET /msg_server?tls=10 HTTP/1.1\r\n\r\n"));
        let a = Assignment {
            ip1: "192.0.2.1".into(),
            ip2: "192.0.2.2".into(),
            port: 8000,
            tls_port: Some(8443),
        };
        let plain = response(&Ok(a.clone()), "m", "d");
        assert_eq!(response_with_tls(&Ok(a.clone()), "m", "d", false), plain);
        assert!(!plain.contains("tlsPort"), "{plain}");
        let tls = response_with_tls(&Ok(a.clone()), "m", "d", true);
        assert!(tls.contains("\"tlsPort\" : \"8443\""), "{tls}");
        // The original fields are unchanged around the extra one.
        let without = Assignment {
            tls_port: None,
            ..a
        };
        assert_eq!(response_with_tls(&Ok(without), "m", "d", true), plain);
    }

    #[test]
    fn tls_requests_prefer_msg_servers_with_a_tls_port() {
        use im_proto::server::ImMsgServInfo;
        let table = crate::table::MsgServerTable::new(std::time::Duration::ZERO);
        let now = std::time::Instant::now();
        let info = |port: u32, cur: u32| ImMsgServInfo {
            ip1: "192.0.2.1".into(),
            ip2: "192.0.2.1".into(),
            port,
            max_conn_cnt: 100,
            cur_conn_cnt: cur,
            host_name: format!("m{port}"),
        };
        table.register(1, info(8000, 0), now);
        table.register(2, info(8001, 50), now);
        assert!(!table.set_tls_port(3, 8443), "unknown link");
        assert!(!table.set_tls_port(2, 0), "port 0");
        assert!(table.set_tls_port(2, 8443));
        let plain = table.assign_for(now, false).unwrap();
        assert_eq!((plain.port, plain.tls_port), (8000, None));
        let tls = table.assign_for(now, true).unwrap();
        assert_eq!((tls.port, tls.tls_port), (8001, Some(8443)));
    }
}
