//! The route table: for every online user, the msg_server links it is connected through and
//! how many connections of each client type it has there, plus the connections "held" in the
//! offline grace period after their link dropped.
//!
//! # Why a sharded map and not one owner task
//!
//! Every routed message (up to ~30,000/s) looks up one or two users, from the reader tasks of
//! all msg_server links at once. An owner task would put every lookup of every link behind one
//! task (one core, a channel hop and a reply per message); one `Mutex<HashMap>` would make all
//! readers contend on one lock. Here the users are spread over [`SHARDS`] `std` mutexes by user
//! id: two lookups of different users almost never touch the same lock, and a lock is held
//! only for a hash lookup plus a few queue pushes (never across an `.await`), so the readers
//! of different links route in parallel. Presence changes of one user are applied under that
//! user's shard lock, which also orders the notifies they produce (see [`RouteTable::update`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use im_proto::base::ClientType;

use crate::links::Link;
pub use crate::rules::{CLIENT_TYPES, ClientCounts, Notices};

/// Number of shards: a power of two well above the core counts we run on, so that
/// collisions between concurrent lookups stay rare.
pub const SHARDS: usize = 64;

/// A presence change reported by one link.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// IMUserStatusUpdate online: one more connection.
    Online(ClientType),
    /// IMUserStatusUpdate offline: one connection less.
    Offline(ClientType),
    /// IMOnlineUserInfo: the link now has exactly these connections of the user.
    Replace(ClientCounts),
}

/// Where a user is connected through one link.
#[derive(Debug, Clone)]
pub struct Location {
    /// The link.
    pub link: Arc<Link>,
    /// Its connections there.
    pub counts: ClientCounts,
}

/// Connections of a dropped link waiting out the grace period.
#[derive(Debug, Clone, Copy)]
struct GraceHold {
    batch: u64,
    counts: ClientCounts,
}

#[derive(Debug, Default)]
struct UserEntry {
    live: Vec<Location>,
    grace: Vec<GraceHold>,
}

impl UserEntry {
    /// PC connections, counting those in grace: a user is presumed online until the grace
    /// period says otherwise.
    fn pc(&self) -> u32 {
        let live = self.live.iter().map(|l| l.counts.pc());
        let held = self.grace.iter().map(|h| h.counts.pc());
        live.chain(held).fold(0u32, u32::saturating_add)
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty() && self.grace.is_empty()
    }

    fn grace_counts(&self) -> ClientCounts {
        let mut all = ClientCounts::default();
        for h in &self.grace {
            for (ct, n) in h.counts.iter() {
                for _ in 0..n {
                    all.add(ct);
                }
            }
        }
        all
    }
}

/// What [`RouteTable::update`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The link still holds connections of the user.
    pub holds: bool,
    /// The user was held in grace and got a connection again.
    pub reappeared: bool,
}

/// A user's routes as the admin port shows them.
#[derive(Debug, Clone)]
pub struct RouteView {
    /// User.
    pub user_id: u32,
    /// (link display name, client type, connections) per live location.
    pub locations: Vec<(String, ClientType, u32)>,
    /// Connections held in the grace period.
    pub grace: ClientCounts,
    /// Presence on the wire (PC-only rule).
    pub wire_online: bool,
}

type Shard = HashMap<u32, UserEntry>;

