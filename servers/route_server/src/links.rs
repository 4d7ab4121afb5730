//! The msg_server (and http_msg_server) links: who is connected, for broadcasts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use im_common::Conn;

/// One accepted msg_server or http_msg_server connection.
#[derive(Debug)]
pub struct Link {
    /// Connection id (unique in the process).
    pub id: u64,
    /// The connection, to send on.
    pub conn: Conn,
    /// Display name: the peer's `ip:port` (IMOnlineUserInfo carries no server name).
    pub name: String,
    /// IMRoleSet: this route_server is the peer's master. Stored for admin listings only;
    /// routing does not depend on it (as in the original).
    master: AtomicBool,
}

impl Link {
    /// A link over `conn`.
    pub fn new(conn: &Conn) -> Self {
        Link {
            id: conn.id(),
            conn: conn.clone(),
            name: conn.peer().to_string(),
            master: AtomicBool::new(false),
        }
    }

    /// Records the peer's IMRoleSet.
    pub fn set_master(&self, master: bool) {
        self.master.store(master, Ordering::Relaxed);
    }

    /// Whether the peer made us its master.
    pub fn is_master(&self) -> bool {
        self.master.load(Ordering::Relaxed)
    }

    /// Queues a frame; returns false when it could not be queued (link closing or too slow).
    pub fn send(&self, frame: &Bytes) -> bool {
        match self.conn.send_frame(frame.clone()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(conn_id = self.id, peer = %self.name, error = %e,
                    "could not queue a routed PDU");
                false
            }
        }
    }
}

/// Every open link. Written only when a link opens or closes; read by every broadcast.
#[derive(Debug, Default)]
pub struct LinkRegistry {
    links: RwLock<HashMap<u64, Arc<Link>>>,
}

impl LinkRegistry {
    /// Adds a link.
    pub fn insert(&self, link: Arc<Link>) {
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(link.id, link);
    }

    /// Removes a link.
    pub fn remove(&self, id: u64) {
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Number of open links.
    pub fn len(&self) -> usize {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no link is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the open links.
    pub fn all(&self) -> Vec<Arc<Link>> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Queues `frame` on every link except `except`; returns (queued, failed).
    pub fn broadcast(&self, frame: &Bytes, except: Option<u64>) -> (u64, u64) {
        let links = self.links.read().unwrap_or_else(PoisonError::into_inner);
        let (mut sent, mut failed) = (0, 0);
        for link in links.values() {
            if Some(link.id) == except {
                continue;
            }
            if link.send(frame) {
                sent += 1;
            } else {
                failed += 1;
            }
        }
        (sent, failed)
    }
}
