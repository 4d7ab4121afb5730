//! The registered msg_servers and the choice of one for each login.
//!
//! A record exists per msg_server link (keyed by the link's connection id): it is created by
//! IMMsgServInfo, replaced by a re-sent IMMsgServInfo on the same link (the original inserted
//! a second record and counted the users twice), adjusted by IMUserCntUpdate and removed when
//! the link closes (FLOWS.md 3).
//!
//! Load is `cur_conn_cnt` plus the logins handed out to that server that it has not reported
//! yet (WEAKNESSES 45: the original balanced on reported counts only, so a burst arriving
//! before the first report all went to one server). Each hand-out adds a pending entry; an
//! IMUserCntUpdate{1} from that server consumes the oldest; entries older than the TTL expire
//! (the client gave up or went elsewhere).
//!
//! The table is a `Mutex` rather than an owning task: it holds one small record per msg_server,
//! no operation awaits while holding it, and the HTTP login path (the hot one) then costs one
//! uncontended lock instead of a channel round trip per request.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use im_proto::server::ImMsgServInfo;

/// `IMUserCntUpdate.user_action`: one more authenticated connection.
pub const USER_CNT_INC: u32 = 1;
/// `IMUserCntUpdate.user_action`: one less.
pub const USER_CNT_DEC: u32 = 2;

/// Where a client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `IpAddr1` of the chosen msg_server (`priorIP`).
    pub ip1: String,
    /// `IpAddr2` (`backupIP`).
    pub ip2: String,
    /// Its client port.
    pub port: u32,
    /// Its TLS client port, if it announced one (our extension, IMAdminMsgServTlsInfo).
    pub tls_port: Option<u32>,
}

/// Why no msg_server was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// None is registered (JSON code 1, REFUSE_REASON_NO_MSG_SERVER).
    NoMsgServer,
    /// All are full or draining (JSON code 2, REFUSE_REASON_MSG_SERVER_FULL).
    Full,
}

/// A registered msg_server as admin listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgServerStatus {
    /// Connection id of its link.
    pub link: u64,
    /// `gethostname()` of the msg_server.
    pub host_name: String,
    /// Address handed out as `priorIP`.
    pub ip1: String,
    /// Address handed out as `backupIP`.
    pub ip2: String,
    /// Client port.
    pub port: u32,
    /// Authenticated connections it reported.
    pub cur_conn_cnt: u32,
    /// Its capacity.
    pub max_conn_cnt: u32,
    /// Logins handed out to it and not reported yet (not expired).
    pub pending_logins: u32,
    /// Excluded from assignment by an operator.
    pub draining: bool,
    /// Time since it registered on this link.
    pub registered: Duration,
    /// Logins handed out to it since it registered.
    pub assignments_total: u64,
}

impl MsgServerStatus {
    /// `ip1:port`, the name drain requests may use.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip1, self.port)
    }
}

/// Outcome of an IMMsgServInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new record.
    New,
    /// The link had registered before; its record was replaced.
    Replaced,
}

/// Outcome of a drain or undrain request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// These registered msg_servers (`host_name (ip1:port)`) changed or already had that state.
    Applied(Vec<String>),
    /// Nothing matched; the names that would.
    NotFound {
        /// `host_name (ip1:port)` of every registered msg_server.
        known: Vec<String>,
    },
}

#[derive(Debug)]
struct MsgServer {
    info: ImMsgServInfo,
    registered_at: Instant,
    /// Hand-out times, oldest first.
    pending: VecDeque<Instant>,
    draining: bool,
    assignments_total: u64,
    /// TLS client port announced after registration.
    tls_port: Option<u32>,
}

impl MsgServer {
    fn load(&self) -> u64 {
        u64::from(self.info.cur_conn_cnt) + self.pending.len() as u64
    }

    fn has_room(&self) -> bool {
        !self.draining && self.load() < u64::from(self.info.max_conn_cnt)
    }

    fn matches(&self, target: &str) -> bool {
        let i = &self.info;
        i.host_name == target
            || format!("{}:{}", i.ip1, i.port) == target
            || format!("{}:{}", i.ip2, i.port) == target
    }

    fn label(&self) -> String {
        format!(
            "{} ({}:{})",
            self.info.host_name, self.info.ip1, self.info.port
        )
    }

