//! The real `imctl` binary against a whole suite in this process (im-cluster on SQLite with
//! the demo seed, ephemeral ports), its `--json` output parsed; the demo as a child process;
//! and the generated artifacts (man pages, `--help` texts) checked against the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod common;
mod demo;
mod generated;
mod ops;
