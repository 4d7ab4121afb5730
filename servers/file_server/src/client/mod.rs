//! The client connection (FLOWS.md 14.2, 14.3): login to a task, then online relay
//! ([`online`]) or offline upload and download ([`offline`]).
//!
//! Before a successful login only `CID_FILE_LOGIN_REQ` is handled (heartbeats are echoed by
//! the serve loop). A refused login is answered with result 1 and the connection is closed.

mod offline;
mod online;

use std::sync::Arc;
use std::time::Duration;

use im_common::conn::CloseReason;
use im_common::{Conn, Handler};
use im_proto::base::ClientFileState;
use im_proto::file::{
    ImFileLoginReq, ImFileLoginRsp, ImFilePullDataReq, ImFilePullDataRsp, ImFileState,
};
use im_proto::{Command, Pdu, cid};

use crate::disk::valid_task_id;
use crate::state::Shared;
use crate::task::{LoginOutcome, Refusal, Role, Task};

use self::offline::{Download, Upload};

/// Default time a new connection has to log in to a task (`login_timeout_secs` replaces it
/// when the server runs). The original set none; a socket that never logs in only holds a
/// slot.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a logged-in connection does.
enum Work {
    /// Online sender or receiver.
    Online,
    /// Offline uploader.
    Upload(Upload),
    /// Offline downloader.
    Download(Download),
}

/// A logged-in connection's task and role.
struct Session {
    task: Arc<Task>,
    role: Role,
    user: u32,
    work: Work,
}

/// The handler of one client connection.
pub struct ClientHandler {
    shared: Arc<Shared>,
    session: Option<Session>,
}

impl std::fmt::Debug for ClientHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandler")
            .field("logged_in", &self.session.is_some())
            .finish()
    }
}

/// Closes a connection for a protocol error of the client (a block that breaks the rules,
/// a request naming another task or user).
fn close_bad(conn: &Conn, why: &'static str) {
    tracing::info!(conn_id = conn.id(), peer = %conn.peer(), user_id = conn.user_id(), reason = why,
        "closing a file transfer connection");
    conn.close_after_flush(CloseReason::Server(why));
}

impl ClientHandler {
    /// A handler for a just-accepted connection; the login deadline starts now.
    pub fn new(shared: Arc<Shared>, conn: &Conn) -> Self {
        conn.set_deadline(Some(LOGIN_TIMEOUT));
        ClientHandler {
            shared,
            session: None,
        }
    }

    fn decode<M: Command>(&self, conn: &Conn, pdu: &Pdu) -> Option<M> {
        match pdu.decode::<M>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.shared.metrics.decode_errors.inc();
                tracing::info!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_name(),
                    error = %e, "dropping a PDU whose body does not decode");
                None
            }
        }
    }

    /// `CID_FILE_LOGIN_REQ`.
    async fn login(&mut self, conn: &Conn, pdu: Pdu) {
        let Some(req) = self.decode::<ImFileLoginReq>(conn, &pdu) else {
            return;
        };
        if self.session.is_some() {
            tracing::debug!(
                conn_id = conn.id(),
                "second login on one connection ignored"
            );
            return;
        }
        let s = self.shared.clone();
        let role = Role::from_wire(req.file_role);
        let result = match role {
            Some(role) => self.claim(conn, &req, role).await,
            None => Err(Refusal::WrongRole),
        };
        let ok = result.is_ok();
        let _ = conn.reply(
            &pdu,
            &ImFileLoginRsp {
                result_code: u32::from(!ok),
                task_id: req.task_id.clone(),
            },
        );
        let outcome = match result {
            Ok(o) => o,
            Err(why) => {
                s.metrics.login_refusals.inc();
                tracing::info!(conn_id = conn.id(), peer = %conn.peer(), user_id = req.user_id,
                    role = req.file_role, task = Shared::short_id(&req.task_id), reason = %why,
                    "file login refused");
                conn.close_after_flush(CloseReason::Server("file login refused"));
                return;
            }
        };
        s.metrics.logins.inc();
        conn.set_deadline(None);
        conn.set_identity(req.user_id, 0);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        tracing::debug!(
            conn_id = conn.id(),
            user_id = req.user_id,
            role = session.role.as_str(),
            task = Shared::short_id(&session.task.id),
            "file login"
        );
        match outcome {
            LoginOutcome::Waiting | LoginOutcome::Download => {}
            LoginOutcome::Paired { receiver } => {
                let ready = ImFileState {
                    state: ClientFileState::ClientFilePeerReady as i32,
                    task_id: session.task.id.clone(),
                    user_id: session.task.from,
                };
                let _ = receiver.send_msg(&ready, 0);
            }
            LoginOutcome::Upload => {
                if let Work::Upload(up) = &mut session.work {
                    up.begin(&s, &session.task, conn).await;
                }
            }
        }
    }

    /// Validates the login and attaches the connection to its task (and, offline, its
    /// file). On success `self.session` is set.
    async fn claim(
        &mut self,
        conn: &Conn,
        req: &ImFileLoginReq,
        role: Role,
    ) -> Result<LoginOutcome, Refusal> {
        let s = &self.shared;
        if !valid_task_id(&req.task_id) {
            return Err(Refusal::Gone);
        }
        let mut task = match s.tasks.get(&req.task_id) {
            Some(t) => t,
            None if role == Role::Downloader => offline::load(s, &req.task_id).await?,
            None => return Err(Refusal::Gone),
        };
        let mut outcome = task.login(role, req.user_id, conn);
        if matches!(outcome, Err(Refusal::Gone)) && role == Role::Downloader {
            // The download task was just dropped from the table: load it again.
            task = offline::load(s, &req.task_id).await?;
            outcome = task.login(role, req.user_id, conn);
        }
        let outcome = outcome?;
        if !matches!(outcome, LoginOutcome::Waiting) {
            // A transfer starts (ended by `end_task`, `leave_download` or `transfer_ended`).
            s.metrics.transfers_active.add(1);
        }
        let work = match role {
            Role::Sender | Role::Receiver => Work::Online,
            Role::Uploader => match Upload::create(s, &task).await {
                Ok(up) => Work::Upload(up),
                Err(e) => {
                    tracing::warn!(task = Shared::short_id(&task.id), error = %e,
                        "cannot create the offline file");
                    s.metrics.transfers_failed.inc();
                    s.end_task(&task, Some(conn));
                    return Err(Refusal::Gone);
                }
            },
            Role::Downloader => match Download::open(s, &task).await {
                Ok(d) => Work::Download(d),
                Err(e) => {
                    tracing::warn!(task = Shared::short_id(&task.id), error = %e,
                        "cannot open the offline file");
                    let was_active = task.leave_download(conn.id(), false);
                    s.metrics.transfer_ended(was_active);
                    s.tasks.remove_if_idle(&task);
                    return Err(Refusal::Gone);
                }
            },
        };
        self.session = Some(Session {
            task,
            role,
            user: req.user_id,
            work,
        });
        Ok(outcome)
    }

    /// `CID_FILE_STATE`: DONE, CANCEL and REFUSE go to the other side; the connection that
    /// sent a state is closed (as the original does with any state).
    fn state(&mut self, conn: &Conn, pdu: Pdu) {
        let Some(st) = self.decode::<ImFileState>(conn, &pdu) else {
            return;
        };
        let Some(session) = &self.session else { return };
        let s = &self.shared;
        let terminal = [
            ClientFileState::ClientFileDone,
            ClientFileState::ClientFileCancel,
            ClientFileState::ClientFileRefuse,
        ]
        .iter()
        .any(|t| *t as i32 == st.state);
        let valid = st.user_id == session.user && st.task_id == session.task.id;
        if valid
            && terminal
            && let Some(peer) = session.task.peer(session.role)
        {
            let _ = peer.send_pdu(&pdu);
        }
        if matches!(session.work, Work::Online) && s.end_task(&session.task, Some(conn)) {
            if valid && st.state == ClientFileState::ClientFileDone as i32 {
                s.metrics.online_done.inc();
            } else {
                s.metrics.transfers_failed.inc();
            }
        }
        conn.close_after_flush(CloseReason::Server("file state received"));
    }
}

