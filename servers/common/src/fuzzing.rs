//! Driving a server's real [`Handler`] with arbitrary input, without sockets: the kit behind the
//! per-server fuzz targets (`fuzz/`) and the tests that replay what they once found
//! (`fixtures/fuzz/<target>/`).
//!
//! A fuzz input is read as a list of records, so that the fuzzer spends its time in the
//! handlers rather than in learning the 16-byte header:
//!
//! ```text
//! record = sel:u8 seq:u16le len:u16le body[len]   (body cut short at the end of the input)
//! sel % (cids.len() + 2):  < cids.len()  -> that command of the server
//!                          == cids.len() -> the command id in the body's first two bytes (any id)
//!                          otherwise     -> the record's bytes go to the socket raw (framing)
//! ```
//!
//! [`drive`] writes the frames into an in-memory pipe, ends it, runs the connection with
//! [`run_connection`] until it closes, and returns every frame the server wrote back.
//! What holds for every server is checked on the way: the output is well-framed and no frame
//! passes the link's outbound cap ([`frames_of`]), a malformed frame closes the connection
//! ([`drive_wire`], which [`run_records`] uses); [`check_reply_seqs`] asserts that every reply
//! to a request carries that request's seq.
//!
//! Callers run this on a runtime with paused time (`start_paused`): timeouts the handlers wait
//! on then pass at once, so one input is bounded work.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use im_proto::codec::{LinkKind, PduCodec};
use im_proto::command::service_of;
use im_proto::pdu::Header;
use im_proto::{Pdu, cid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::conn::{CloseReason, Conn, ConnRegistry};
use crate::serve::{Handler, ServeOptions, run_connection};

/// Largest input [`records`] reads; longer inputs are cut (bounded work per input).
pub const MAX_INPUT: usize = 64 * 1024;

/// How long (in paused, virtual time) a connection may run before the driver gives up on it.
pub const VIRTUAL_LIMIT: Duration = Duration::from_secs(3600);

/// What went in and what came out of one driven connection.
#[derive(Debug, Default)]
pub struct Driven {
    /// The PDUs sent, in order (raw records are not listed).
    pub requests: Vec<Pdu>,
    /// Every PDU the server wrote back, in order.
    pub replies: Vec<Pdu>,
    /// Why the connection closed.
    pub closed: Option<CloseReason>,
}

impl Driven {
    /// The replies with command id `cid`.
    pub fn replies_of(&self, cid: u16) -> impl Iterator<Item = &Pdu> {
        self.replies.iter().filter(move |p| p.command_id() == cid)
    }
}

/// Cuts a fuzz input into frames (see the module doc); returns the bytes to send and the PDUs
/// they hold.
pub fn records(data: &[u8], cids: &[u16]) -> (Vec<u8>, Vec<Pdu>) {
    let mut data = &data[..data.len().min(MAX_INPUT)];
    let mut wire = Vec::with_capacity(data.len() + 64);
    let mut pdus = Vec::new();
    while data.len() >= 5 {
        let sel = usize::from(data[0]) % (cids.len() + 2);
        let seq = u16::from_le_bytes([data[1], data[2]]);
        let len = usize::from(u16::from_le_bytes([data[3], data[4]])).min(data.len() - 5);
        let body = &data[5..5 + len];
        data = &data[5 + len..];
        if sel > cids.len() {
            wire.extend_from_slice(body);
            continue;
        }
        let (command, body) = if sel < cids.len() {
            (cids[sel], body)
        } else if body.len() >= 2 {
            (u16::from_le_bytes([body[0], body[1]]), &body[2..])
        } else {
            (cid::CID_OTHER_HEARTBEAT, body)
        };
        let service = service_of(command).unwrap_or(0);
        let pdu = Pdu::new(
            Header::new(service, command, seq),
            Bytes::copy_from_slice(body),
        );
        wire.extend_from_slice(&pdu.to_frame());
        pdus.push(pdu);
    }
    (wire, pdus)
}

/// A fake peer address for driven connections.
pub fn peer_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

/// Builds a connection handle as `serve` would, registered in `registry`.
pub fn conn(opts: &ServeOptions, registry: &ConnRegistry) -> Conn {
    let conn = Conn::new(
        peer_addr(),
        opts.link,
        opts.queue_limit,
        opts.idle_timeout,
        registry.stats().clone(),
    );
    registry.insert(&conn);
    conn
}

/// Runs `handler` on `conn` over an in-memory pipe fed `wire` (then end of stream) and
/// collects what the server writes until the connection closes.
pub async fn drive<H: Handler>(
    conn: Conn,
    handler: H,
    opts: &ServeOptions,
    registry: &ConnRegistry,
    wire: Vec<u8>,
) -> (Vec<Pdu>, Option<CloseReason>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(server);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let feeder = tokio::spawn(async move {
        // A write error means the server closed first; what it did not read stays unread.
        let _ = client_write.write_all(&wire).await;
        let _ = client_write.shutdown().await;
    });
    let collector = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = client_read.read_to_end(&mut out).await;
        out
    });
    let id = conn.id();
    let run = run_connection(conn.clone(), read, write, handler, opts);
    if tokio::time::timeout(VIRTUAL_LIMIT, run).await.is_err() {
        panic!("connection still running after {VIRTUAL_LIMIT:?} of virtual time");
    }
    registry.remove(id);
    feeder.abort();
    let out = collector.await.unwrap_or_default();
    (frames_of(&out, opts.link), conn.close_reason())
}

