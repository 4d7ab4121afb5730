//! The shared state of one msg_server and the operations every part uses: presence changes
//! (login, close, kick) announced to route_server and login_server in order, local delivery,
//! routing, group member lookups.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use im_common::conn::CloseReason;
use im_common::{CancellationToken, ConnRegistry};
use im_proto::base::{GroupVersionInfo, KickReasonType};
use im_proto::crypto::MessageCipher;
use im_proto::group::{ImGroupInfoListReq, ImGroupInfoListRsp};
use im_proto::login::ImKickUser;
use im_proto::server::{ImMsgServInfo, ImUserCntUpdate, ImUserStatusUpdate};
use im_proto::{Pdu, cid};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::dedup::RecentMsgs;
use crate::state::groups::{GroupCache, Members};
use crate::state::throttle::LoginThrottle;
use crate::state::{ConnEntry, Sessions};
use crate::upstream::db::{DbPool, DbPoolOptions, Key};
use crate::upstream::file::FileLinks;
use crate::upstream::login::LoginLinks;
use crate::upstream::push::PushLinks;
use crate::upstream::route::RouteLinks;

/// Timing and limits taken from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name (host_name in IMMsgServInfo).
    pub name: String,
    /// Client listener address.
    pub listen: SocketAddr,
    /// TLS client port (`tls_listen`), announced to login_server after IMMsgServInfo.
    pub tls_port: Option<u16>,
    /// Addresses for clients.
    pub ip1: String,
    /// Second address for clients.
    pub ip2: String,
    /// Capacity reported to login_server.
    pub max_connections: u32,
    /// Messages per connection per second (0: unlimited).
    pub msg_rate: u32,
    /// Bounds on lists in client requests.
    pub bounds: Bounds,
    /// Time to log in.
    pub login_timeout: Duration,
    /// Idle limits by class.
    pub idle_pc: Duration,
    /// Idle limit of mobile clients.
    pub idle_mobile: Duration,
    /// Waiting for route_server's locate answer before a push.
    pub push_locate_timeout: Duration,
    /// Waiting for any request's answer.
    pub request_timeout: Duration,
    /// Default drain rate.
    pub drain_close_per_sec: u32,
    /// Waiting for stores on shutdown.
    pub shutdown_grace: Duration,
}

/// Bounds on the lists a client request may carry (config `max_*_per_request`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// User ids in IMUsersInfoReq / IMUsersStatReq.
    pub user_ids: usize,
    /// Groups in IMGroupInfoListReq.
    pub group_ids: usize,
    /// Ids in IMGetMsgByIdReq.
    pub msg_ids: usize,
    /// Members in IMGroupCreateReq / IMGroupChangeMemberReq.
    pub group_members: usize,
}

/// One msg_server.
pub struct Server {
    /// Settings.
    pub cfg: Settings,
    /// Logged-in users.
    pub sessions: Sessions,
    /// Group member cache.
    pub groups: GroupCache,
    /// Routed messages seen recently.
    pub recent: RecentMsgs,
    /// Failed logins per address.
    pub throttle: LoginThrottle,
    /// Counters.
    pub metrics: Metrics,
    /// db_proxy links.
    pub db: DbPool,
    /// route_server links.
    pub routes: RouteLinks,
    /// login_server links.
    pub logins: LoginLinks,
    /// push_server links.
    pub push: PushLinks,
    /// file_server links.
    pub files: Arc<FileLinks>,
    /// Message-body cipher (push texts).
    pub cipher: MessageCipher,
    /// Client connections (admin listings, drain).
    pub registry: ConnRegistry,
    /// Requests whose answers are awaited in tasks; shutdown waits for them.
    pub inflight: TaskTracker,
    /// Set on shutdown: client PDUs are dropped from then on.
    pub stopping: AtomicBool,
    /// Drain state.
    pub drain: crate::admin::Drain,
    presence: Mutex<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.cfg.name)
            .finish()
    }
}

