//! An async TeamTalk client: what tests, `imctl sim`/`bench` and `imctl top` speak.
//!
//! [`ImClient::connect`] opens a TCP link and returns a cloneable handle plus an [`Events`]
//! stream. Requests get the next seq_num and wait for the reply that carries the same seq_num
//! *and* the expected command (an original route_server relays other users' IMMsgData with the
//! sender's seq, so the seq alone is not enough). Everything else arrives on [`Events`].
//! A heartbeat is sent periodically; inbound heartbeats are never shown as events.
//!
//! [`fetch_msg_server`] is the HTTP step before it: `GET /msg_server` on login_server.
//!
//! [`ImClient::connect_tls`] does the same over TLS ([`ClientTls`]), for our servers' optional
//! TLS ports; stock clients and [`ImClient::connect`] stay on plain TCP.

mod conn;
mod http;
mod tls;

pub use conn::{ClientConfig, Events, ImClient, LoginParams};
pub use http::{LoginHttp, MsgServerAssignment, ensure_crypto_provider, fetch_msg_server};
pub use tls::{ClientTls, TLS_SCHEME, TlsSetupError, certificates, root_store, split_tls_addr};

use std::time::Duration;

use thiserror::Error;

use crate::codec::CodecError;
use crate::pdu::BodyError;

/// Errors of the client.
#[derive(Debug, Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Address dialled.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// TCP connect did not finish in time.
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    /// No reply with the request's seq_num in time.
    #[error("no reply to {command} within {timeout:?}")]
    Timeout {
        /// Request command name.
        command: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The connection is closed (by the peer, an error or [`ImClient::close`]).
    #[error("connection closed")]
    Closed,
    /// The outbound queue is over its byte limit.
    #[error("outbound queue full ({queued} bytes queued, limit {limit})")]
    QueueFull {
        /// Bytes queued.
        queued: usize,
        /// Limit.
        limit: usize,
    },
    /// Every seq_num is in use by a pending request.
    #[error("65535 requests are already waiting for a reply")]
    SeqExhausted,
    /// The reply's body could not be decoded.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A PDU could not be framed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// msg_server refused the login.
    #[error("login refused: result {code} ({message})")]
    LoginRefused {
        /// `IMLoginRes.result_code`.
        code: i32,
        /// `IMLoginRes.result_string`.
        message: String,
    },
    /// The HTTP step failed.
    #[error("GET {url}: {message}")]
    Http {
        /// URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// login_server answered but has no msg_server to offer.
    #[error("login_server has no msg_server available: code {code} ({message})")]
    NoMsgServer {
        /// JSON `code` (1 none registered, 2 all full).
        code: i64,
        /// JSON `msg`.
        message: String,
    },
}