impl Handler for ClientHandler {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if conn.is_closed() {
            return;
        }
        let cmd = pdu.command_id();
        if cmd == cid::CID_FILE_LOGIN_REQ {
            self.login(conn, pdu).await;
            return;
        }
        if self.session.is_none() {
            tracing::debug!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_name(),
                "dropping a command sent before login");
            return;
        }
        match cmd {
            cid::CID_FILE_STATE => self.state(conn, pdu),
            cid::CID_FILE_PULL_DATA_REQ => {
                let Some(req) = self.decode::<ImFilePullDataReq>(conn, &pdu) else {
                    return;
                };
                let s = self.shared.clone();
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                if req.user_id != session.user || req.task_id != session.task.id {
                    return close_bad(conn, "pull request for another task or user");
                }
                match (&mut session.work, session.role) {
                    (Work::Online, Role::Receiver) => {
                        online::pull(&session.task, conn, &pdu, &req);
                    }
                    (Work::Download(d), _) => d.serve(&s, &session.task, conn, &pdu, &req).await,
                    _ => close_bad(conn, "pull request from the sending side"),
                }
            }
            cid::CID_FILE_PULL_DATA_RSP => {
                let Some(rsp) = self.decode::<ImFilePullDataRsp>(conn, &pdu) else {
                    return;
                };
                let s = self.shared.clone();
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                if rsp.user_id != session.user || rsp.task_id != session.task.id {
                    return close_bad(conn, "data for another task or user");
                }
                match (&mut session.work, session.role) {
                    (Work::Online, Role::Sender) => {
                        online::data(&s, &session.task, pdu, rsp.offset, rsp.file_data.len());
                    }
                    (Work::Upload(up), _) => up.block(&s, &session.task, conn, rsp).await,
                    _ => close_bad(conn, "data from the receiving side"),
                }
            }
            other => {
                self.shared.metrics.unknown_commands.inc();
                tracing::debug!(
                    conn_id = conn.id(),
                    cmd = other,
                    name = pdu.command_name(),
                    "ignoring a command file_server does not handle"
                );
            }
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        let Some(session) = self.session.take() else {
            return;
        };
        let s = &self.shared;
        match session.work {
            Work::Online => {
                // One side gone: the task is over and the other side is closed.
                if s.end_task(&session.task, Some(conn)) {
                    s.metrics.transfers_failed.inc();
                    tracing::debug!(
                        task = Shared::short_id(&session.task.id),
                        role = session.role.as_str(),
                        "online transfer ended by a disconnect"
                    );
                }
            }
            Work::Upload(up) => up.abandon(s, &session.task, conn).await,
            Work::Download(d) => d.end(s, &session.task, conn),
        }
    }
}
