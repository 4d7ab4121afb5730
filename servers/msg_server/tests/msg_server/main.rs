//! msg_server over real sockets: a fake db_proxy, real route_servers, scripted push_server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_send;
mod chat;
mod cluster;
mod fake_db;
mod file;
mod harness;
mod limits;
mod login;
mod notify;
mod original;
mod real_db;
