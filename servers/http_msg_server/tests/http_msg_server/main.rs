//! http_msg_server over real sockets, against the real db_proxy_server (SQLite), route_server
//! and msg_server, with stock-client logins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cluster;
mod harness;