/// The route table (see the module docs for its layout).
#[derive(Debug)]
pub struct RouteTable {
    shards: Box<[Mutex<Shard>]>,
    users: AtomicUsize,
    grace_users: AtomicUsize,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            users: AtomicUsize::new(0),
            grace_users: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: u32) -> MutexGuard<'_, Shard> {
        // Nothing panics while a shard is locked; should it ever, the map is still coherent
        // (every change is a whole-entry update), so a poisoned lock is simply taken over.
        self.shards[user as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Users known (connected or held in grace).
    pub fn len(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }

    /// True when nobody is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Users with connections held in the grace period.
    pub fn grace_len(&self) -> usize {
        self.grace_users.load(Ordering::Relaxed)
    }

    /// Applies a presence change of `user` reported by `link` and calls `emit` with the
    /// notifies it causes (FLOWS.md 11), while still holding the user's shard lock so that
    /// the notifies of one user leave in the order of the changes.
    ///
    /// Added connections are applied before removed ones, so a batch never announces a PC
    /// client gone that it adds back. Additions are silent when `quiet_online`.
    ///
    /// A user held in grace who gets a connection again has "re-appeared": the hold is
    /// dropped (the new report replaces it) and nobody is told, unless the user's presence
    /// on the wire changed meanwhile: a PC client held but not back (only the mobile one
    /// reconnected) is announced offline, a PC client where only mobile ones were held is
    /// announced online.
    pub fn update(
        &self,
        user: u32,
        link: &Arc<Link>,
        change: Change,
        quiet_online: bool,
        emit: impl FnOnce(u32, Notices),
    ) -> Outcome {
        let mut shard = self.shard(user);
        let existed = shard.contains_key(&user);
        let entry = shard.entry(user).or_default();
        let had_grace = !entry.grace.is_empty();
        let idx = entry.live.iter().position(|l| l.link.id == link.id);
        let old = idx.map(|i| entry.live[i].counts).unwrap_or_default();
        let mut notices = Notices::default();
        let target = match change {
            Change::Online(ct) => {
                let mut t = old;
                t.add(ct);
                t
            }
            Change::Offline(ct) if old.get(ct) == 0 => {
                // Not one of this link's connections: one held in grace (its msg_server came
                // back on a new link and the connection closed meanwhile), or one we never
                // heard of. Either way it is gone; the rules decide whether that is news.
                if let Some(h) = entry.grace.iter_mut().find(|h| h.counts.get(ct) > 0) {
                    h.counts.remove(ct);
                }
                entry.grace.retain(|h| !h.counts.is_empty());
                notices.then(Notices::offline(ct, entry.pc()));
                old
            }
            Change::Offline(ct) => {
                let mut t = old;
                t.remove(ct);
                t
            }
            Change::Replace(t) => t,
        };
        let adds = CLIENT_TYPES.iter().any(|ct| target.get(*ct) > old.get(*ct));
        let reappeared = adds && !entry.grace.is_empty();
        let pc_before = entry.pc();
        if reappeared {
            entry.grace.clear();
        }
        let others_pc = entry.pc().saturating_sub(old.pc());
        let mut cur = old;
        for ct in CLIENT_TYPES {
            while cur.get(ct) < target.get(ct) {
                cur.add(ct);
                if !(quiet_online || reappeared) {
                    notices.then(Notices::online(ct, others_pc + cur.pc()));
                }
            }
        }
        for ct in CLIENT_TYPES {
            while cur.get(ct) > target.get(ct) {
                cur.remove(ct);
                if !reappeared {
                    notices.then(Notices::offline(ct, others_pc + cur.pc()));
                }
            }
        }
        if reappeared {
            notices = Notices::presence_change(pc_before, others_pc + cur.pc());
        }
        match (idx, cur.is_empty()) {
            (Some(i), true) => {
                entry.live.swap_remove(i);
            }
            (Some(i), false) => entry.live[i].counts = cur,
            (None, true) => {}
            (None, false) => entry.live.push(Location {
                link: link.clone(),
                counts: cur,
            }),
        }
        let holds = !cur.is_empty();
        let has_grace = !entry.grace.is_empty();
        let empty = entry.is_empty();
        if empty {
            shard.remove(&user);
        }
        self.account(existed, !empty, had_grace, has_grace);
        if !notices.is_empty() {
            emit(user, notices);
        }
        Outcome { holds, reappeared }
    }

    fn account(&self, existed: bool, exists: bool, had_grace: bool, has_grace: bool) {
        match (existed, exists) {
            (false, true) => {
                self.users.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.users.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        match (had_grace, has_grace) {
            (false, true) => {
                self.grace_users.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.grace_users.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// The link `link_id` dropped: moves the user's connections there into a grace hold of
    /// `batch`. Returns false when the link held none.
    pub fn hold_for_grace(&self, user: u32, link_id: u64, batch: u64) -> bool {
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(&user) else {
            return false;
        };
        let Some(i) = entry.live.iter().position(|l| l.link.id == link_id) else {
            return false;
        };
        let had_grace = !entry.grace.is_empty();
        let loc = entry.live.swap_remove(i);
        entry.grace.push(GraceHold {
            batch,
            counts: loc.counts,
        });
        self.account(true, true, had_grace, true);
        true
    }

    /// The grace period of `batch` is over: the user's connections held there are removed,
    /// one by one as if each had sent IMUserStatusUpdate offline, and `emit` gets the
    /// notifies that causes. Returns false when nothing was held any more (the user
    /// re-appeared).
    pub fn expire_grace(&self, user: u32, batch: u64, emit: impl FnOnce(u32, Notices)) -> bool {
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(&user) else {
            return false;
        };
        let Some(i) = entry.grace.iter().position(|h| h.batch == batch) else {
            return false;
        };
        let mut held = entry.grace.swap_remove(i).counts;
        let others_pc = entry.pc();
        let mut notices = Notices::default();
        for ct in CLIENT_TYPES {
            while held.get(ct) > 0 {
                held.remove(ct);
                notices.then(Notices::offline(ct, others_pc + held.pc()));
            }
        }
        let has_grace = !entry.grace.is_empty();
        let empty = entry.is_empty();
        if empty {
            shard.remove(&user);
        }
        self.account(true, !empty, true, has_grace);
        if !notices.is_empty() {
            emit(user, notices);
        }
        true
    }

    /// Presence on the wire (Decisions 8): online only with a PC-class connection (connections
    /// in grace count; a mobile-only user is offline).
    pub fn is_pc_online(&self, user: u32) -> bool {
        self.shard(user).get(&user).is_some_and(|e| e.pc() > 0)
    }

    /// Calls `f` for every live location of `user` (under the shard lock: `f` must be quick).
    pub fn for_each_location(&self, user: u32, mut f: impl FnMut(&Location)) {
        if let Some(entry) = self.shard(user).get(&user) {
            for loc in &entry.live {
                f(loc);
            }
        }
    }

    /// The user's routes, for the admin port.
    pub fn view(&self, user: u32) -> Option<RouteView> {
        let shard = self.shard(user);
        let entry = shard.get(&user)?;
        let mut locations = Vec::with_capacity(entry.live.len());
        for loc in &entry.live {
            for (ct, n) in loc.counts.iter() {
                locations.push((loc.link.name.clone(), ct, n));
            }
        }
        Some(RouteView {
            user_id: user,
            locations,
            grace: entry.grace_counts(),
            wire_online: entry.pc() > 0,
        })
    }

    /// Up to `limit` user ids above `after`, ascending, and whether more follow.
    pub fn ids_after(&self, after: u32, limit: usize) -> (Vec<u32>, bool) {
        let mut ids: Vec<u32> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            ids.extend(shard.keys().copied().filter(|u| *u > after));
        }
        let more = ids.len() > limit;
        if more {
            // Only the page needs sorting: partition around the limit first (O(n)).
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        (ids, more)
    }
}