/// Cuts the server's output into PDUs; panics when it is not well-framed or a frame passes the
/// link's outbound cap.
pub fn frames_of(out: &[u8], link: LinkKind) -> Vec<Pdu> {
    // Decoding with the outbound cap as the inbound one checks the cap for every frame.
    let cap = link.outbound_cap();
    let mut codec = PduCodec::with_caps(cap, cap);
    let mut buf = BytesMut::from(out);
    let mut pdus = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(p)) => pdus.push(p),
            Ok(None) => break,
            Err(e) => panic!("server output is not well-framed or over the cap {cap}: {e}"),
        }
    }
    pdus
}

/// Asserts that every reply whose command is the answer in one of `pairs` (request, answer)
/// carries the seq of a request of that pair's request command.
pub fn check_reply_seqs(driven: &Driven, pairs: &[(u16, u16)]) {
    for &(req, rsp) in pairs {
        for reply in driven.replies_of(rsp) {
            let asked = driven
                .requests
                .iter()
                .any(|r| r.command_id() == req && r.seq_num() == reply.seq_num());
            assert!(
                asked,
                "{} with seq {} answers no {} sent",
                reply.command_name(),
                reply.seq_num(),
                im_proto::command::command_name(req).unwrap_or("?")
            );
        }
    }
}

/// Runs a fresh connection of `make_handler`'s handler over `data` read as [`records`] and
/// returns what happened; the output framing and cap checks have passed.
pub async fn run_records<H: Handler>(
    data: &[u8],
    cids: &[u16],
    opts: &ServeOptions,
    registry: &ConnRegistry,
    make_handler: impl FnOnce(&Conn) -> H,
) -> Driven {
    let (wire, _) = records(data, cids);
    let conn = conn(opts, registry);
    let handler = make_handler(&conn);
    drive_wire(conn, handler, opts, registry, wire).await
}

/// What the server reads from `wire`: the PDUs before the first framing error, and whether
/// there is one (a malformed frame, or a frame cut short by the end of the stream).
pub fn inbound(wire: &[u8], link: LinkKind) -> (Vec<Pdu>, bool) {
    let mut codec = PduCodec::new(link);
    let mut buf = BytesMut::from(wire);
    let mut pdus = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(p)) => pdus.push(p),
            Ok(None) => return (pdus, false),
            Err(_) => return (pdus, true),
        }
    }
}

/// Runs `handler` on `conn` over `wire` (see [`drive`]); the requests listed are the PDUs
/// the server reads from it ([`inbound`], raw records included). Besides the framing and cap
/// checks, asserts that a malformed frame closes the connection (Decisions: bad input).
pub async fn drive_wire<H: Handler>(
    conn: Conn,
    handler: H,
    opts: &ServeOptions,
    registry: &ConnRegistry,
    wire: Vec<u8>,
) -> Driven {
    let (requests, malformed) = inbound(&wire, opts.link);
    let (replies, closed) = drive(conn, handler, opts, registry, wire).await;
    assert!(
        !(malformed && matches!(closed, Some(CloseReason::PeerClosed))),
        "a malformed frame did not close the connection"
    );
    Driven {
        requests,
        replies,
        closed,
    }
}

/// Encodes seed inputs: each `(selector, seq, body)` as one record (see the module doc).
pub fn seed(records: &[(u8, u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (sel, seq, body) in records {
        out.push(*sel);
        out.extend_from_slice(&seq.to_le_bytes());
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body[..usize::from(len)]);
    }
    out
}

/// `msg`'s protobuf body, for seed records.
pub fn body<M: im_proto::Command>(msg: &M) -> Vec<u8> {
    Pdu::from_msg(msg, 0).body.to_vec()
}

/// The selector byte of command `cid` in the table `cids` (the first entry when absent).
pub fn sel(cids: &[u16], cid: u16) -> u8 {
    cids.iter()
        .position(|&c| c == cid)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(0)
}

/// Writes `seeds` as `seed-<i>` files into `$IM_FUZZ_SEED_DIR` when it is set (a fuzz target's
/// corpus directory, see `fuzz/README.md`).
pub fn write_seeds(seeds: &[Vec<u8>]) {
    let Ok(dir) = std::env::var("IM_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        panic!("IM_FUZZ_SEED_DIR {}: {e}", dir.display());
    }
    for (i, s) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i}"));
        if let Err(e) = std::fs::write(&path, s) {
            panic!("{}: {e}", path.display());
        }
    }
}

