//! What `imctl sim` and `imctl bench` share: simulated users that speak only TeamTalk's
//! client protocol (HTTP to login_server, then PDUs to a msg_server), so they work against
//! the original C++ servers as well as ours.
//!
//! A run is a [`plan::Plan`]; [`engine::run`] starts one task per user ([`user::SimUser`]),
//! which logs in through [`dial::Dialer`] and follows its steps. Every message carries a
//! [`stamp::Stamp`] inside its encrypted text; receivers match deliveries to sends and
//! [`verify::verify`] counts loss, duplicates and reordering at the end. Latencies go into
//! HDR histograms ([`stats`]); [`report::Report`] prints and writes the result.

pub mod dial;
pub mod engine;
pub mod machine;
pub mod plan;
pub mod progress;
pub mod report;
pub mod stamp;
pub mod stats;
pub mod user;
pub mod users;
pub mod verify;

/// Exit code: the run went through and every threshold held.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run could not be done (connection refused, bad flags, I/O).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: the run went through but a threshold failed.
pub const EXIT_THRESHOLD: u8 = 2;
/// Exit code: the scenario file is invalid.
pub const EXIT_INVALID: u8 = 3;
