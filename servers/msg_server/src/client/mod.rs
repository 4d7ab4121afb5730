//! The client connection: one [`ClientHandler`] per connection, one module per service, one
//! function per command.
//!
//! Before login only `CID_LOGIN_REQ_USERLOGIN` is handled (heartbeats are echoed by the serve
//! loop); everything else is dropped and counted (FLOWS.md 1.6, fixing WEAKNESSES 6). After
//! login every request carries the authenticated user id, whatever the client put there.

mod buddy;
mod file;
mod group;
mod login;
mod message;
mod switch;

pub use switch::MAX_P2P_CMD_BYTES;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::Poll;
use std::time::Instant;

use im_common::{Conn, Handler, SendError};
use im_proto::command::is_mobile_client;
use im_proto::{Command, Pdu, cid};

use crate::server::Server;
use crate::upstream::db::Key;
use crate::wire::reply_frame;

/// Who is logged in on a connection.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub user_id: u32,
    pub client_type: u32,
    pub pending_acks: Arc<AtomicU32>,
}

impl Auth {
    fn is_mobile(&self) -> bool {
        is_mobile_client(self.client_type)
    }
}

/// A token bucket: `rate` messages per second, bursts up to `rate`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The handler of one client connection.
pub struct ClientHandler {
    server: Arc<Server>,
    auth: Option<Auth>,
    /// A login request was received (a second one is ignored, FLOWS.md 4 step 3).
    login_started: bool,
    bucket: Bucket,
    /// The current burst over the rate limit was logged already.
    rate_limited_logged: bool,
    /// Completion signal of the last message this connection sent (see [`crate::send::Turn`]).
    last_sent: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ClientHandler {
    /// A handler for a just-accepted connection; the login deadline starts now.
    pub fn new(server: Arc<Server>, conn: &Conn) -> Self {
        conn.set_deadline(Some(server.cfg.login_timeout));
        let bucket = Bucket::new(server.cfg.msg_rate);
        ClientHandler {
            server,
            auth: None,
            login_started: false,
            bucket,
            rate_limited_logged: false,
            last_sent: None,
        }
    }

    /// A handler whose connection is already logged in as `user_id` (attached and announced
    /// as a successful login would leave it), for the fuzz target and tests that drive the
    /// dispatch past login without a db_proxy (see [`crate::fuzzing`]).
    #[doc(hidden)]
    pub fn logged_in(server: Arc<Server>, conn: &Conn, user_id: u32, client_type: u32) -> Self {
        let mut h = ClientHandler::new(server, conn);
        conn.set_identity(user_id, client_type);
        conn.set_deadline(None);
        let pending_acks = Arc::new(AtomicU32::new(0));
        let entry = crate::state::ConnEntry {
            conn: conn.clone(),
            client_type,
            online_status: 1,
            pending_acks: pending_acks.clone(),
        };
        h.server.attach(user_id, entry, "");
        h.login_started = true;
        h.auth = Some(Auth {
            user_id,
            client_type,
            pending_acks,
        });
        h
    }

    /// True, after logging and counting it, when a request carries `n` items of `what` and
    /// at most `max` are allowed. Callers answer with a result code where the reply has one
    /// and otherwise drop the request; nothing is ever cut silently.
    fn oversized(&self, conn: &Conn, pdu: &Pdu, what: &'static str, n: usize, max: usize) -> bool {
        if n <= max {
            return false;
        }
        self.server.metrics.oversized_requests.inc();
        tracing::info!(conn_id = conn.id(), peer = %conn.peer(), user_id = conn.user_id(),
            cmd = pdu.command_name(), what, n, max, "refusing a request over its bound");
        true
    }

    /// Decodes a body; a bad one is logged, counted and dropped (the connection stays).
    fn decode<M: Command>(&self, conn: &Conn, pdu: &Pdu) -> Option<M> {
        match pdu.decode::<M>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.server.metrics.decode_errors.inc();
                tracing::info!(conn_id = conn.id(), peer = %conn.peer(), user_id = conn.user_id(),
                    cmd = pdu.command_name(), error = %e, "dropping a PDU whose body does not decode");
                None
            }
        }
    }
}

/// Polls `fut` once, then lets it finish in a tracked task if it is not done.
///
/// Requests to db_proxy and route_server are queued on their link during the first poll,
/// before the connection reads its next PDU, so they reach the peer in the order the client
/// sent them (Decisions 6); the answer is awaited in a task so that the connection keeps
/// reading meanwhile. Shutdown waits for these tasks (acks of stored messages go out).
pub(crate) async fn submit(server: &Server, fut: impl Future<Output = ()> + Send + 'static) {
    let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if first.is_pending() {
        server.inflight.spawn(fut);
    }
}

/// Forwards a client request to db_proxy and relays the answer (command `expect`) to the
/// client with its seq and without attach_data; `after` sees the answer first.
pub(crate) async fn relay_db(
    server: &Arc<Server>,
    conn: &Conn,
    key: Key,
    request: Pdu,
    expect: u16,
    after: impl FnOnce(&Server, &Pdu) + Send + 'static,
) {
    let s = server.clone();
    let conn = conn.clone();
    let seq = request.seq_num();
    let name = request.command_name();
    submit(server, async move {
        match s.db.request(key, request, expect).await {
            Ok(reply) => {
                after(&s, &reply);
                if let Err(e @ SendError::TooLarge { .. }) =
                    conn.send_frame(reply_frame(&reply, seq))
                {
                    // Decisions 2: db_proxy cuts long lists; anything still too big for a
                    // client is dropped rather than breaking the client's decoder.
                    tracing::warn!(conn_id = conn.id(), user_id = conn.user_id(), cmd = name,
                        error = %e, "answer too large for a client; dropped");
                }
            }
            Err(e) => {
                tracing::info!(conn_id = conn.id(), user_id = conn.user_id(), cmd = name,
                    error = %e, "db_proxy request failed; the client gets no answer");
            }
        }
    })
    .await;
}