/// The kept findings of fuzz target `target`: every file of `fixtures/fuzz/<target>/` but its
/// README, as (path, bytes), sorted by name. `manifest_dir` is the calling crate's
/// `CARGO_MANIFEST_DIR` (a crate under `servers/`).
pub fn findings(manifest_dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(manifest_dir).join(format!("../../fixtures/fuzz/{target}"));
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// The token [`check_admin`] configures (long enough for the admin port's minimum).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";

/// The admin commands, the admin fuzz input's command table (requests and, to see them
/// ignored, a few answers).
pub const ADMIN_COMMANDS: &[u16] = &[
    cid::CID_ADMIN_AUTH_REQ,
    cid::CID_ADMIN_STATS_REQ,
    cid::CID_ADMIN_ROUTE_LIST_REQ,
    cid::CID_ADMIN_LOCATE_USER_REQ,
    cid::CID_ADMIN_KICK_USER_REQ,
    cid::CID_ADMIN_DRAIN_REQ,
    cid::CID_ADMIN_MSG_SERVER_LIST_REQ,
    cid::CID_ADMIN_CONN_LIST_REQ,
    cid::CID_ADMIN_GROUP_NOTIFY_REQ,
    cid::CID_ADMIN_AUTH_RSP,
    cid::CID_ADMIN_STATS_RSP,
    cid::CID_OTHER_HEARTBEAT,
];

/// Runs one admin connection of `service` (the shared admin dispatch of
/// [`crate::admin`]) over `data` and checks what holds on every server's admin port; panics
/// when it breaks. The first byte's low bit set sends a valid `IMAdminAuthReq` first (so
/// the fuzzer gets past authentication); the rest is records. Besides "never panics, never
/// hangs" and the framing and cap checks:
/// * without a valid authentication first, nothing is answered but one `ADMIN_AUTH_FAILED`
///   with the first request's seq (and heartbeats), after which the connection is closed;
/// * after it, every answer is the response of a request (command id + 1) with that
///   request's seq.
pub async fn check_admin<S: crate::admin::AdminService>(service: std::sync::Arc<S>, data: &[u8]) {
    use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminAuthRsp};

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (handler, opts) = crate::admin::admin_handler(ADMIN_TOKEN.to_owned(), service);
    let registry = ConnRegistry::new();
    let auth = ImAdminAuthReq {
        token: Some(ADMIN_TOKEN.to_owned()),
        client_name: Some("fuzz".to_owned()),
    };
    let mut wire = Vec::new();
    if mode & 1 == 1 {
        wire.extend_from_slice(&Pdu::from_msg(&auth, 1).to_frame());
    }
    wire.extend_from_slice(&records(rest, ADMIN_COMMANDS).0);
    let c = conn(&opts, &registry);
    let driven = drive_wire(c, handler, &opts, &registry, wire).await;
    // Authenticated when the first PDU the handler saw is an auth request with the token.
    let first = driven
        .requests
        .iter()
        .find(|q| q.command_id() != cid::CID_OTHER_HEARTBEAT);
    let authed = first.is_some_and(|q| {
        q.command_id() == cid::CID_ADMIN_AUTH_REQ
            && q.decode::<ImAdminAuthReq>()
                .is_ok_and(|a| a.token.as_deref() == Some(ADMIN_TOKEN))
    });
    if authed {
        for r in &driven.replies {
            if r.command_id() == cid::CID_OTHER_HEARTBEAT {
                continue;
            }
            let asked = driven.requests.iter().any(|q| {
                q.command_id().checked_add(1) == Some(r.command_id()) && q.seq_num() == r.seq_num()
            });
            assert!(
                asked,
                "{} with seq {} answers no request",
                r.command_name(),
                r.seq_num()
            );
        }
        return;
    }
    {
        let answers: Vec<&Pdu> = driven
            .replies
            .iter()
            .filter(|r| r.command_id() != cid::CID_OTHER_HEARTBEAT)
            .collect();
        assert!(
            answers.len() <= 1,
            "{} answers on an unauthenticated admin connection",
            answers.len()
        );
        if let Some(a) = answers.first() {
            assert_eq!(a.command_id(), cid::CID_ADMIN_AUTH_RSP);
            assert_eq!(
                Some(a.seq_num()),
                first.map(Pdu::seq_num),
                "the refusal does not carry the first request's seq"
            );
            let rsp = a.decode::<ImAdminAuthRsp>();
            assert!(
                rsp.as_ref()
                    .is_ok_and(|r| r.result_code == Some(AdminResult::AdminAuthFailed as i32)),
                "unauthenticated admin connection answered {rsp:?}"
            );
            assert!(
                matches!(driven.closed, Some(CloseReason::Server(_))),
                "a refused admin connection was closed by {:?}",
                driven.closed
            );
        }
    }
}
