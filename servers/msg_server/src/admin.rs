//! The admin port (IM.Admin): stats, connection listing, local kicks, drain, and sending a
//! message on a user's behalf.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use im_common::CancellationToken;
use im_common::admin::{AdminService, conn_list, unsupported};
use im_common::conn::CloseReason;
use im_common::upstream::{LinkState, LinkStatus};
use im_proto::admin::{
    self, AdminResult, ClientTypeCount, ImAdminConnListReq, ImAdminDrainReq, ImAdminDrainRsp,
    ImAdminKickUserReq, ImAdminKickUserRsp, ImAdminSendMsgReq, ImAdminSendMsgRsp, Latency, Metric,
    ServerState, ServerStats, UpstreamLink,
};
use im_proto::base::KickReasonType;
use im_proto::message::ImMsgData;
use im_proto::{Pdu, cid};
use tokio::sync::oneshot;

use crate::server::Server;
use crate::upstream::db::DbError;

/// Whether the server is draining, and the task closing its connections.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    task: Mutex<Option<CancellationToken>>,
}

impl Drain {
    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Starts draining: login_servers see capacity 0 (even an original login_server then stops
/// assigning us), and the logged-in connections are closed `per_sec` at a time so their
/// clients reconnect elsewhere. Logins already handed out are still accepted.
pub fn start_drain(s: &Arc<Server>, per_sec: u32) {
    let per_sec = if per_sec == 0 {
        s.cfg.drain_close_per_sec.max(1)
    } else {
        per_sec
    };
    let token = CancellationToken::new();
    {
        let mut t = s.drain.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = t.replace(token.clone()) {
            old.cancel();
        }
    }
    s.drain.draining.store(true, Ordering::Relaxed);
    s.reregister_with_login_servers();
    tracing::info!(per_sec, "draining: closing logged-in connections gradually");
    let weak = Arc::downgrade(s);
    tokio::spawn(drain_loop(weak, per_sec, token));
}

async fn drain_loop(weak: Weak<Server>, per_sec: u32, token: CancellationToken) {
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_sec));
    loop {
        // One snapshot per round; users who log in meanwhile are picked up by the next.
        let batch = match weak.upgrade() {
            Some(s) => s.sessions.all(),
            None => return,
        };
        if batch.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                () = token.cancelled() => return,
            }
        }
        for c in batch {
            c.conn.close_after_flush(CloseReason::Server("draining"));
            match weak.upgrade() {
                Some(s) => {
                    s.detach(c.conn.user_id(), c.conn.id());
                }
                None => return,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = token.cancelled() => return,
            }
        }
    }
}

/// Ends a drain: capacity reported again, no more closing.
pub fn stop_drain(s: &Server) {
    if let Some(t) = s
        .drain
        .task
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        t.cancel();
    }
    s.drain.draining.store(false, Ordering::Relaxed);
    s.reregister_with_login_servers();
    tracing::info!("drain ended");
}

/// The admin service of a msg_server.
pub struct MsgAdmin {
    server: Weak<Server>,
}

impl MsgAdmin {
    /// The service over `server`.
    pub fn new(server: &Arc<Server>) -> Self {
        MsgAdmin {
            server: Arc::downgrade(server),
        }
    }
}

fn link(l: LinkStatus) -> UpstreamLink {
    UpstreamLink {
        kind: Some(l.kind.to_owned()),
        addr: Some(l.addr),
        state: Some(match l.state {
            LinkState::Connected => admin::LinkState::Connected as i32,
            LinkState::Connecting => admin::LinkState::Connecting as i32,
            LinkState::Down => admin::LinkState::Down as i32,
        }),
        rtt_micros: Some(l.rtt.map_or(0, |d| d.as_micros() as u64)),
        pdus_in_total: Some(l.pdus_in),
        pdus_out_total: Some(l.pdus_out),
        reconnects_total: Some(l.reconnects),
        state_age_ms: Some(l.state_age.as_millis() as u64),
        queue_depth: Some(l.queue_depth as u64),
    }
}

