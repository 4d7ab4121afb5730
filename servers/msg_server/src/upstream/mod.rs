//! Links to the other servers: db_proxy ([`db`]), route_server ([`route`]), login_server
//! ([`login`]), push_server ([`push`]) and file_server ([`file`]). Each is an
//! [`im_common::Upstream`] that reconnects by itself; these modules add what msg_server does
//! on top (registration, choice of link, the route resend window).

pub mod db;
pub mod file;
pub mod login;
pub mod push;
pub mod route;

use bytes::Bytes;
use futures_util::FutureExt;
use im_proto::client::ImClient;

/// Queues a frame on a link without waiting: `ImClient::send_frame` only pushes onto the
/// link's outbound queue and never suspends, so polling it once completes it. This lets
/// sends happen under the locks that keep them in order.
pub fn push_now(client: &ImClient, frame: Bytes) -> bool {
    matches!(client.send_frame(frame).now_or_never(), Some(Ok(())))
}