/// A request as forwarded: body re-encoded with the authenticated user, client's seq.
pub(crate) fn forward<M: Command>(msg: &M, pdu: &Pdu) -> Pdu {
    Pdu::from_msg(msg, pdu.seq_num())
}

impl Handler for ClientHandler {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if conn.is_closed() || self.server.is_stopping() {
            // Kicked, logged out or shutting down: nothing more is done for this client.
            return;
        }
        let Some(auth) = self.auth.clone() else {
            if pdu.command_id() == cid::CID_LOGIN_REQ_USERLOGIN {
                login::login(self, conn, pdu).await;
            } else {
                self.server.metrics.pre_login_dropped.inc();
                tracing::debug!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_name(),
                    "dropping a command sent before login");
            }
            return;
        };
        let h = &mut *self;
        match pdu.command_id() {
            // SID_LOGIN
            cid::CID_LOGIN_REQ_USERLOGIN => {} // second login request: ignored
            cid::CID_LOGIN_REQ_LOGINOUT => login::logout(h, conn, &auth, pdu),
            cid::CID_LOGIN_REQ_DEVICETOKEN => login::device_token(h, conn, &auth, pdu),
            cid::CID_LOGIN_REQ_KICKPCCLIENT => login::kick_pc_client(h, conn, &auth, pdu),
            cid::CID_LOGIN_REQ_PUSH_SHIELD => login::push_shield(h, conn, &auth, pdu).await,
            cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD => {
                login::query_push_shield(h, conn, &auth, pdu).await;
            }
            // SID_BUDDY_LIST
            cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST => {
                buddy::recent_sessions(h, conn, &auth, pdu).await;
            }
            cid::CID_BUDDY_LIST_USER_INFO_REQUEST => buddy::users_info(h, conn, &auth, pdu).await,
            cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ => {
                buddy::remove_session(h, conn, &auth, pdu).await;
            }
            cid::CID_BUDDY_LIST_ALL_USER_REQUEST => buddy::all_users(h, conn, &auth, pdu).await,
            cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST => {
                buddy::users_status(h, conn, &auth, pdu).await;
            }
            cid::CID_BUDDY_LIST_CHANGE_AVATAR_REQUEST => {
                buddy::change_avatar(h, conn, &auth, pdu).await;
            }
            cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST => buddy::departments(h, conn, &auth, pdu).await,
            cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST => {
                buddy::change_sign_info(h, conn, &auth, pdu).await;
            }
            // SID_MSG
            cid::CID_MSG_DATA => message::msg_data(h, conn, &auth, pdu).await,
            cid::CID_MSG_DATA_ACK => message::data_ack(h, conn, &auth, pdu),
            cid::CID_MSG_READ_ACK => message::read_ack(h, conn, &auth, pdu),
            cid::CID_MSG_TIME_REQUEST => message::time(h, conn, pdu),
            cid::CID_MSG_UNREAD_CNT_REQUEST => message::unread_count(h, conn, &auth, pdu).await,
            cid::CID_MSG_LIST_REQUEST => message::msg_list(h, conn, &auth, pdu).await,
            cid::CID_MSG_GET_LATEST_MSG_ID_REQ => message::latest_msg_id(h, conn, &auth, pdu).await,
            cid::CID_MSG_GET_BY_MSG_ID_REQ => message::msg_by_ids(h, conn, &auth, pdu).await,
            // SID_GROUP
            cid::CID_GROUP_NORMAL_LIST_REQUEST => group::normal_list(h, conn, &auth, pdu).await,
            cid::CID_GROUP_INFO_REQUEST => group::info(h, conn, &auth, pdu).await,
            cid::CID_GROUP_CREATE_REQUEST => group::create(h, conn, &auth, pdu).await,
            cid::CID_GROUP_CHANGE_MEMBER_REQUEST => group::change_member(h, conn, &auth, pdu).await,
            cid::CID_GROUP_SHIELD_GROUP_REQUEST => group::shield(h, conn, &auth, pdu).await,
            // SID_SWITCH_SERVICE
            cid::CID_SWITCH_P2P_CMD => switch::p2p_cmd(h, conn, &auth, pdu),
            // SID_FILE
            cid::CID_FILE_REQUEST => file::request(h, conn, &auth, pdu).await,
            cid::CID_FILE_HAS_OFFLINE_REQ => file::has_offline(h, conn, &auth, pdu).await,
            cid::CID_FILE_ADD_OFFLINE_REQ => file::add_offline(h, conn, &auth, pdu),
            cid::CID_FILE_DEL_OFFLINE_REQ => file::del_offline(h, conn, &auth, pdu),
            other => {
                self.server.metrics.unknown_commands.inc();
                tracing::debug!(
                    conn_id = conn.id(),
                    user_id = auth.user_id,
                    cmd = other,
                    name = pdu.command_name(),
                    "ignoring a command msg_server does not handle"
                );
            }
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        if let Some(auth) = &self.auth {
            self.server.detach(auth.user_id, conn.id());
            tracing::debug!(conn_id = conn.id(), user_id = auth.user_id,
                reason = %conn.close_reason().map(|r| r.to_string()).unwrap_or_default(),
                "client connection closed");
        }
    }
}
