//! msfs over real sockets: uploads, downloads, limits, ranges, tokens, restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod limits;
mod transfer;
