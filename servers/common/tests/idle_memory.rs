//! What an idle connection costs the serve loop in heap: counted by this test binary's own
//! global allocator over a few thousand real loopback connections, each of which did one
//! request/reply first (so its buffers and queue have been used, as a logged-in client's
//! have). The target is 2 KB of resident memory per idle connection for a whole
//! msg_server; the serve loop is most of that (`imctl bench idle` measures the rest).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::time::{Duration, Instant};

use bytes::Bytes;
use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::message::{ImClientTimeReq, ImClientTimeRsp};
use im_proto::{Header, Pdu};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

/// Answers every PDU with an IMClientTimeRsp, like a server answering a client's requests.
struct Echo;

impl Handler for Echo {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        let _ = conn.reply(&pdu, &ImClientTimeRsp { server_time: 1 });
    }
}

const CONNECTIONS: usize = 2000;

/// Heap per idle connection in the serve loop, in bytes. Measured by this test (debug
/// build): 2,650 with a writer task and a timer per connection; 1,363 once the writer ran
/// only while something was queued and the listener swept the deadlines; 1,202 since the
/// reader's future holds each argument once and no `Notify` waiter, the connection record
/// shares its wakers and runtime handle, and a quiet reader holds no read buffer.
const BUDGET: isize = 1300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_little_heap() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = ConnRegistry::new();
    let shutdown = CancellationToken::new();
    let server = {
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tokio::spawn(serve(
            listener,
            ServeOptions::client("idle"),
            registry,
            shutdown,
            |_| Echo,
        ))
    };
    // A header-only request, then a login-sized one, each answered before the next: the
    // reader has read a frame exactly a header long and, last, one longer than a header,
    // as a client that just logged in has.
    let requests = [
        Pdu::from_msg(&ImClientTimeReq {}, 7).to_frame(),
        Pdu::new(Header::new(0x0002, 0x0103, 1), Bytes::from(vec![b'x'; 200])).to_frame(),
    ];
    // Warm up the runtime, the registry's shards and the allocator's pools, then measure
    // the same number again.
    let mut clients = Vec::with_capacity(2 * CONNECTIONS);
    let mut measured = 0isize;
    for round in 0..2 {
        let before = live();
        for _ in 0..CONNECTIONS {
            let mut c = TcpStream::connect(addr).await.unwrap();
            for request in &requests {
                c.write_all(request).await.unwrap();
                let mut reply = [0u8; 64];
                let n = c.read(&mut reply).await.unwrap();
                assert!(n >= 16, "no reply");
            }
            clients.push(c);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.len() < clients.len() {
            assert!(Instant::now() < deadline, "connections not registered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let every writer go idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The client sockets are in this process too: count only the server's side.
        let client_side = CONNECTIONS as isize * client_socket_cost();
        measured = (live() - before - client_side) / CONNECTIONS as isize;
        println!("round {round}: {measured} bytes of heap per idle connection");
    }
    assert!(
        measured <= BUDGET,
        "an idle connection costs {measured} bytes of heap; budget {BUDGET}"
    );
    shutdown.cancel();
    server.await.unwrap();
}

/// Heap of one idle client TcpStream of this test (its registration with the runtime).
fn client_socket_cost() -> isize {
    let before = live();
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std.local_addr().unwrap();
    let rt = tokio::runtime::Handle::current();
    let streams: Vec<_> = (0..64)
        .map(|_| {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            let _guard = rt.enter();
            TcpStream::from_std(s).unwrap()
        })
        .collect();
    let after = live();
    drop(streams);
    drop(std);
    (after - before) / 64
}
