//! One simulated user: runs its behaviour's steps, and between and during them receives,
//! matches and acknowledges what the servers deliver. One task per user; the connection's
//! reader and writer are the client's own two tasks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use im_proto::base::{MsgType, SessionType};
use im_proto::group::{ImGroupInfoListReq, ImNormalGroupListReq};
use im_proto::login::ImLogoutReq;
use im_proto::message::{ImGetMsgListReq, ImMsgData, ImMsgDataAck, ImMsgDataReadAck};
use im_proto::switch_service::Imp2pCmdMsg;
use im_proto::{Pdu, cid};
use rand::Rng;
use tokio::time::Instant;

use super::dial::Session;
use super::engine::{Ctx, Timeline};
use super::plan::{GroupRef, Pace, SendStep, Step, Target};
use super::stamp::{Stamp, StreamKey};
use super::stats::bump;
use super::verify::{Arrival, UserLog};

/// A message waiting for its ack: (PDU seq, stream, message seq, sent µs).
#[derive(Debug, Clone, Copy)]
struct InFlight {
    pdu_seq: u16,
    key: StreamKey,
    seq: u32,
    sent_us: u64,
}

/// Why a wait ended.
enum Wake {
    Pdu(Option<Pdu>),
    Timer,
}

/// See the module documentation.
pub struct SimUser {
    ctx: Arc<Ctx>,
    slot: usize,
    session: Option<Session>,
    log: UserLog,
    in_flight: VecDeque<InFlight>,
    plain: Vec<u8>,
    data_ack: bool,
    read_ack: bool,
    /// Messages received since the last `expect` step.
    received_since_mark: u64,
    /// Repeats received before this time are two overlapping connections' copies.
    overlap_until: u64,
    /// A logout or kick is under way: the close that follows is not a disconnect.
    leaving: bool,
    /// Groups resolved by name or id: (ref, group id).
    resolved: Vec<(GroupRef, u32)>,
}

