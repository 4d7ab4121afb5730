//! file_server's counters (Prometheus `/metrics` and the admin stats snapshot).

use im_common::metrics::{Counter, Gauge, Registry};

use crate::task::Mode;

/// Every counter file_server keeps.
#[derive(Debug, Clone)]
pub struct FileMetrics {
    /// The registry they live in.
    pub registry: Registry,
    tasks_online: Counter,
    tasks_offline: Counter,
    /// Task creations refused (bad request, table full); answered with result 1.
    pub task_create_failures: Counter,
    /// Client logins accepted.
    pub logins: Counter,
    /// Client logins refused (unknown task, wrong user or role, second login).
    pub login_refusals: Counter,
    /// Online transfers ended by DONE.
    pub online_done: Counter,
    /// Offline uploads stored.
    pub uploads_done: Counter,
    /// Offline downloads served to the last block.
    pub downloads_done: Counter,
    /// Transfers that failed: cancelled, refused, a side dropped, a bad block, a disk error.
    pub transfers_failed: Counter,
    /// Tasks that expired without activity.
    pub tasks_expired: Counter,
    /// File bytes received from clients (online blocks and uploads).
    pub bytes_in: Counter,
    /// File bytes sent to clients (online blocks and downloads).
    pub bytes_out: Counter,
    /// Offline files deleted after their retention.
    pub offline_files_deleted: Counter,
    /// Bodies that did not decode (dropped, connection kept).
    pub decode_errors: Counter,
    /// Commands file_server does not handle (ignored).
    pub unknown_commands: Counter,
    /// Transfers in progress (online pairs, uploads, downloads).
    pub transfers_active: Gauge,
    /// Offline files on disk (counted by the sweep, kept current by uploads and deletions).
    pub offline_files: Gauge,
}

impl FileMetrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: Registry) -> Self {
        let c = |name: &str, help: &str| registry.counter(name, help);
        let created = "tasks_created_total";
        let created_help = "Tasks created for msg_servers, by mode.";
        FileMetrics {
            tasks_online: registry.counter_with(created, created_help, &[("mode", "online")]),
            tasks_offline: registry.counter_with(created, created_help, &[("mode", "offline")]),
            task_create_failures: c(
                "task_create_failures_total",
                "Task creations answered with result 1.",
            ),
            logins: c("logins_total", "Client logins accepted."),
            login_refusals: c(
                "login_refusals_total",
                "Client logins refused (unknown task, wrong user or role, second login).",
            ),
            online_done: registry.counter_with(
                "transfers_completed_total",
                "Transfers completed, by kind.",
                &[("kind", "online")],
            ),
            uploads_done: registry.counter_with(
                "transfers_completed_total",
                "Transfers completed, by kind.",
                &[("kind", "upload")],
            ),
            downloads_done: registry.counter_with(
                "transfers_completed_total",
                "Transfers completed, by kind.",
                &[("kind", "download")],
            ),
            transfers_failed: c(
                "transfers_failed_total",
                "Transfers cancelled, refused, dropped or failed.",
            ),
            tasks_expired: c("tasks_expired_total", "Tasks expired without activity."),
            bytes_in: c("received_bytes_total", "File bytes received from clients."),
            bytes_out: c("sent_bytes_total", "File bytes sent to clients."),
            offline_files_deleted: c(
                "offline_files_deleted_total",
                "Offline files deleted after their retention.",
            ),
            decode_errors: c("decode_errors_total", "Bodies that did not decode."),
            unknown_commands: c("unknown_commands_total", "Commands not handled."),
            transfers_active: registry.gauge(
                "transfers_active",
                "Transfers in progress (online pairs, uploads, downloads).",
            ),
            offline_files: registry.gauge("offline_files", "Offline files on disk."),
            registry,
        }
    }

    /// A task of `mode` was created.
    pub fn task_created(&self, mode: Mode) {
        match mode {
            Mode::Online => self.tasks_online.inc(),
            Mode::Offline => self.tasks_offline.inc(),
        }
    }

    /// Tasks created, both modes.
    pub fn tasks_created_total(&self) -> u64 {
        self.tasks_online.get() + self.tasks_offline.get()
    }

    /// Transfers completed, all kinds.
    pub fn transfers_completed_total(&self) -> u64 {
        self.online_done.get() + self.uploads_done.get() + self.downloads_done.get()
    }

    /// One transfer stopped being active.
    pub fn transfer_ended(&self, was_active: bool) {
        if was_active {
            self.transfers_active.add(-1);
        }
    }
}
