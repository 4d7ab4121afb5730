//! In-memory state: who is logged in here ([`Sessions`]), group member lists
//! ([`groups::GroupCache`]), recently routed messages ([`dedup::RecentMsgs`]) and failed
//! logins per address ([`throttle::LoginThrottle`]). Nothing here outlives the process;
//! everything can be rebuilt from the connections and the database.

pub mod dedup;
pub mod groups;
pub mod throttle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use im_common::Conn;
use im_proto::base::ServerUserStat;
use im_proto::command::{is_mobile_client, same_client_class};

/// One authenticated client connection.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    /// The connection.
    pub conn: Conn,
    /// Client type from the login request (decides PC/mobile rules).
    pub client_type: u32,
    /// Presence the client asked for at login (1..3), reported in IMOnlineUserInfo.
    pub online_status: u32,
    /// Messages delivered to it and not yet acknowledged by the client (admin listing).
    pub pending_acks: Arc<AtomicU32>,
}

impl ConnEntry {
    /// True for iOS/Android connections.
    pub fn is_mobile(&self) -> bool {
        is_mobile_client(self.client_type)
    }
}

/// What route_server told us about a user's PC clients (IMServerPCLoginStatusNotify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcLogin {
    /// Not told yet (the original started at 2, which counted as "online", WEAKNESSES 41).
    Unknown,
    /// A PC client of the user is online somewhere.
    Online,
    /// No PC client is online.
    Offline,
}

#[derive(Debug)]
struct UserEntry {
    /// In login order: "the first matching connection" of FLOWS.md 4.1 is the oldest.
    conns: Vec<ConnEntry>,
    pc_login: PcLogin,
    /// Nick name from the login, for push texts.
    nick: Arc<str>,
}

/// Number of shards; a power of two well above the core count.
const SHARDS: usize = 64;

