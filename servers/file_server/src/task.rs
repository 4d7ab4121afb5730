//! Transfer tasks and the table that holds them (FLOWS.md 14).
//!
//! The wire has no token: IMFileLoginReq carries a user id, a task id and a role. The task
//! id is a random UUID (v4), handed only to the task's two users, and is the secret; on top
//! of it a login must name the task's user for its role (sender/uploader = `from`,
//! receiver/downloader = `to`), the role must belong to the task's mode, and each role is
//! taken once: a second login for a role is refused (WEAKNESSES 9). A download that ends
//! before the last block frees the role again; a complete one uses it up for good.
//!
//! Each task has its own small mutex for its two connections and relay state, taken once
//! per relayed block by the two connections of that task only and never held across an
//! await: a channel hop per 32 KiB block through an owning task would cost more than it
//! protects. The tasks in progress are held in [`crate::table::TaskTable`].

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use im_common::Conn;
use im_proto::base::{ClientFileRole, TransferFileType};

use crate::disk::OfflineHeader;

/// Pull requests of an online receiver remembered at most (their seqs go back on the
/// answers); a receiver that pipelines more loses the oldest seqs, not the data.
const MAX_PENDING_PULLS: usize = 64;

/// How a task moves its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relayed live between the two clients.
    Online,
    /// Stored here, downloaded later.
    Offline,
}

impl Mode {
    /// From `trans_mode` on the wire.
    pub fn from_wire(v: i32) -> Option<Mode> {
        match TransferFileType::try_from(v).ok()? {
            TransferFileType::FileTypeOnline => Some(Mode::Online),
            TransferFileType::FileTypeOffline => Some(Mode::Offline),
        }
    }

    /// `trans_mode` on the wire.
    pub fn wire(self) -> i32 {
        match self {
            Mode::Online => TransferFileType::FileTypeOnline as i32,
            Mode::Offline => TransferFileType::FileTypeOffline as i32,
        }
    }

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Online => "online",
            Mode::Offline => "offline",
        }
    }
}

/// The role a connection logs in with (`file_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Online sender (must be the task's `from`).
    Sender,
    /// Online receiver (`to`).
    Receiver,
    /// Offline uploader (`from`).
    Uploader,
    /// Offline downloader (`to`).
    Downloader,
}

impl Role {
    /// From `file_role` on the wire.
    pub fn from_wire(v: i32) -> Option<Role> {
        Some(match ClientFileRole::try_from(v).ok()? {
            ClientFileRole::ClientRealtimeSender => Role::Sender,
            ClientFileRole::ClientRealtimeRecver => Role::Receiver,
            ClientFileRole::ClientOfflineUpload => Role::Uploader,
            ClientFileRole::ClientOfflineDownload => Role::Downloader,
        })
    }

    /// The mode this role belongs to.
    pub fn mode(self) -> Mode {
        match self {
            Role::Sender | Role::Receiver => Mode::Online,
            Role::Uploader | Role::Downloader => Mode::Offline,
        }
    }

    /// True for the roles of the task's `from` user.
    pub fn is_from(self) -> bool {
        matches!(self, Role::Sender | Role::Uploader)
    }

    /// Label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
            Role::Uploader => "uploader",
            Role::Downloader => "downloader",
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Online: fewer than two logins so far.
    Waiting,
    /// Online: both sides logged in; blocks are relayed.
    Ready,
    /// Offline: created, the uploader has not logged in.
    AwaitingUpload,
    /// Offline: the uploader is sending blocks.
    Uploading,
    /// Offline: the file is on disk (a task loaded for a download).
    Stored,
    /// Done, failed, cancelled or expired; the task is out of the table.
    Finished,
}

/// Why a login is refused (answered with result 1, then the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The task does not exist (any more).
    Gone,
    /// The role belongs to the other mode.
    WrongRole,
    /// The user is not the task's user for this role.
    WrongUser,
    /// The role is taken (a second login) or used up.
    RoleTaken,
    /// A download before the upload finished.
    NotUploaded,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Gone => "unknown or finished task",
            Refusal::WrongRole => "role does not belong to the task's mode",
            Refusal::WrongUser => "user is not the task's user for this role",
            Refusal::RoleTaken => "role already logged in or used up",
            Refusal::NotUploaded => "offline file not uploaded yet",
        })
    }
}

