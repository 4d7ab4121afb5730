//! One function per command, grouped by service: [`login`] (password check, device tokens,
//! push shield), [`buddy`] (users, departments, recent sessions, signature), [`message`]
//! (store, unread), [`history`], [`group`], [`file`] (offline file records) and [`other`] (the
//! server-internal token and shield lookups, and two IM.Admin requests that http_msg_server
//! and push_server make on their links: discovery items and dead-token removal).
//!
//! A handler decodes the request, checks it, and returns its [`Work`]: the store call first,
//! then the wait for its result and the reply. The link's driver polls new work once at
//! dispatch, so every store call is made in arrival order (the store queues writes in call
//! order: requests of one link are applied in order, Decisions 6), and then runs it
//! concurrently with later requests.
//! `attach_data` is copied from request to reply unchanged, always (PROTOCOL.md 6).

pub mod buddy;
pub mod file;
pub mod group;
pub mod history;
pub mod login;
pub mod message;
pub mod other;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use im_common::Conn;
use im_proto::{Command, Pdu, cid};
use im_storage::Store;

use crate::server::Shared;

pub use message::{AudioUpload, ConvKey, PreparedStore};

/// Where one request stands when a piece of its work finishes.
#[derive(Debug)]
pub enum Step {
    /// Finished (replied, or nothing to reply).
    Done {
        /// Command id (for per-command metrics).
        cmd: u16,
        /// Arrival time.
        started: Instant,
        /// False when it failed (storage or msfs error, refused store, bad body).
        ok: bool,
    },
    /// A voice message's upload finished: its store may now be issued, in its conversation's
    /// order (`Err` carries the finished step of a failed upload, already answered).
    AudioReady {
        /// Conversation.
        key: ConvKey,
        /// Slot the driver reserved for it.
        slot: u64,
        /// The store to issue, or the failure.
        outcome: Result<Box<PreparedStore>, Box<Step>>,
    },
}

/// The asynchronous rest of a request.
pub type Work<'a> = Pin<Box<dyn Future<Output = Step> + Send + 'a>>;

/// What a handler hands to the connection's driver.
pub enum Dispatch<'a> {
    /// Nothing left to do.
    Finished(Step),
    /// Running work (the store call, if any, is already made).
    Work(Work<'a>),
    /// A message store to issue now, or after a voice message of the same conversation
    /// that is still uploading.
    Store(PreparedStore),
    /// A voice message to upload before its store can be issued.
    Audio(AudioUpload),
}

/// The routing facts of one request.
#[derive(Debug, Clone)]
pub struct Req {
    /// Connection it came on (replies go back there).
    pub conn: Conn,
    /// Command id.
    pub cmd: u16,
    /// seq_num, copied into the reply.
    pub seq: u16,
    /// Arrival time.
    pub started: Instant,
}

impl Req {
    /// The facts of `pdu`.
    pub fn new(conn: &Conn, pdu: &Pdu) -> Self {
        Req {
            conn: conn.clone(),
            cmd: pdu.command_id(),
            seq: pdu.seq_num(),
            started: Instant::now(),
        }
    }

    /// Sends the reply with the request's seq_num. A closed connection is not an error
    /// (the peer retries elsewhere); an oversized reply is a bug worth a warning.
    pub fn reply<M: Command>(&self, msg: &M) {
        if let Err(e) = self.conn.send_pdu(&Pdu::from_msg(msg, self.seq)) {
            match e {
                im_common::SendError::Closed => {
                    tracing::debug!(
                        conn_id = self.conn.id(),
                        cmd = M::NAME,
                        "reply dropped: connection closed"
                    );
                }
                e => {
                    tracing::warn!(conn_id = self.conn.id(), cmd = M::NAME, error = %e, "reply not sent");
                }
            }
        }
    }

    /// The finished step.
    pub fn done(&self, ok: bool) -> Step {
        Step::Done {
            cmd: self.cmd,
            started: self.started,
            ok,
        }
    }

    /// A request finished without asynchronous work.
    pub fn finished(&self, ok: bool) -> Dispatch<'static> {
        Dispatch::Finished(self.done(ok))
    }
}

/// Decodes a request body; a bad one (incl. a missing required field) is logged and
/// counted, and `None` tells the handler to drop it (Decisions 1: the link stays).
pub fn decode<M: Command, S: Store>(sh: &Shared<S>, req: &Req, pdu: &Pdu) -> Option<M> {
    match pdu.decode::<M>() {
        Ok(m) => Some(m),
        Err(e) => {
            sh.metrics.decode_errors.inc();
            tracing::warn!(conn_id = req.conn.id(), peer = %req.conn.peer(), cmd = M::NAME,
                error = %e, "dropping a request whose body does not decode");
            None
        }
    }
}

