//! Free TCP ports on 127.0.0.1 for servers that must know each other's addresses before they
//! start (and keep them across restarts).
//!
//! Ports come from below the kernel's ephemeral range (32768..61000 by default), so that the
//! many outgoing connections of a test never take a server's port while it is down between a
//! kill and its restart. Each candidate is bound once to check that it is free, and a port is
//! never handed out twice by one test process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::bail;
use rand::Rng;

/// Lowest port handed out (well above the well-known ports and the TeamTalk defaults).
const LOW: u16 = 20_000;
/// One past the highest port handed out (the default ephemeral range starts at 32768).
const HIGH: u16 = 32_700;

static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago and that this process never handed out.
pub fn free_port() -> anyhow::Result<u16> {
    let mut rng = rand::rng();
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = rng.random_range(LOW..HIGH);
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port found on 127.0.0.1 in {LOW}..{HIGH} after 1000 tries")
}
