//! route_server over real loopback sockets, with fake msg_servers built on `ImClient`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bench;
mod harness;
mod presence;
mod robustness;
mod routing;