/// What a successful login starts.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Online, the other side is not there yet.
    Waiting,
    /// Online, both sides are there: the receiver gets PEER_READY.
    Paired {
        /// The receiver's connection.
        receiver: Conn,
    },
    /// Offline upload.
    Upload,
    /// Offline download.
    Download,
}

/// The connections of a task that ended, to be closed by the caller.
#[derive(Debug)]
pub struct Ended {
    /// Connections still attached.
    pub conns: Vec<Conn>,
    /// A transfer was in progress (counted in the active gauge).
    pub was_active: bool,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    from_conn: Option<Conn>,
    to_conn: Option<Conn>,
    from_used: bool,
    to_used: bool,
    last_activity: Instant,
    /// Online: (offset, seq) of the receiver's pull requests not answered yet.
    pulls: VecDeque<(u32, u16)>,
    /// Out of the table: logins are refused.
    retired: bool,
    /// Counted in the active-transfer gauge.
    active: bool,
}

/// One transfer task.
#[derive(Debug)]
pub struct Task {
    /// Task id (UUID text).
    pub id: String,
    /// Sender / uploader.
    pub from: u32,
    /// Receiver / downloader.
    pub to: u32,
    /// Online or offline.
    pub mode: Mode,
    /// File name as the sender gave it.
    pub file_name: String,
    /// File size in bytes.
    pub size: u32,
    /// Unix seconds of creation (the offline header's create_time).
    pub created: u64,
    inner: Mutex<Inner>,
}

impl Task {
    /// A new task created for a msg_server.
    pub fn new(id: String, from: u32, to: u32, mode: Mode, file_name: String, size: u32) -> Task {
        let phase = match mode {
            Mode::Online => Phase::Waiting,
            Mode::Offline => Phase::AwaitingUpload,
        };
        Task {
            id,
            from,
            to,
            mode,
            file_name,
            size,
            created: crate::disk::now_unix(),
            inner: Mutex::new(Inner {
                phase,
                from_conn: None,
                to_conn: None,
                from_used: false,
                to_used: false,
                last_activity: Instant::now(),
                pulls: VecDeque::new(),
                retired: false,
                active: false,
            }),
        }
    }

