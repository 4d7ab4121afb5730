//! push_server over real sockets: fake APNs (HTTP/2), FCM and webhook servers on 127.0.0.1,
//! a scripted db_proxy for dead-token removal, and the real msg_server, db_proxy_server and
//! route_server for the end-to-end push.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delivery;
mod e2e;
mod failures;
mod fakes;
mod harness;
