//! One fake user: sends tagged messages to its peer at a steady rate (well below msg_server's
//! per-connection limit), records every ack and every delivery, answers deliveries with a
//! data ack, and when its connection drops reconnects through login_server (as a stock client
//! does) and reads the conversation's history to catch up on what it missed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_proto::base::SessionType;
use im_proto::crypto::MessageCipher;
use im_proto::message::{ImMsgData, ImMsgDataAck};
use im_proto::{Pdu, cid};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::session::{Session, history, login_via};
use crate::stamp::Stamp;

/// What the users are asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Send and receive.
    Send,
    /// Receive only (the end of a run: let the last messages arrive).
    Quiet,
    /// Read the conversation's storage (the pair's first user) and stop.
    Stop,
}

/// Pause between failed reconnect attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// How long a user may try to reconnect for its final storage read.
const FINAL_RECONNECT: Duration = Duration::from_secs(20);

/// One message a user sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// When it was queued.
    pub at: Instant,
    /// msg_id and arrival time of its ack.
    pub ack: Option<(u32, Instant)>,
}

/// Everything one user saw; shared with the load so progress can be watched.
#[derive(Debug, Default)]
pub struct UserLog {
    /// Login name.
    pub name: String,
    /// User id.
    pub user_id: u32,
    /// The peer's user id.
    pub peer: u32,
    /// Messages sent, indexed by their seq.
    pub sent: Vec<Sent>,
    /// Live deliveries to this user by (sender, seq): how many copies arrived.
    pub live: HashMap<(u32, u32), u32>,
    /// Messages to this user found in the history read after a reconnect.
    pub synced: HashSet<(u32, u32)>,
    /// The conversation as stored, read at the end (the pair's first user only): stamp and
    /// msg_id of every row.
    pub storage: Option<Vec<(Stamp, u32)>>,
    /// History rows whose body carried no stamp of this run.
    pub foreign_rows: usize,
    /// When the connection dropped, and how long until logged in again.
    pub outages: Vec<(Instant, Option<Duration>)>,
    /// msg_server addresses logged in at, in order.
    pub servers: Vec<String>,
    /// True while logged in.
    pub online: bool,
    /// Problems worth showing when a test fails.
    pub errors: Vec<String>,
}

/// What every user task shares.
#[derive(Debug)]
pub struct Ctx {
    /// login_server's `GET /msg_server` URL.
    pub login_url: String,
    /// The message cipher (stock clients' key).
    pub cipher: MessageCipher,
    /// This run's id.
    pub run: u32,
    /// Messages per second per user.
    pub rate: f64,
    /// Plain text size.
    pub size: usize,
}

/// The task of one user; `reader` users read the conversation's storage at the end.
pub async fn run(
    ctx: Arc<Ctx>,
    log: Arc<Mutex<UserLog>>,
    mut session: Option<Session>,
    mut phase: watch::Receiver<Phase>,
    reader: bool,
) {
    let (name, me, peer) = {
        let l = lock(&log);
        (l.name.clone(), l.user_id, l.peer)
    };
    let mut in_flight: HashMap<u16, u32> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / ctx.rate.max(0.001));
    // A random start spreads the users' sends over the interval.
    let mut next_send = Instant::now() + interval.mul_f64(rand::random::<f64>());
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Stop {
            break;
        }
        let Some(s) = session.as_mut() else {
            let Some(s) = reconnect(&ctx, &name, &mut phase, None).await else {
                break;
            };
            in_flight.clear();
            note_login(&log, &s);
            sync(&ctx, &log, &s, me, peer).await;
            session = Some(s);
            continue;
        };
        let sending = now_phase == Phase::Send;
        tokio::select! {
            pdu = s.events.recv() => match pdu {
                Some(pdu) => on_pdu(&ctx, &log, s, &mut in_flight, me, pdu).await,
                None => {
                    in_flight.clear();
                    let mut l = lock(&log);
                    l.online = false;
                    l.outages.push((Instant::now(), None));
                    drop(l);
                    session = None;
                }
            },
            () = tokio::time::sleep_until(next_send), if sending => {
                send_one(&ctx, &log, s, &mut in_flight, me, peer).await;
                next_send += interval;
                let now = Instant::now();
                // More than a second behind (a stall): do not burst to catch up.
                if next_send + Duration::from_secs(1) < now {
                    next_send = now;
                }
            }
            r = phase.changed() => if r.is_err() { break },
        }
    }
    if reader {
        if session.is_none() {
            session = reconnect(&ctx, &name, &mut phase, Some(FINAL_RECONNECT)).await;
        }
        match session.as_ref() {
            Some(s) => read_storage(&ctx, &log, s, peer).await,
            None => lock(&log)
                .errors
                .push("no session for the final storage read".into()),
        }
    }
    if let Some(s) = session {
        s.client.close();
    }
    lock(&log).online = false;
}