fn stats(s: &Server) -> ServerStats {
    let conns = s.registry.all();
    let mut by_type: BTreeMap<u32, u32> = BTreeMap::new();
    let (mut depth_sum, mut depth_max, mut slow) = (0u64, 0u64, 0u32);
    for c in &conns {
        *by_type.entry(c.client_type()).or_default() += 1;
        let d = c.queue_depth() as u64;
        depth_sum += d;
        depth_max = depth_max.max(d);
        // "Slow right now": more than a burst's worth waiting.
        if d > 1000 {
            slow += 1;
        }
    }
    let m = &s.metrics;
    let lat = m.ack_latency.summary();
    let upstreams =
        s.db.status()
            .into_iter()
            .chain(s.routes.status())
            .chain(s.logins.status())
            .chain(s.push.status())
            .chain(s.files.status())
            .map(link)
            .collect();
    ServerStats {
        state: Some(if s.is_stopping() {
            ServerState::Stopping as i32
        } else if s.drain.is_draining() {
            ServerState::Draining as i32
        } else {
            ServerState::Up as i32
        }),
        listen_addr: Some(s.cfg.listen.to_string()),
        connections: by_type
            .into_iter()
            .map(|(ct, n)| ClientTypeCount {
                client_type: Some(ct),
                count: Some(n),
            })
            .collect(),
        logins_total: Some(m.logins.get()),
        login_failures_total: Some(m.login_failures.get()),
        msgs_in_total: Some(m.msgs_in.get()),
        msgs_out_total: Some(m.msgs_out.get()),
        routed_out_total: Some(m.routed_out.get()),
        routed_in_total: Some(m.routed_in.get()),
        ack_latency: Some(Latency {
            p50_micros: Some(lat.p50_us),
            p99_micros: Some(lat.p99_us),
            max_micros: Some(lat.max_us),
            count: Some(lat.count),
        }),
        outbound_queue_depth: Some(depth_sum),
        outbound_queue_max: Some(depth_max),
        slow_consumers: Some(slow),
        slow_consumer_disconnects_total: Some(
            s.registry.stats().slow_consumers.load(Ordering::Relaxed),
        ),
        upstreams,
        metrics: m
            .registry
            .values()
            .into_iter()
            .map(|(name, value, monotonic)| Metric {
                name: Some(name),
                value: Some(value),
                monotonic: Some(monotonic),
            })
            .collect(),
        table_size: Some(s.sessions.users() as u64),
        ..Default::default()
    }
}

fn kick(s: &Server, req: &ImAdminKickUserReq) -> ImAdminKickUserRsp {
    let user = req.user_id.unwrap_or(0);
    if user == 0 {
        return ImAdminKickUserRsp {
            result_code: Some(AdminResult::AdminBadRequest as i32),
            result_string: Some("user_id is required".to_owned()),
            kicked: Some(0),
        };
    }
    let victims = s.sessions.matching(user, req.client_type.unwrap_or(0));
    for c in &victims {
        s.kick(user, c, KickReasonType::KickReasonDuplicateUser);
    }
    ImAdminKickUserRsp {
        result_code: Some(if victims.is_empty() {
            AdminResult::AdminNotFound as i32
        } else {
            AdminResult::AdminOk as i32
        }),
        result_string: victims
            .is_empty()
            .then(|| format!("user {user} has no matching connection here")),
        kicked: Some(victims.len() as u32),
    }
}

fn send_refused(code: AdminResult, why: String) -> ImAdminSendMsgRsp {
    ImAdminSendMsgRsp {
        result_code: Some(code as i32),
        result_string: Some(why),
        msg_id: None,
    }
}

