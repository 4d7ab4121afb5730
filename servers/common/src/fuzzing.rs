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
//! [`check_common`] asserts what holds for every server: the output is well-framed, no frame
//! passes the link's outbound cap, and every reply to a request carries that request's seq.
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
use tokio_util::sync::CancellationToken;

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
    let local = SocketAddr::from(([127, 0, 0, 1], 8000));
    let conn = Conn::new(
        peer_addr(),
        local,
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
    let run = run_connection(
        conn.clone(),
        read,
        write,
        handler,
        opts,
        CancellationToken::new(),
    );
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
    let (wire, requests) = records(data, cids);
    let conn = conn(opts, registry);
    let handler = make_handler(&conn);
    let (replies, closed) = drive(conn, handler, opts, registry, wire).await;
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