/// Locks a log (a poisoned lock still holds usable data).
pub fn lock(log: &Mutex<UserLog>) -> std::sync::MutexGuard<'_, UserLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_login(log: &Mutex<UserLog>, s: &Session) {
    let mut l = lock(log);
    l.online = true;
    l.servers.push(s.addr.clone());
    if let Some((at, took @ None)) = l.outages.last_mut() {
        *took = Some(at.elapsed());
    }
}

/// Logs in again through login_server until it works, the run stops, or `limit` passes.
async fn reconnect(
    ctx: &Ctx,
    name: &str,
    phase: &mut watch::Receiver<Phase>,
    limit: Option<Duration>,
) -> Option<Session> {
    let start = Instant::now();
    loop {
        if limit.is_none() && *phase.borrow() == Phase::Stop {
            return None;
        }
        if limit.is_some_and(|l| start.elapsed() > l) {
            return None;
        }
        match login_via(&ctx.login_url, name).await {
            Ok(s) => return Some(s),
            Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
        }
    }
}

async fn send_one(
    ctx: &Ctx,
    log: &Mutex<UserLog>,
    s: &Session,
    in_flight: &mut HashMap<u16, u32>,
    me: u32,
    peer: u32,
) {
    let seq = lock(log).sent.len() as u32;
    let stamp = Stamp {
        run: ctx.run,
        from: me,
        to: peer,
        seq,
    };
    let msg = stamp.message(&ctx.cipher, ctx.size, false);
    // An error means the connection is going away; the events stream will say so.
    if let Ok(pdu_seq) = s.client.send(&msg).await {
        in_flight.insert(pdu_seq, seq);
        lock(log).sent.push(Sent {
            at: Instant::now(),
            ack: None,
        });
    }
}

async fn on_pdu(
    ctx: &Ctx,
    log: &Mutex<UserLog>,
    s: &Session,
    in_flight: &mut HashMap<u16, u32>,
    me: u32,
    pdu: Pdu,
) {
    match pdu.command_id() {
        cid::CID_MSG_DATA_ACK => {
            let Some(seq) = in_flight.remove(&pdu.seq_num()) else {
                return;
            };
            let mut l = lock(log);
            match pdu.decode::<ImMsgDataAck>() {
                Ok(ack) => {
                    if let Some(sent) = l.sent.get_mut(seq as usize) {
                        sent.ack = Some((ack.msg_id, Instant::now()));
                    }
                }
                Err(e) => l.errors.push(format!("undecodable ack: {e}")),
            }
        }
        cid::CID_MSG_DATA => {
            let Ok(m) = pdu.decode::<ImMsgData>() else {
                lock(log).errors.push("undecodable IMMsgData".into());
                return;
            };
            if let Some(st) = Stamp::of_body(&ctx.cipher, &m.msg_data)
                && st.run == ctx.run
                && st.to == me
            {
                *lock(log).live.entry((st.from, st.seq)).or_insert(0) += 1;
            }
            // What a stock client answers to every delivery.
            let ack = ImMsgDataAck {
                user_id: me,
                session_id: m.from_user_id,
                msg_id: m.msg_id,
                session_type: SessionType::Single as i32,
            };
            let _ = s.client.send_pdu(&Pdu::from_msg(&ack, 0)).await;
        }
        _ => {}
    }
}

/// After a reconnect: what the conversation holds for this user counts as delivered.
async fn sync(ctx: &Ctx, log: &Mutex<UserLog>, s: &Session, me: u32, peer: u32) {
    match history(&s.client, peer, false).await {
        Ok(rows) => {
            let mut l = lock(log);
            for r in rows {
                if let Some(st) = Stamp::of_body(&ctx.cipher, &r.msg_data)
                    && st.run == ctx.run
                    && st.to == me
                {
                    l.synced.insert((st.from, st.seq));
                }
            }
        }
        Err(e) => lock(log)
            .errors
            .push(format!("sync after reconnect: {e:#}")),
    }
}

async fn read_storage(ctx: &Ctx, log: &Mutex<UserLog>, s: &Session, peer: u32) {
    match history(&s.client, peer, false).await {
        Ok(rows) => {
            let mut stored = Vec::with_capacity(rows.len());
            let mut foreign = 0;
            for r in rows {
                match Stamp::of_body(&ctx.cipher, &r.msg_data) {
                    Some(st) if st.run == ctx.run => stored.push((st, r.msg_id)),
                    _ => foreign += 1,
                }
            }
            let mut l = lock(log);
            l.storage = Some(stored);
            l.foreign_rows = foreign;
        }
        Err(e) => lock(log).errors.push(format!("final storage read: {e:#}")),
    }
}