impl SimUser {
    /// A user for slot `slot`, not connected yet.
    pub fn new(ctx: Arc<Ctx>, slot: usize) -> Self {
        let data_ack = ctx.plan.data_ack;
        SimUser {
            ctx,
            slot,
            session: None,
            log: UserLog::default(),
            in_flight: VecDeque::new(),
            plain: Vec::with_capacity(256),
            data_ack,
            read_ack: false,
            received_since_mark: 0,
            overlap_until: 0,
            leaving: false,
            resolved: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.ctx.stats.now_us()
    }

    fn timeline(&self) -> Option<Timeline> {
        *self.ctx.timeline.borrow()
    }

    fn deadline(&self, at_us: u64) -> Instant {
        let now = self.now();
        Instant::now() + Duration::from_micros(at_us.saturating_sub(now))
    }

    /// Runs every step, stays until the end of the run, and hands in the log.
    pub async fn run(mut self) -> UserLog {
        let ctx = self.ctx.clone();
        let behaviour = &ctx.plan.behaviours[ctx.plan.users[self.slot].behaviour];
        let together = ctx.plan.phases.together;
        let mut arrived = false;
        for (i, step) in behaviour.steps.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                break;
            }
            self.step(step).await;
            if i == 0 {
                ctx.arrive();
                arrived = true;
                if together {
                    self.wait_for_timeline().await;
                }
            }
        }
        if !arrived {
            ctx.arrive();
        }
        let tl = self.wait_for_timeline().await;
        if let Some(tl) = tl {
            self.pump_until(self.deadline(tl.end)).await;
        }
        if let Some(s) = self.session.take() {
            s.client.close();
        }
        let end = tl.map_or_else(|| self.now(), |t| t.end.max(self.now()));
        self.log.presence.offline(end);
        ctx.set_client(self.slot, None);
        ctx.finished.fetch_add(1, Ordering::Relaxed);
        self.log
    }

    /// Receives until the timeline is known.
    async fn wait_for_timeline(&mut self) -> Option<Timeline> {
        let mut rx = self.ctx.timeline.clone();
        loop {
            if let Some(t) = *rx.borrow_and_update() {
                return Some(t);
            }
            if self.ctx.cancel.is_cancelled() {
                return None;
            }
            let wake = match self.session.as_mut() {
                Some(s) => tokio::select! {
                    p = s.events.recv() => Wake::Pdu(p),
                    r = rx.changed() => { if r.is_err() { return None; } Wake::Timer }
                },
                None => {
                    if rx.changed().await.is_err() {
                        return None;
                    }
                    Wake::Timer
                }
            };
            if let Wake::Pdu(p) = wake {
                self.on_pdu(p).await;
            }
        }
    }

    /// Receives until `deadline` (or the run is cancelled).
    async fn pump_until(&mut self, deadline: Instant) {
        while Instant::now() < deadline && !self.ctx.cancel.is_cancelled() {
            match self.wait(deadline).await {
                Wake::Pdu(p) => self.on_pdu(p).await,
                Wake::Timer => break,
            }
        }
    }

    /// The next event or the deadline, whichever comes first.
    async fn wait(&mut self, deadline: Instant) -> Wake {
        let cancel = self.ctx.cancel.clone();
        match self.session.as_mut() {
            Some(s) => tokio::select! {
                biased;
                p = s.events.recv() => Wake::Pdu(p),
                () = tokio::time::sleep_until(deadline) => Wake::Timer,
                () = cancel.cancelled() => Wake::Timer,
            },
            None => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {},
                    () = cancel.cancelled() => {},
                }
                Wake::Timer
            }
        }
    }

    async fn step(&mut self, step: &Step) {
        match step {
            Step::Login => self.login().await,
            Step::Logout => self.logout().await,
            Step::Reconnect { delay } => {
                self.drop_session();
                let until = Instant::now() + *delay;
                self.pump_until(until).await;
                self.login().await;
            }
            Step::Kicked { within } => self.kicked(*within).await,
            Step::Send(s) => self.send_step(s).await,
            Step::P2p { to, count, think } => self.p2p(to, *count, *think).await,
            Step::History { with, count } => self.history(with, *count).await,
            Step::Expect { messages, within } => {
                let deadline = Instant::now() + *within;
                while self.received_since_mark < *messages
                    && Instant::now() < deadline
                    && !self.ctx.cancel.is_cancelled()
                {
                    match self.wait(deadline).await {
                        Wake::Pdu(p) => self.on_pdu(p).await,
                        Wake::Timer => break,
                    }
                }
                if self.received_since_mark < *messages {
                    bump(&self.ctx.stats.counters.expect_failures);
                }
                self.received_since_mark = 0;
            }
            Step::Receive { data_ack, read_ack } => {
                self.data_ack = *data_ack;
                self.read_ack = *read_ack;
            }
            Step::Sleep(d) => {
                let until = Instant::now() + *d;
                self.pump_until(until).await;
            }
        }
    }

    async fn login(&mut self) {
        if self.session.is_some() {
            return;
        }
        let Some(s) = self.connect().await else {
            return;
        };
        self.attach(s);
    }

    /// Opens and logs in a connection; counts and times it.
    async fn connect(&mut self) -> Option<Session> {
        let ctx = self.ctx.clone();
        let slot = &ctx.plan.users[self.slot];
        let _permit = ctx.login_gate.acquire().await.ok()?;
        let start = self.now();
        ctx.first_login_start.fetch_min(start, Ordering::Relaxed);
        match ctx
            .dialer
            .login(&slot.name, &slot.password, slot.client_type)
            .await
        {
            Ok(s) => {
                bump(&ctx.stats.counters.logins);
                ctx.stats.login.record(self.now() - start);
                Some(s)
            }
            Err(e) => {
                bump(&ctx.stats.counters.login_failures);
                ctx.stats.error(format!("login {}: {e}", slot.name));
                None
            }
        }
    }

    fn attach(&mut self, s: Session) {
        let ctx = &self.ctx;
        if self.log.user_id == 0 {
            self.log.user_id = s.user_id;
            ctx.ids[self.slot].store(s.user_id, Ordering::Relaxed);
            if let Ok(mut servers) = ctx.servers.lock() {
                servers[self.slot] = s.server.clone();
            }
        }
        ctx.set_client(self.slot, Some(s.client.clone()));
        self.log.presence.online(self.now());
        self.session = Some(s);
        self.leaving = false;
    }

    /// Closes the connection without a logout.
    fn drop_session(&mut self) {
        if let Some(s) = self.session.take() {
            s.client.close();
            self.log.presence.offline(self.now());
            self.ctx.set_client(self.slot, None);
        }
        self.in_flight.clear();
    }

    async fn logout(&mut self) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        self.leaving = true;
        let client = s.client.clone();
        if let Err(e) = client.request(&ImLogoutReq {}).await {
            self.ctx.stats.error(format!("logout: {e}"));
        }
        self.drop_session();
    }

    /// Logs in a second connection of the same client type; the first must get IMKickUser.
    async fn kicked(&mut self, within: Duration) {
        let Some(mut old) = self.session.take() else {
            return;
        };
        let Some(new) = self.connect().await else {
            self.session = Some(old);
            return;
        };
        let logged_in = self.now();
        let deadline = Instant::now() + within;
        let mut kicked = false;
        while !kicked {
            let p = tokio::select! {
                p = old.events.recv() => p,
                () = tokio::time::sleep_until(deadline) => break,
            };
            let Some(p) = p else { break };
            if p.command_id() == cid::CID_LOGIN_KICK_USER {
                kicked = true;
                self.ctx.stats.kick.record(self.now() - logged_in);
            } else {
                // Deliveries still reach the old connection until the kick: keep them.
                self.overlap_until = u64::MAX;
                self.on_pdu(Some(p)).await;
            }
        }
        let c = &self.ctx.stats.counters;
        bump(if kicked { &c.kicks } else { &c.kicks_missed });
        old.client.close();
        self.in_flight.clear();
        self.overlap_until = self.now() + self.ctx.plan.window.as_micros() as u64;
        self.ctx.set_client(self.slot, Some(new.client.clone()));
        self.session = Some(new);
    }

    /// Peer, random user, or group id for a target; `None` when unknown (yet).
    async fn resolve(&mut self, to: &Target) -> Option<(bool, u32)> {
        let ctx = self.ctx.clone();
        match to {
            Target::Peer => {
                let id = ctx.id_of(ctx.peer_of(self.slot)?);
                (id != 0).then_some((false, id))
            }
            Target::Random => {
                let n = ctx.plan.len();
                if n < 2 {
                    return None;
                }
                for _ in 0..8 {
                    let p = rand::rng().random_range(0..n);
                    let id = ctx.id_of(p);
                    if p != self.slot && id != 0 {
                        return Some((false, id));
                    }
                }
                None
            }
            Target::Group(GroupRef::Own) => {
                match ctx.own_group[self.slot].load(Ordering::Relaxed) {
                    0 => None,
                    g => Some((true, g)),
                }
            }
            Target::Group(r) => {
                if let Some((_, g)) = self.resolved.iter().find(|(x, _)| x == r) {
                    return Some((true, *g));
                }
                let g = self.lookup_group(r).await?;
                self.resolved.push((r.clone(), g));
                Some((true, g))
            }
        }
    }

    /// Finds a group this user belongs to, by name or id, through the client protocol
    /// (normal group list, then group info), and records its members for verification.
    async fn lookup_group(&mut self, r: &GroupRef) -> Option<u32> {
        let client = self.session.as_ref()?.client.clone();
        let uid = self.log.user_id;
        let list = match client
            .request(&ImNormalGroupListReq {
                user_id: uid,
                attach_data: None,
            })
            .await
        {
            Ok(l) => l,
            Err(e) => {
                self.ctx.stats.error(format!("group list: {e}"));
                return None;
            }
        };
        let mut versions = list.group_version_list;
        for v in &mut versions {
            v.version = 0;
        }
        let info = match client
            .request(&ImGroupInfoListReq {
                user_id: uid,
                group_version_list: versions,
                attach_data: None,
            })
            .await
        {
            Ok(i) => i,
            Err(e) => {
                self.ctx.stats.error(format!("group info: {e}"));
                return None;
            }
        };
        let found = info.group_info_list.into_iter().find(|g| match r {
            GroupRef::Named(n) => &g.group_name == n,
            GroupRef::Id(id) => g.group_id == *id,
            GroupRef::Own => false,
        });
        let Some(g) = found else {
            self.ctx
                .stats
                .error(format!("user {uid} is in no group {r:?}"));
            return None;
        };
        if let Ok(mut groups) = self.ctx.groups.lock() {
            groups.insert(g.group_id, g.group_member_list.clone());
        }
        Some(g.group_id)
    }

    async fn send_step(&mut self, s: &SendStep) {
        let Some(tl) = self.timeline() else { return };
        let now = Instant::now();
        let mut deadline = self.deadline(tl.steady_end);
        if let Some(d) = s.duration {
            deadline = deadline.min(now + d);
        }
        let mut left = s.count.unwrap_or(u64::MAX);
        let window = self.ctx.plan.window;
        let mut next = match s.pace {
            // Spread the first sends so that users do not send in lockstep.
            Pace::Rate(r) if r > 0.0 => {
                now + Duration::from_secs_f64(rand::rng().random_range(0.0..1.0) / r)
            }
            _ => now,
        };
        while left > 0 && Instant::now() < deadline && !self.ctx.cancel.is_cancelled() {
            if let Pace::InFlight(k) = s.pace {
                self.expire_in_flight(window);
                if self.in_flight.len() >= k as usize && self.session.is_some() {
                    let until = (Instant::now() + Duration::from_millis(100)).min(deadline);
                    if let Wake::Pdu(p) = self.wait(until).await {
                        self.on_pdu(p).await;
                    }
                    continue;
                }
            } else {
                match self.wait(next.min(deadline)).await {
                    Wake::Pdu(p) => {
                        self.on_pdu(p).await;
                        continue;
                    }
                    Wake::Timer if Instant::now() >= deadline => break,
                    Wake::Timer => {}
                }
            }
            self.ctx.pace().await;
            self.send_one(&s.to, s.size).await;
            left -= 1;
            let now = Instant::now();
            next = match s.pace {
                Pace::Rate(r) if r > 0.0 => {
                    let n = next + Duration::from_secs_f64(1.0 / r);
                    // More than a second behind: the generator is saturated; do not burst.
                    if n + Duration::from_secs(1) < now {
                        now
                    } else {
                        n
                    }
                }
                Pace::Think(d) => now + d,
                _ => now,
            };
            if self.in_flight.len() > 4096 {
                self.expire_in_flight(window);
            }
        }
    }

    /// Forgets messages whose ack is overdue (they stay unacked in the log).
    fn expire_in_flight(&mut self, window: Duration) {
        let cutoff = self.now().saturating_sub(window.as_micros() as u64);
        while self.in_flight.front().is_some_and(|f| f.sent_us < cutoff) {
            self.in_flight.pop_front();
        }
    }

    async fn send_one(&mut self, to: &Target, size: usize) {
        let c = &self.ctx.stats.counters;
        if self.session.is_none() {
            bump(&c.skipped);
            return;
        }
        let Some((group, to)) = self.resolve(to).await else {
            bump(&self.ctx.stats.counters.skipped);
            return;
        };
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let ctx = &self.ctx;
        let key = StreamKey {
            sender: self.log.user_id,
            group,
            to,
        };
        let now = ctx.stats.now_us();
        let out = self.log.outbox.entry(key).or_default();
        let seq = out.next(now);
        Stamp {
            run: ctx.run_id,
            stream: key,
            seq,
            sent_us: now,
        }
        .write(size, &mut self.plain);
        let body = ctx.cipher.encrypt(&self.plain);
        let msg = ImMsgData {
            from_user_id: key.sender,
            to_session_id: to,
            msg_id: 0,
            create_time: unix_secs(),
            msg_type: if group {
                MsgType::GroupText
            } else {
                MsgType::SingleText
            } as i32,
            msg_data: Bytes::from(body.into_bytes()),
            attach_data: None,
        };
        match session.client.send(&msg).await {
            Ok(pdu_seq) => {
                bump(&ctx.stats.counters.sent);
                if ctx.stats.measured(now) {
                    bump(&ctx.stats.counters.sent_measured);
                }
                self.in_flight.push_back(InFlight {
                    pdu_seq,
                    key,
                    seq,
                    sent_us: now,
                });
            }
            Err(e) => ctx.stats.error(format!("send: {e}")),
        }
    }

    async fn p2p(&mut self, to: &Target, count: u64, think: Duration) {
        for _ in 0..count {
            if let (Some((false, peer)), Some(s)) = (self.resolve(to).await, self.session.as_ref())
            {
                let msg = Imp2pCmdMsg {
                    from_user_id: self.log.user_id,
                    to_user_id: peer,
                    cmd_msg_data: format!("sim:{:08x}:p2p", self.ctx.run_id),
                };
                match s.client.send(&msg).await {
                    Ok(_) => bump(&self.ctx.stats.counters.p2p_sent),
                    Err(e) => self.ctx.stats.error(format!("p2p: {e}")),
                }
            } else {
                bump(&self.ctx.stats.counters.skipped);
            }
            let until = Instant::now() + think;
            self.pump_until(until).await;
        }
    }

    async fn history(&mut self, with: &Target, count: u32) {
        let Some((group, id)) = self.resolve(with).await else {
            bump(&self.ctx.stats.counters.skipped);
            return;
        };
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let req = ImGetMsgListReq {
            user_id: self.log.user_id,
            session_type: if group {
                SessionType::Group
            } else {
                SessionType::Single
            } as i32,
            session_id: id,
            msg_id_begin: 0,
            msg_cnt: count,
            attach_data: None,
        };
        let start = self.now();
        match s.client.request(&req).await {
            Ok(_) => {
                bump(&self.ctx.stats.counters.history);
                self.ctx.stats.history.record(self.now() - start);
            }
            Err(e) => self.ctx.stats.error(format!("history: {e}")),
        }
    }

    /// Handles one unsolicited PDU (`None`: the connection ended).
    async fn on_pdu(&mut self, pdu: Option<Pdu>) {
        let Some(pdu) = pdu else {
            if !self.leaving {
                bump(&self.ctx.stats.counters.disconnects);
            }
            self.drop_session();
            return;
        };
        match pdu.command_id() {
            cid::CID_MSG_DATA => self.on_message(&pdu).await,
            cid::CID_MSG_DATA_ACK => self.on_ack(&pdu),
            cid::CID_SWITCH_P2P_CMD => {
                let run = format!("sim:{:08x}:", self.ctx.run_id);
                if pdu
                    .decode::<Imp2pCmdMsg>()
                    .is_ok_and(|m| m.cmd_msg_data.starts_with(&run))
                {
                    bump(&self.ctx.stats.counters.p2p_received);
                }
            }
            cid::CID_LOGIN_KICK_USER => self.leaving = true,
            _ => {}
        }
    }

    fn on_ack(&mut self, pdu: &Pdu) {
        let seq = pdu.seq_num();
        let Some(pos) = self.in_flight.iter().position(|f| f.pdu_seq == seq) else {
            return;
        };
        let Some(f) = self.in_flight.remove(pos) else {
            return;
        };
        if let Some(out) = self.log.outbox.get_mut(&f.key) {
            out.acked.insert(f.seq);
        }
        let stats = &self.ctx.stats;
        bump(&stats.counters.acked);
        if stats.measured(f.sent_us) {
            bump(&stats.counters.acked_measured);
            stats.ack.record(stats.now_us() - f.sent_us);
        }
    }

    async fn on_message(&mut self, pdu: &Pdu) {
        let now = self.now();
        let ctx = self.ctx.clone();
        let Ok(m) = pdu.decode::<ImMsgData>() else {
            ctx.stats.error("undecodable IMMsgData");
            return;
        };
        let group = matches!(
            MsgType::try_from(m.msg_type),
            Ok(MsgType::GroupText | MsgType::GroupAudio)
        );
        let stamp = ctx
            .cipher
            .decrypt(&m.msg_data)
            .ok()
            .and_then(|p| Stamp::parse(&p));
        match stamp {
            Some(st) if st.run == ctx.run_id => {
                let tolerate = now < self.overlap_until;
                let arrival = self
                    .log
                    .inbox
                    .entry(st.stream)
                    .or_default()
                    .record(st.seq, tolerate);
                if arrival == Arrival::New {
                    self.received_since_mark += 1;
                    bump(&ctx.stats.counters.delivered);
                    if ctx.stats.measured(st.sent_us) {
                        bump(&ctx.stats.counters.delivered_measured);
                        ctx.stats
                            .record_delivery(st.sent_us, now.saturating_sub(st.sent_us));
                    }
                }
            }
            _ => bump(&ctx.stats.counters.foreign),
        }
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let (session_id, session_type) = if group {
            (m.to_session_id, SessionType::Group)
        } else {
            (m.from_user_id, SessionType::Single)
        };
        if self.data_ack {
            let ack = ImMsgDataAck {
                user_id: self.log.user_id,
                session_id,
                msg_id: m.msg_id,
                session_type: session_type as i32,
            };
            let _ = s.client.send_pdu(&Pdu::from_msg(&ack, 0)).await;
        }
        if self.read_ack {
            let ack = ImMsgDataReadAck {
                user_id: self.log.user_id,
                session_id,
                msg_id: m.msg_id,
                session_type: session_type as i32,
            };
            let _ = s.client.send_pdu(&Pdu::from_msg(&ack, 0)).await;
        }
    }
}

fn unix_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
