//! file_server over real sockets: a scripted msg_server link, scripted file clients, a real
//! db_proxy_server on SQLite for the retention sweep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod expiry;
mod harness;
mod offline;
mod online;
mod refusals;
mod tasks;
