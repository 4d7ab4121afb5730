//! What every part of file_server shares: the task table, the offline store, the counters,
//! the connection registries and the db_proxy link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use im_common::{CancellationToken, Conn, ConnRegistry};
use im_proto::base::IpAddr;

use crate::db::DbLink;
use crate::disk::OfflineStore;
use crate::metrics::FileMetrics;
use crate::table::TaskTable;
use crate::task::{Ended, Task};

/// Shared state of one file_server.
#[derive(Debug)]
pub struct Shared {
    /// Name for admin answers.
    pub name: String,
    /// The client listener's address.
    pub client_addr: SocketAddr,
    /// Addresses handed to msg_servers for their clients (each `advertise` entry with the
    /// client port).
    pub advertise: Vec<IpAddr>,
    /// Tasks in progress.
    pub tasks: TaskTable,
    /// Offline files.
    pub store: OfflineStore,
    /// Counters.
    pub metrics: FileMetrics,
    /// Client connections.
    pub clients: ConnRegistry,
    /// msg_server links.
    pub msg_links: ConnRegistry,
    /// db_proxy link (none configured: records of expired files are left alone).
    pub db: Option<DbLink>,
    /// Unfinished tasks expire after this long without activity.
    pub task_timeout: Duration,
    /// Offline files are deleted after this long (`None`: kept).
    pub retention: Option<Duration>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
}

/// Reason shown when a task's connections are closed because the task ended.
pub const TASK_ENDED: &str = "file transfer task ended";

impl Shared {
    /// Ends `task` and removes it from the table: the connections still attached are
    /// closed once what is queued for them is written, the active gauge is updated.
    /// Returns false when the task had ended already.
    pub fn end_task(&self, task: &Arc<Task>, except: Option<&Conn>) -> bool {
        self.tasks.remove(task);
        let Some(Ended { conns, was_active }) = task.finish() else {
            return false;
        };
        self.metrics.transfer_ended(was_active);
        for c in conns {
            if except.is_none_or(|e| e.id() != c.id()) {
                c.close_after_flush(im_common::conn::CloseReason::Server(TASK_ENDED));
            }
        }
        true
    }

    /// Short form of a task id for logs: the id is the task's secret.
    pub fn short_id(id: &str) -> &str {
        let mut n = id.len().min(8);
        while !id.is_char_boundary(n) {
            n -= 1;
        }
        &id[..n]
    }
}