    /// An offline task loaded from disk for a download; `downloaded` uses up the
    /// downloader's role.
    pub fn stored(h: OfflineHeader, downloaded: bool) -> Task {
        let t = Task::new(
            h.task_id,
            h.from,
            h.to,
            Mode::Offline,
            h.file_name,
            h.file_size,
        );
        {
            let mut g = t.lock();
            g.phase = Phase::Stored;
            g.from_used = true;
            g.to_used = downloaded;
        }
        Task {
            created: h.create_time,
            ..t
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in Inner can be left half-updated by a panic in a way worse than
        // refusing every later login; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Records activity (resets the expiry clock).
    pub fn touch(&self) {
        self.lock().last_activity = Instant::now();
    }

    /// A login of `user` in `role` on `conn`.
    pub fn login(&self, role: Role, user: u32, conn: &Conn) -> Result<LoginOutcome, Refusal> {
        let mut g = self.lock();
        if g.retired || g.phase == Phase::Finished {
            return Err(Refusal::Gone);
        }
        if role.mode() != self.mode {
            return Err(Refusal::WrongRole);
        }
        let owner = if role.is_from() { self.from } else { self.to };
        if user != owner {
            return Err(Refusal::WrongUser);
        }
        let outcome = match role {
            Role::Sender | Role::Receiver => {
                let used = if role.is_from() {
                    &mut g.from_used
                } else {
                    &mut g.to_used
                };
                if *used {
                    return Err(Refusal::RoleTaken);
                }
                *used = true;
                if role.is_from() {
                    g.from_conn = Some(conn.clone());
                } else {
                    g.to_conn = Some(conn.clone());
                }
                match (&g.from_conn, &g.to_conn) {
                    (Some(_), Some(r)) => {
                        let receiver = r.clone();
                        g.phase = Phase::Ready;
                        g.active = true;
                        LoginOutcome::Paired { receiver }
                    }
                    _ => LoginOutcome::Waiting,
                }
            }
            Role::Uploader => {
                if g.from_used || g.phase != Phase::AwaitingUpload {
                    return Err(Refusal::RoleTaken);
                }
                g.from_used = true;
                g.from_conn = Some(conn.clone());
                g.phase = Phase::Uploading;
                g.active = true;
                LoginOutcome::Upload
            }
            Role::Downloader => {
                if g.phase != Phase::Stored {
                    return Err(Refusal::NotUploaded);
                }
                if g.to_used || g.to_conn.is_some() {
                    return Err(Refusal::RoleTaken);
                }
                g.to_conn = Some(conn.clone());
                g.active = true;
                LoginOutcome::Download
            }
        };
        g.last_activity = Instant::now();
        Ok(outcome)
    }

    /// The connection on the other side of `role`, if logged in.
    pub fn peer(&self, role: Role) -> Option<Conn> {
        let g = self.lock();
        if role.is_from() {
            g.to_conn.clone()
        } else {
            g.from_conn.clone()
        }
    }

    /// Online: the receiver asks for a block at `offset` with `seq`; returns the sender's
    /// connection to forward it to (none before both sides are logged in).
    pub fn pull(&self, offset: u32, seq: u16) -> Option<Conn> {
        let mut g = self.lock();
        if g.phase != Phase::Ready {
            return None;
        }
        if g.pulls.len() >= MAX_PENDING_PULLS {
            g.pulls.pop_front();
        }
        g.pulls.push_back((offset, seq));
        g.last_activity = Instant::now();
        g.from_conn.clone()
    }

    /// Online: the sender answers with the block at `offset`; returns the receiver's
    /// connection and the seq of the pull request it answers.
    pub fn data(&self, offset: u32) -> Option<(Conn, u16)> {
        let mut g = self.lock();
        if g.phase != Phase::Ready {
            return None;
        }
        let seq = match g.pulls.iter().position(|(o, _)| *o == offset) {
            Some(i) => g.pulls.remove(i).map_or(0, |(_, s)| s),
            None => g.pulls.pop_front().map_or(0, |(_, s)| s),
        };
        g.last_activity = Instant::now();
        g.to_conn.clone().map(|c| (c, seq))
    }

    /// Ends the task (done, failed, cancelled, expired); `None` when it had ended already.
    pub fn finish(&self) -> Option<Ended> {
        let mut g = self.lock();
        if g.phase == Phase::Finished {
            return None;
        }
        g.phase = Phase::Finished;
        g.pulls.clear();
        let was_active = std::mem::take(&mut g.active);
        let conns = g
            .from_conn
            .take()
            .into_iter()
            .chain(g.to_conn.take())
            .collect();
        Some(Ended { conns, was_active })
    }

    /// A download connection leaves (done or not); returns whether it was counted active.
    /// A complete download (`completed`) uses the role up.
    pub fn leave_download(&self, conn_id: u64, completed: bool) -> bool {
        let mut g = self.lock();
        if completed {
            g.to_used = true;
        }
        if g.to_conn.as_ref().is_some_and(|c| c.id() == conn_id) {
            g.to_conn = None;
            std::mem::take(&mut g.active)
        } else {
            false
        }
    }

    /// True when no connection is attached.
    pub fn is_idle(&self) -> bool {
        let g = self.lock();
        g.from_conn.is_none() && g.to_conn.is_none()
    }

    /// True when the task has been without activity for `timeout`.
    pub fn idle_for(&self, now: Instant, timeout: Duration) -> bool {
        let g = self.lock();
        g.phase != Phase::Finished && now.saturating_duration_since(g.last_activity) >= timeout
    }

    /// Marks the task as out of the table: later logins are refused.
    pub(crate) fn retire(&self) {
        self.lock().retired = true;
    }

    /// Retires the task if no connection is attached; true if it did.
    pub(crate) fn retire_if_idle(&self) -> bool {
        let mut g = self.lock();
        if g.from_conn.is_some() || g.to_conn.is_some() {
            return false;
        }
        g.retired = true;
        true
    }

    /// Connections attached now.
    pub fn conns(&self) -> Vec<Conn> {
        let g = self.lock();
        g.from_conn
            .iter()
            .chain(g.to_conn.iter())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        assert_eq!(Role::from_wire(1), Some(Role::Sender));
        assert_eq!(Role::from_wire(4), Some(Role::Downloader));
        assert_eq!(Role::from_wire(0), None);
        assert_eq!(Role::from_wire(5), None);
        assert_eq!(Mode::from_wire(2), Some(Mode::Offline));
        assert_eq!(Mode::from_wire(3), None);
        assert_eq!(Mode::Online.wire(), 1);
        assert!(Role::Uploader.is_from() && !Role::Receiver.is_from());
        assert_eq!(Role::Downloader.mode(), Mode::Offline);
    }
}