/// Logs and counts a request list of `n` ids when one answer covers only `max` of them; the
/// caller answers for `max` (the original's LIMIT where it has one), so a cut is never silent.
pub fn note_cut<S: Store>(sh: &Shared<S>, req: &Req, what: &'static str, n: usize, max: usize) {
    if n > max {
        sh.metrics.lists_cut.inc();
        tracing::info!(conn_id = req.conn.id(), peer = %req.conn.peer(),
            cmd = im_proto::command::command_name(req.cmd).unwrap_or("unknown"), what, n, max,
            "request list longer than one answer covers; answering for the first part");
    }
}

/// Routes a request to its handler.
pub fn dispatch<'a, S: Store>(sh: &'a Shared<S>, conn: &Conn, pdu: Pdu) -> Dispatch<'a> {
    let req = Req::new(conn, &pdu);
    sh.metrics.request(req.cmd);
    match pdu.command_id() {
        cid::CID_OTHER_VALIDATE_REQ => login::validate(sh, req, &pdu),
        cid::CID_LOGIN_REQ_DEVICETOKEN => login::device_token(sh, req, &pdu),
        cid::CID_LOGIN_REQ_PUSH_SHIELD => login::push_shield(sh, req, &pdu),
        cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD => login::query_push_shield(sh, req, &pdu),
        cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST => buddy::recent_sessions(sh, req, &pdu),
        cid::CID_BUDDY_LIST_USER_INFO_REQUEST => buddy::users_info(sh, req, &pdu),
        cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ => buddy::remove_session(sh, req, &pdu),
        cid::CID_BUDDY_LIST_ALL_USER_REQUEST => buddy::all_users(sh, req, &pdu),
        cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST => buddy::departments(sh, req, &pdu),
        cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST => buddy::change_sign_info(sh, req, &pdu),
        cid::CID_MSG_DATA => message::msg_data(sh, req, &pdu),
        cid::CID_MSG_READ_ACK => message::read_ack(sh, req, &pdu),
        cid::CID_MSG_UNREAD_CNT_REQUEST => message::unread_count(sh, req, &pdu),
        cid::CID_MSG_LIST_REQUEST => history::msg_list(sh, req, &pdu),
        cid::CID_MSG_GET_BY_MSG_ID_REQ => history::msgs_by_id(sh, req, &pdu),
        cid::CID_MSG_GET_LATEST_MSG_ID_REQ => history::latest_msg_id(sh, req, &pdu),
        cid::CID_GROUP_NORMAL_LIST_REQUEST => group::normal_list(sh, req, &pdu),
        cid::CID_GROUP_INFO_REQUEST => group::info(sh, req, &pdu),
        cid::CID_GROUP_CREATE_REQUEST => group::create(sh, req, &pdu),
        cid::CID_GROUP_CHANGE_MEMBER_REQUEST => group::change_member(sh, req, &pdu),
        cid::CID_GROUP_SHIELD_GROUP_REQUEST => group::shield(sh, req, &pdu),
        cid::CID_FILE_HAS_OFFLINE_REQ => file::has_offline(sh, req, &pdu),
        cid::CID_FILE_ADD_OFFLINE_REQ => file::add_offline(sh, req, &pdu),
        cid::CID_FILE_DEL_OFFLINE_REQ => file::del_offline(sh, req, &pdu),
        cid::CID_OTHER_GET_DEVICE_TOKEN_REQ => other::device_tokens(sh, req, &pdu),
        cid::CID_OTHER_GET_SHIELD_REQ => other::group_shields(sh, req, &pdu),
        cid::CID_ADMIN_DISCOVERY_LIST_REQ => other::discovery_list(sh, req, &pdu),
        cid::CID_ADMIN_REMOVE_TOKEN_REQ => other::remove_token(sh, req, &pdu),
        _ => {
            // The original logs and ignores unknown commands (PROTOCOL.md 4.8); so do we,
            // quietly: CID_BUDDY_LIST_CHANGE_AVATAR_REQUEST, for one, is forwarded by every
            // msg_server and has never had a handler.
            sh.metrics.unknown_commands.inc();
            tracing::debug!(
                conn_id = conn.id(),
                cmd = pdu.command_name(),
                command_id = pdu.command_id(),
                "ignoring a command db_proxy does not handle"
            );
            req.finished(true)
        }
    }
}