    fn expire(&mut self, now: Instant, ttl: Duration) -> u64 {
        let mut n = 0;
        while self
            .pending
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= ttl)
        {
            self.pending.pop_front();
            n += 1;
        }
        n
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By link id: the order in which links connected, which breaks ties.
    servers: BTreeMap<u64, MsgServer>,
    /// Drain targets in force. Kept apart from the records so that a drained msg_server whose
    /// link drops and comes back (restart, network blip) stays drained until undrained.
    drained: BTreeSet<String>,
    assignments_total: u64,
    pending_expired_total: u64,
}

/// The table of registered msg_servers.
#[derive(Debug)]
pub struct MsgServerTable {
    inner: Mutex<Inner>,
    pending_ttl: Duration,
}

impl MsgServerTable {
    /// An empty table; hand-outs count toward load for `pending_ttl` (zero: not at all).
    pub fn new(pending_ttl: Duration) -> Self {
        MsgServerTable {
            inner: Mutex::new(Inner::default()),
            pending_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-updated in a way that
        // matters more than losing the whole table would, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-registers) the msg_server on `link`.
    pub fn register(&self, link: u64, info: ImMsgServInfo, now: Instant) -> Registration {
        let mut t = self.lock();
        let Inner {
            servers, drained, ..
        } = &mut *t;
        if let Some(s) = servers.get_mut(&link) {
            // The counts in the new report are authoritative; logins still on their way to
            // it stay pending, and an operator's drain stays.
            s.info = info;
            s.draining = s.draining || drained.iter().any(|d| s.matches(d));
            return Registration::Replaced;
        }
        let mut s = MsgServer {
            info,
            registered_at: now,
            pending: VecDeque::new(),
            draining: false,
            assignments_total: 0,
            tls_port: None,
        };
        s.draining = drained.iter().any(|d| s.matches(d));
        servers.insert(link, s);
        Registration::New
    }

    /// Applies an IMUserCntUpdate from `link`; false when that link never registered.
    pub fn user_cnt_update(&self, link: u64, action: u32, now: Instant) -> bool {
        let ttl = self.pending_ttl;
        let mut t = self.lock();
        let Some(s) = t.servers.get_mut(&link) else {
            return false;
        };
        let expired = s.expire(now, ttl);
        match action {
            USER_CNT_INC => {
                s.info.cur_conn_cnt = s.info.cur_conn_cnt.saturating_add(1);
                s.pending.pop_front();
            }
            USER_CNT_DEC => s.info.cur_conn_cnt = s.info.cur_conn_cnt.saturating_sub(1),
            _ => {}
        }
        t.pending_expired_total += expired;
        true
    }

    /// Forgets the msg_server on `link` (link closed); returns its last status.
    pub fn remove(&self, link: u64, now: Instant) -> Option<MsgServerStatus> {
        let mut t = self.lock();
        t.servers.remove(&link).map(|s| status(link, &s, now))
    }

    /// Records the TLS client port announced on `link`; false when that link never
    /// registered (the announcement follows IMMsgServInfo) or the port is 0.
    pub fn set_tls_port(&self, link: u64, port: u32) -> bool {
        let mut t = self.lock();
        match t.servers.get_mut(&link) {
            Some(s) if port != 0 && port <= u32::from(u16::MAX) => {
                s.tls_port = Some(port);
                true
            }
            _ => false,
        }
    }

    /// Picks the least-loaded msg_server that is not draining and not full, and counts the
    /// hand-out as pending on it.
    pub fn assign(&self, now: Instant) -> Result<Assignment, Refusal> {
        self.assign_for(now, false)
    }

    /// [`MsgServerTable::assign`]; with `want_tls`, among the msg_servers with a TLS client
    /// port when any is available (otherwise among all, and the answer has no TLS port).
    pub fn assign_for(&self, now: Instant, want_tls: bool) -> Result<Assignment, Refusal> {
        let ttl = self.pending_ttl;
        let mut t = self.lock();
        if t.servers.is_empty() {
            return Err(Refusal::NoMsgServer);
        }
        let mut expired = 0;
        let mut best: Option<(u64, u64)> = None;
        let mut best_tls: Option<(u64, u64)> = None;
        for (link, s) in t.servers.iter_mut() {
            expired += s.expire(now, ttl);
            // Strictly smaller: the first in link order wins ties.
            if s.has_room() && best.is_none_or(|(_, load)| s.load() < load) {
                best = Some((*link, s.load()));
            }
            if s.has_room()
                && s.tls_port.is_some()
                && best_tls.is_none_or(|(_, load)| s.load() < load)
            {
                best_tls = Some((*link, s.load()));
            }
        }
        if want_tls && best_tls.is_some() {
            best = best_tls;
        }
        t.pending_expired_total += expired;
        let Some((link, _)) = best else {
            return Err(Refusal::Full);
        };
        t.assignments_total += 1;
        let s = t.servers.get_mut(&link).ok_or(Refusal::Full)?;
        if !ttl.is_zero() {
            s.pending.push_back(now);
        }
        s.assignments_total += 1;
        Ok(Assignment {
            ip1: s.info.ip1.clone(),
            ip2: s.info.ip2.clone(),
            port: s.info.port,
            tls_port: s.tls_port,
        })
    }

    /// Drains (or undrains) every msg_server whose host name, `ip1:port` or `ip2:port` is
    /// `target`. A drain only applies to a registered server, and stays in force across its
    /// re-registrations; an undrain also lifts a drain whose server is not registered now.
    pub fn drain(&self, target: &str, undrain: bool) -> DrainOutcome {
        let mut t = self.lock();
        let Inner {
            servers, drained, ..
        } = &mut *t;
        let mut hit = Vec::new();
        for s in servers.values_mut().filter(|s| s.matches(target)) {
            s.draining = !undrain;
            hit.push(s.label());
        }
        if undrain {
            let lifted = drained.remove(target);
            // A server drained under another of its names is lifted too.
            let names: Vec<String> = drained
                .iter()
                .filter(|d| servers.values().any(|s| s.matches(target) && s.matches(d)))
                .cloned()
                .collect();
            for n in names {
                drained.remove(&n);
            }
            if lifted && hit.is_empty() {
                hit.push(target.to_owned());
            }
        } else if !hit.is_empty() {
            drained.insert(target.to_owned());
        }
        if hit.is_empty() {
            DrainOutcome::NotFound {
                known: servers.values().map(MsgServer::label).collect(),
            }
        } else {
            DrainOutcome::Applied(hit)
        }
    }

    /// Every registered msg_server, in link order.
    pub fn snapshot(&self, now: Instant) -> Vec<MsgServerStatus> {
        let ttl = self.pending_ttl;
        let mut t = self.lock();
        let mut expired = 0;
        let list = t
            .servers
            .iter_mut()
            .map(|(link, s)| {
                expired += s.expire(now, ttl);
                status(*link, s, now)
            })
            .collect();
        t.pending_expired_total += expired;
        list
    }

    /// Number of registered msg_servers.
    pub fn len(&self) -> usize {
        self.lock().servers.len()
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logins handed out since start.
    pub fn assignments_total(&self) -> u64 {
        self.lock().assignments_total
    }

    /// Pending logins that expired unreported since start.
    pub fn pending_expired_total(&self) -> u64 {
        self.lock().pending_expired_total
    }

    /// Sums over the registered servers: (cur_conn_cnt, max_conn_cnt, pending logins).
    pub fn totals(&self) -> (u64, u64, u64) {
        let t = self.lock();
        t.servers.values().fold((0, 0, 0), |(c, m, p), s| {
            (
                c + u64::from(s.info.cur_conn_cnt),
                m + u64::from(s.info.max_conn_cnt),
                p + s.pending.len() as u64,
            )
        })
    }
}

fn status(link: u64, s: &MsgServer, now: Instant) -> MsgServerStatus {
    MsgServerStatus {
        link,
        host_name: s.info.host_name.clone(),
        ip1: s.info.ip1.clone(),
        ip2: s.info.ip2.clone(),
        port: s.info.port,
        cur_conn_cnt: s.info.cur_conn_cnt,
        max_conn_cnt: s.info.max_conn_cnt,
        pending_logins: u32::try_from(s.pending.len()).unwrap_or(u32::MAX),
        draining: s.draining,
        registered: now.saturating_duration_since(s.registered_at),
        assignments_total: s.assignments_total,
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