/// IMAdminSendMsgReq: the message goes the way a client's IMMsgData from `from_user_id` goes
/// ([`crate::send`]), without a login as that user: the answer carries the msg_id once it is
/// stored, and every connection of the sender gets the message as "another device" (none of
/// them sent it). Delivery, routing and push carry on after the answer, tracked like a
/// client's, so shutdown waits for them.
async fn send_msg(s: &Arc<Server>, req: ImAdminSendMsgReq) -> ImAdminSendMsgRsp {
    let (from, to) = (
        req.from_user_id.unwrap_or(0),
        req.to_session_id.unwrap_or(0),
    );
    if from == 0 || to == 0 {
        return send_refused(
            AdminResult::AdminBadRequest,
            "from_user_id and to_session_id are required".into(),
        );
    }
    if s.is_stopping() {
        return send_refused(AdminResult::AdminUnavailable, "shutting down".into());
    }
    let mut msg = ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: req.msg_type.unwrap_or(0) as i32,
        msg_data: req.msg_data.unwrap_or_default(),
        attach_data: None,
    };
    let group = match crate::send::prepare(&mut msg, from) {
        Ok(group) => group,
        Err(why) => return send_refused(AdminResult::AdminBadRequest, why.to_string()),
    };
    let (tx, rx) = oneshot::channel();
    let on_stored = move |r: Result<&ImMsgData, &DbError>| {
        let _ = tx.send(r.map(|m| m.msg_id).map_err(|e| match e {
            DbError::NoLink => AdminResult::AdminUnavailable,
            _ => AdminResult::AdminFailed,
        }));
    };
    crate::client::submit(
        s,
        crate::send::store_and_deliver(s.clone(), msg, group, 0, None, None, on_stored),
    )
    .await;
    match rx.await {
        Ok(Ok(msg_id)) => {
            tracing::info!(
                user_id = from,
                to,
                msg_id,
                "admin: message sent on a user's behalf"
            );
            ImAdminSendMsgRsp {
                result_code: Some(AdminResult::AdminOk as i32),
                result_string: None,
                msg_id: Some(msg_id),
            }
        }
        Ok(Err(code)) => send_refused(code, "db_proxy did not store the message".into()),
        Err(_) => send_refused(AdminResult::AdminFailed, "the store was abandoned".into()),
    }
}

impl AdminService for MsgAdmin {
    fn kind(&self) -> &'static str {
        "msg_server"
    }

    fn name(&self) -> String {
        self.server
            .upgrade()
            .map(|s| s.cfg.name.clone())
            .unwrap_or_default()
    }

    async fn stats(&self) -> ServerStats {
        self.server.upgrade().map(|s| stats(&s)).unwrap_or_default()
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        let s = self.server.upgrade()?;
        match pdu.command_id() {
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                let mut rsp = conn_list(&s.registry, &req);
                let pending: BTreeMap<u64, u32> = s
                    .sessions
                    .all()
                    .iter()
                    .map(|c| (c.conn.id(), c.pending_acks.load(Ordering::Relaxed)))
                    .collect();
                for c in &mut rsp.conns {
                    c.pending_acks = c.conn_id.and_then(|id| pending.get(&id).copied());
                }
                Some(pdu.reply(&rsp))
            }
            cid::CID_ADMIN_KICK_USER_REQ => {
                let rsp = match pdu.decode::<ImAdminKickUserReq>() {
                    Ok(req) => kick(&s, &req),
                    Err(e) => ImAdminKickUserRsp {
                        result_code: Some(AdminResult::AdminBadRequest as i32),
                        result_string: Some(e.to_string()),
                        kicked: Some(0),
                    },
                };
                Some(pdu.reply(&rsp))
            }
            cid::CID_ADMIN_DRAIN_REQ => {
                let rsp = match pdu.decode::<ImAdminDrainReq>() {
                    Ok(req) if req.msg_server.as_deref().unwrap_or("").is_empty() => {
                        if req.undrain.unwrap_or(false) {
                            stop_drain(&s);
                        } else {
                            start_drain(&s, req.close_per_sec.unwrap_or(0));
                        }
                        ImAdminDrainRsp {
                            result_code: Some(AdminResult::AdminOk as i32),
                            result_string: None,
                        }
                    }
                    Ok(_) => ImAdminDrainRsp {
                        result_code: Some(AdminResult::AdminBadRequest as i32),
                        result_string: Some(
                            "msg_server must be empty: a msg_server drains only itself (ask \
                             login_server to drain another)"
                                .to_owned(),
                        ),
                    },
                    Err(e) => ImAdminDrainRsp {
                        result_code: Some(AdminResult::AdminBadRequest as i32),
                        result_string: Some(e.to_string()),
                    },
                };
                Some(pdu.reply(&rsp))
            }
            cid::CID_ADMIN_SEND_MSG_REQ => {
                let rsp = match pdu.decode::<ImAdminSendMsgReq>() {
                    Ok(req) => send_msg(&s, req).await,
                    Err(e) => send_refused(AdminResult::AdminBadRequest, e.to_string()),
                };
                Some(pdu.reply(&rsp))
            }
            _ => unsupported(pdu),
        }
    }
}
