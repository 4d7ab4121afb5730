//! The state every link handler and the admin port share, and the two ways a PDU leaves:
//! to the links of some users, or to every link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use im_common::{CancellationToken, ConnRegistry};
use im_proto::Pdu;
use im_proto::base::UserStat;
use im_proto::buddy::ImUserStatNotify;
use im_proto::server::ImServerPcLoginStatusNotify;

use crate::links::LinkRegistry;
use crate::metrics::{Class, RouteMetrics};
use crate::table::{Notices, RouteTable};

/// Shared server state.
#[derive(Debug)]
pub struct RouteState {
    /// Users and where they are.
    pub table: RouteTable,
    /// Open msg_server / http_msg_server links.
    pub links: LinkRegistry,
    /// Counters.
    pub metrics: RouteMetrics,
    /// The listener's connections (for admin connection lists and listener counters).
    pub conns: ConnRegistry,
    /// Offline grace period.
    pub grace: Duration,
    /// Server name for admin answers.
    pub name: String,
    /// The msg_server listen address.
    pub listen: SocketAddr,
    /// Cancelled at shutdown (pending grace expiries stop).
    pub shutdown: CancellationToken,
    started: Instant,
    next_batch: AtomicU64,
}

impl RouteState {
    /// State for a server starting now.
    pub fn new(
        name: String,
        listen: SocketAddr,
        grace: Duration,
        metrics: RouteMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        RouteState {
            table: RouteTable::new(),
            links: LinkRegistry::default(),
            metrics,
            conns: ConnRegistry::new(),
            grace,
            name,
            listen,
            shutdown,
            started: Instant::now(),
            next_batch: AtomicU64::new(1),
        }
    }

    /// True during the first grace period after start. The msg_servers registering then are
    /// reconnecting to a restarted route_server: their users were announced online long ago
    /// (by our previous run or by the other route_servers), so registering them is not news,
    /// just as a re-appearance from the grace set is not. Announcing them would make every
    /// msg_server fan one buddy notify per user out to every PC client.
    pub fn in_warm_up(&self) -> bool {
        self.started.elapsed() < self.grace
    }

    /// A fresh grace batch id.
    pub fn next_batch(&self) -> u64 {
        self.next_batch.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `frame` on the links where any of `users` is online, once per link, never on
    /// `origin`. Returns the number of links it went to.
    pub fn route(&self, class: Class, frame: &Bytes, users: &[u32], origin: u64) -> u64 {
        let mut sent = LinkSet::default();
        let mut failed = 0;
        for &user in users {
            self.table.for_each_location(user, |loc| {
                if loc.link.id != origin && sent.insert(loc.link.id) && !loc.link.send(frame) {
                    failed += 1;
                }
            });
        }
        let n = sent.len() as u64 - failed;
        self.metrics.routed_out(class, n);
        self.metrics.send_failures.add(failed);
        if sent.len() == 0 {
            self.metrics.unroutable.inc();
        }
        n
    }

    /// Queues `frame` on every link except `except`. Returns the number of links.
    pub fn broadcast(&self, class: Class, frame: &Bytes, except: Option<u64>) -> u64 {
        let (sent, failed) = self.links.broadcast(frame, except);
        self.metrics.routed_out(class, sent);
        self.metrics.send_failures.add(failed);
        sent
    }

    /// Sends the presence notifies of FLOWS.md 11 to every link (the originator included:
    /// its own clients must hear too): IMServerPCLoginStatusNotify first, then IMUserStatNotify.
    pub fn emit_notices(&self, user: u32, notices: Notices) {
        if let Some(login_status) = notices.pc_login {
            let msg = ImServerPcLoginStatusNotify {
                user_id: user,
                login_status,
            };
            self.broadcast(Class::Status, &Pdu::from_msg(&msg, 0).to_frame(), None);
        }
        if let Some(status) = notices.buddy {
            let msg = ImUserStatNotify {
                user_stat: UserStat {
                    user_id: user,
                    status: status as i32,
                },
            };
            self.broadcast(Class::Status, &Pdu::from_msg(&msg, 0).to_frame(), None);
        }
    }
}

/// Link ids already served by one routed PDU. Almost always 1-3 entries, so they live inline
/// and a routed message allocates nothing; more spill into a Vec.
#[derive(Debug, Default)]
struct LinkSet {
    inline: [u64; 8],
    len: usize,
    spill: Vec<u64>,
}

impl LinkSet {
    /// Adds `id`; false if it was there.
    fn insert(&mut self, id: u64) -> bool {
        let inline = &self.inline[..self.len.min(self.inline.len())];
        if inline.contains(&id) || self.spill.contains(&id) {
            return false;
        }
        if self.len < self.inline.len() {
            self.inline[self.len] = id;
        } else {
            self.spill.push(id);
        }
        self.len += 1;
        true
    }

    fn len(&self) -> usize {
        self.len
    }
}
