//! login_server over real loopback sockets: the HTTP answer, balancing, the msg_server port,
//! the legacy TCP port, the admin and metrics ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod balance;
mod harness;
mod http;
mod ports;
