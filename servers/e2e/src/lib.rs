//! Support code for the process-level fault tests in `tests/`: the real server binaries as
//! child processes on loopback ([`suite`]), a private MariaDB and Redis ([`services`]), fake
//! clients that tag, ack-track and verify every message ([`load`], [`user`], [`verify`]),
//! and the summary of each fault ([`report`]). docs/faults.md explains what each fault test
//! shows.

pub mod admin;
pub mod bins;
pub mod group;
pub mod load;
pub mod ports;
pub mod process;
pub mod report;
pub mod services;
pub mod session;
pub mod stamp;
pub mod suite;
pub mod user;
pub mod verify;

pub use load::{Load, LoadSpec, Outcome, Placement};
pub use report::FaultReport;
pub use suite::{ServerId, StorageKind, Suite, SuiteOptions};