/// Unix time in seconds, as TeamTalk puts on the wire.
pub fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Server {
    /// Builds the server and starts its upstream links (they stop with `links_shutdown`).
    pub fn start(
        config: &Config,
        listen: SocketAddr,
        metrics: Metrics,
        links_shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Server>> {
        Self::start_with_tls(config, listen, None, metrics, links_shutdown)
    }

    /// [`Server::start`] with the TLS client port (`tls_listen`) when there is one.
    pub fn start_with_tls(
        config: &Config,
        listen: SocketAddr,
        tls_port: Option<u16>,
        metrics: Metrics,
        links_shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Server>> {
        let tls = config.client_tls()?;
        let cipher = MessageCipher::new(config.aes_key.as_bytes())?;
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let window = Config::dur(config.route_resend_window_secs);
        let cfg = Settings {
            name: config.display_name(),
            listen,
            tls_port,
            ip1: config.ip1.clone(),
            ip2: config.ip2_or_ip1().to_owned(),
            max_connections: config.max_connections,
            msg_rate: config.msg_rate_limit_per_sec,
            bounds: Bounds {
                user_ids: config.max_user_ids_per_request as usize,
                group_ids: config.max_group_ids_per_request as usize,
                msg_ids: config.max_msg_ids_per_request as usize,
                group_members: config.max_group_members_per_request as usize,
            },
            login_timeout: Config::dur(config.login_timeout_secs),
            idle_pc: Config::dur(config.idle_pc_secs),
            idle_mobile: Config::dur(config.idle_mobile_secs),
            push_locate_timeout: Duration::from_millis(config.push_locate_timeout_ms),
            request_timeout: timeout,
            drain_close_per_sec: config.drain_close_per_sec,
            shutdown_grace: Config::dur(config.shutdown_grace_secs),
        };
        let db = DbPool::spawn(
            DbPoolOptions {
                addrs: config.db_proxy.clone(),
                per_server: config.db_connections_per_server,
                timeout,
                attempts: config.store_attempts,
                backoff: config.backoff,
                tls: tls.clone(),
            },
            metrics.clone(),
            links_shutdown.clone(),
        );
        let push = PushLinks::spawn(&config.push_servers, config.backoff, &tls, links_shutdown);
        let files = FileLinks::spawn(
            &config.file_servers,
            config.backoff,
            &tls,
            timeout,
            &metrics.registry,
            links_shutdown,
        );
        Ok(Arc::new_cyclic(|weak| Server {
            routes: RouteLinks::spawn(
                &config.route_servers,
                window,
                config.backoff,
                &tls,
                timeout,
                metrics.clone(),
                weak,
                links_shutdown,
            ),
            logins: LoginLinks::spawn(
                &config.login_servers,
                config.backoff,
                &tls,
                weak,
                links_shutdown,
            ),
            sessions: Sessions::new(),
            groups: GroupCache::new(),
            // Twice the window plus a margin: the delayed second resend pass must still
            // find the first copy remembered.
            recent: RecentMsgs::new(window * 2 + Duration::from_secs(5)),
            throttle: LoginThrottle::new(
                config.login_failures_per_addr,
                Config::dur(config.login_failure_window_secs),
            ),
            metrics,
            db,
            push,
            files,
            cipher,
            registry: ConnRegistry::new(),
            inflight: TaskTracker::new(),
            stopping: AtomicBool::new(false),
            drain: crate::admin::Drain::default(),
            presence: Mutex::new(()),
            cfg,
        }))
    }

    /// The lock that keeps presence changes and link registrations in one order: a link's
    /// snapshot (IMOnlineUserInfo, IMMsgServInfo) and the updates that follow it must not
    /// overlap, or route_server/login_server would count a connection twice or never.
    pub fn presence_gate(&self) -> MutexGuard<'_, ()> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True once shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// IMMsgServInfo as login_server should see us now (capacity 0 while draining).
    pub fn serv_info(&self) -> ImMsgServInfo {
        ImMsgServInfo {
            ip1: self.cfg.ip1.clone(),
            ip2: self.cfg.ip2.clone(),
            port: u32::from(self.cfg.listen.port()),
            max_conn_cnt: if self.drain.is_draining() {
                0
            } else {
                self.cfg.max_connections
            },
            cur_conn_cnt: self.sessions.count() as u32,
            host_name: self.cfg.name.clone(),
        }
    }

    /// Re-registers with every login_server (drain and undrain change our capacity).
    pub fn reregister_with_login_servers(&self) {
        let _gate = self.presence_gate();
        let frame = Pdu::from_msg(&self.serv_info(), 0).to_frame();
        self.logins.send_all(&frame);
    }

    fn announce(&self, user: u32, client_type: u32, online: bool) {
        let status = ImUserStatusUpdate {
            user_status: if online { 1 } else { 2 },
            user_id: user,
            client_type: client_type as i32,
        };
        self.routes.send_all(&Pdu::from_msg(&status, 0).to_frame());
        let cnt = ImUserCntUpdate {
            user_action: if online { 1 } else { 2 },
            user_id: user,
        };
        self.logins.send_all(&Pdu::from_msg(&cnt, 0).to_frame());
    }

    /// A connection logged in: into the table, announced to every route_server (status
    /// online) and login_server (count +1).
    pub fn attach(&self, user: u32, entry: ConnEntry, nick: &str) {
        let _gate = self.presence_gate();
        let ct = entry.client_type;
        self.sessions.attach(user, entry, nick);
        self.announce(user, ct, true);
    }

    /// A logged-in connection is going: out of the table and announced, once (later calls
    /// for the same connection do nothing).
    pub fn detach(&self, user: u32, conn_id: u64) -> bool {
        let _gate = self.presence_gate();
        match self.sessions.detach(user, conn_id) {
            Some(e) => {
                self.announce(user, e.client_type, false);
                true
            }
            None => false,
        }
    }

    /// Kicks one connection: IMKickUser, then closed once that is written (FLOWS.md 4.1,
    /// fixing WEAKNESSES 8), and out of the table at once so that it gets nothing more.
    pub fn kick(&self, user: u32, entry: &ConnEntry, reason: KickReasonType) {
        let kick = ImKickUser {
            user_id: user,
            kick_reason: reason as i32,
        };
        let _ = entry.conn.send_msg(&kick, 0);
        entry.conn.close_after_flush(CloseReason::Server("kicked"));
        self.detach(user, entry.conn.id());
        self.metrics.kicks.inc();
        tracing::info!(
            user_id = user,
            conn_id = entry.conn.id(),
            reason = reason as i32,
            client_type = entry.client_type,
            "connection kicked"
        );
    }

    /// Queues a message frame on every local connection of `user` except `except`; counts
    /// deliveries.
    pub fn deliver_msg(&self, user: u32, frame: &Bytes, except: Option<u64>) -> usize {
        let n = self
            .sessions
            .send_where(user, frame, true, |c| Some(c.conn.id()) != except);
        self.metrics.msgs_out.add(n as u64);
        n
    }

    /// Fans a message out to the local connections of many users, yielding to the runtime
    /// every few hundred connections so that a big group does not hold a worker thread.
    pub async fn deliver_msg_many(&self, users: &[u32], frame: &Bytes, except: Option<u64>) {
        let mut since_yield = 0;
        for &u in users {
            since_yield += self.deliver_msg(u, frame, except);
            if since_yield >= 256 {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    /// The members of a group: cached, or fetched from db_proxy once for all concurrent
    /// askers (Decisions 10). `asker` is a member (db_proxy may refuse others).
    pub async fn group_members(&self, group: u32, asker: u32) -> Option<Arc<Members>> {
        let slot = self.groups.slot(group);
        let got = slot
            .get_or_try_init(|| async {
                self.metrics.group_fetches.inc();
                let req = ImGroupInfoListReq {
                    user_id: asker,
                    group_version_list: vec![GroupVersionInfo {
                        group_id: group,
                        version: 0,
                    }],
                    attach_data: None,
                };
                let pdu = self
                    .db
                    .request(
                        Key::Group(group),
                        Pdu::from_msg(&req, 0),
                        cid::CID_GROUP_INFO_RESPONSE,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let rsp = pdu
                    .decode::<ImGroupInfoListRsp>()
                    .map_err(|e| e.to_string())?;
                rsp.group_info_list
                    .iter()
                    .find(|g| g.group_id == group)
                    .map(|g| Arc::new(Members::of(g)))
                    .ok_or_else(|| format!("db_proxy knows no group {group}"))
            })
            .await;
        match got {
            Ok(m) => Some(m.clone()),
            Err(e) => {
                tracing::warn!(group_id = group, error = %e, "group member lookup failed");
                None
            }
        }
    }
}