/// The users logged in on this msg_server, each with all its connections.
///
/// A sharded map rather than one owning task: every delivery (each message, to each
/// receiver, from every connection task and every route link) reads it, and sending a frame
/// is a short push onto a connection's queue, so many tasks working on different shards at
/// once beat a single task serialising them. Presence changes that must stay in order with
/// what route_server and login_server are told go through [`crate::server::Server`]'s
/// presence gate.
#[derive(Debug)]
pub struct Sessions {
    shards: Box<[Mutex<HashMap<u32, UserEntry>>]>,
    count: AtomicUsize,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    /// An empty table.
    pub fn new() -> Self {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            count: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: u32) -> MutexGuard<'_, HashMap<u32, UserEntry>> {
        let m = &self.shards[(user as usize) % SHARDS];
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters more than losing every session; keep serving.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Authenticated connections.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds a logged-in connection.
    pub fn attach(&self, user: u32, entry: ConnEntry, nick: &str) {
        let mut s = self.shard(user);
        let u = s.entry(user).or_insert_with(|| UserEntry {
            // Most users have one connection; a first push would reserve four.
            conns: Vec::with_capacity(1),
            pc_login: PcLogin::Unknown,
            nick: Arc::from(nick),
        });
        u.nick = Arc::from(nick);
        u.conns.push(entry);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a connection; `None` if it was not (or no longer) attached. The user record
    /// goes with its last connection.
    pub fn detach(&self, user: u32, conn_id: u64) -> Option<ConnEntry> {
        let mut s = self.shard(user);
        let u = s.get_mut(&user)?;
        let i = u.conns.iter().position(|c| c.conn.id() == conn_id)?;
        let e = u.conns.remove(i);
        if u.conns.is_empty() {
            s.remove(&user);
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(e)
    }

    /// Queues `frame` on the connections of `user` accepted by `pick`; returns how many.
    /// `message` counts a pending delivery ack on each.
    pub fn send_where(
        &self,
        user: u32,
        frame: &Bytes,
        message: bool,
        mut pick: impl FnMut(&ConnEntry) -> bool,
    ) -> usize {
        // Sent after the shard lock is released: a send may write to the socket right away
        // (client links write inline when the socket has room).
        let targets: Vec<(Conn, Arc<AtomicU32>)> = {
            let s = self.shard(user);
            let Some(u) = s.get(&user) else { return 0 };
            u.conns
                .iter()
                .filter(|c| pick(c))
                .map(|c| (c.conn.clone(), c.pending_acks.clone()))
                .collect()
        };
        let mut n = 0;
        for (conn, pending_acks) in targets {
            if conn.send_frame(frame.clone()).is_ok() {
                n += 1;
                if message {
                    pending_acks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        n
    }

    /// Queues `frame` on every connection of `user` except `except` (a connection id).
    pub fn send_to_user(&self, user: u32, frame: &Bytes, except: Option<u64>) -> usize {
        self.send_where(user, frame, false, |c| Some(c.conn.id()) != except)
    }

    /// Queues `frame` on every authenticated connection accepted by `pick`, yielding to the
    /// runtime between shards so that a broadcast to every user does not hold a worker.
    pub async fn broadcast(&self, frame: &Bytes, pick: impl Fn(&ConnEntry) -> bool) -> usize {
        let mut n = 0;
        for i in 0..SHARDS {
            let targets: Vec<Conn> = {
                let s = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
                s.values()
                    .flat_map(|u| u.conns.iter())
                    .filter(|c| pick(c))
                    .map(|c| c.conn.clone())
                    .collect()
            };
            for conn in targets {
                if conn.send_frame(frame.clone()).is_ok() {
                    n += 1;
                }
            }
            tokio::task::yield_now().await;
        }
        n
    }

    /// The oldest connection of `user` in the same class (PC/mobile) as `client_type`, other
    /// than `except`.
    pub fn first_same_class(&self, user: u32, client_type: u32, except: u64) -> Option<ConnEntry> {
        let s = self.shard(user);
        s.get(&user)?
            .conns
            .iter()
            .find(|c| c.conn.id() != except && same_client_class(c.client_type, client_type))
            .cloned()
    }

    /// Every connection of `user` whose type is `client_type` (0 = all).
    pub fn matching(&self, user: u32, client_type: u32) -> Vec<ConnEntry> {
        let s = self.shard(user);
        s.get(&user).map_or_else(Vec::new, |u| {
            u.conns
                .iter()
                .filter(|c| client_type == 0 || c.client_type == client_type)
                .cloned()
                .collect()
        })
    }

    /// True when `user` has a mobile connection here.
    pub fn has_mobile(&self, user: u32) -> bool {
        let s = self.shard(user);
        s.get(&user)
            .is_some_and(|u| u.conns.iter().any(ConnEntry::is_mobile))
    }

    /// True when `user` has any connection here.
    pub fn is_local(&self, user: u32) -> bool {
        self.shard(user).contains_key(&user)
    }

    /// Stores route_server's PC-login flag; `false` if the user is not here.
    pub fn set_pc_login(&self, user: u32, flag: PcLogin) -> bool {
        let mut s = self.shard(user);
        match s.get_mut(&user) {
            Some(u) => {
                u.pc_login = flag;
                true
            }
            None => false,
        }
    }

    /// route_server's PC-login flag of a local user.
    pub fn pc_login(&self, user: u32) -> Option<PcLogin> {
        self.shard(user).get(&user).map(|u| u.pc_login)
    }

    /// Nick name of a local user.
    pub fn nick(&self, user: u32) -> Option<Arc<str>> {
        self.shard(user).get(&user).map(|u| u.nick.clone())
    }

    /// Every connection for IMOnlineUserInfo (FLOWS.md 1.4).
    pub fn snapshot(&self) -> Vec<ServerUserStat> {
        let mut v = Vec::with_capacity(self.count());
        for m in self.shards.iter() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            for (user, u) in s.iter() {
                v.extend(u.conns.iter().map(|c| ServerUserStat {
                    user_id: *user,
                    status: c.online_status as i32,
                    client_type: c.client_type as i32,
                }));
            }
        }
        v
    }

    /// Every authenticated connection (admin and drain).
    pub fn all(&self) -> Vec<ConnEntry> {
        let mut v = Vec::with_capacity(self.count());
        for m in self.shards.iter() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            v.extend(s.values().flat_map(|u| u.conns.iter().cloned()));
        }
        v
    }

    /// Number of users (not connections).
    pub fn users(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pc_login_starts_unknown() {
        // Without a Conn we can only check the flag bookkeeping on an absent user.
        let s = Sessions::new();
        assert_eq!(s.pc_login(5), None);
        assert!(!s.set_pc_login(5, PcLogin::Online));
        assert_eq!(s.count(), 0);
        assert!(s.snapshot().is_empty());
    }
}
