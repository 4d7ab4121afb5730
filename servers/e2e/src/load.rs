//! A load of fake users in pairs: each user sends to its peer at a steady rate, every message
//! is tagged, acked, delivered and checked (see [`crate::verify`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::base::ClientType;
use im_proto::crypto::MessageCipher;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::session::{Session, login_at};
use crate::suite::Suite;
use crate::suite::config::user_name;
use crate::user::{self, Ctx, Phase, UserLog, lock};
use crate::verify::{Verdict, verify};

/// Where each pair starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The two users of a pair on different msg_servers (every message is routed).
    Split,
    /// Every combination: both on the first, both on the second, and split both ways.
    Mixed,
}

/// The shape of a load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Conversations; two users each.
    pub pairs: usize,
    /// Messages per second each user sends (msg_server allows 100 per connection).
    pub rate: f64,
    /// Plain text bytes per message.
    pub size: usize,
    /// Initial msg_servers.
    pub placement: Placement,
    /// Index of the first seeded user the load uses (the ones before are left for group
    /// checks).
    pub first_user: usize,
}

impl LoadSpec {
    /// `pairs` conversations at `rate` messages per second per user.
    pub fn new(pairs: usize, rate: f64) -> Self {
        LoadSpec {
            pairs,
            rate,
            size: 64,
            placement: Placement::Mixed,
            first_user: crate::suite::config::SMALL_GROUP_SIZE,
        }
    }

    /// The same with another placement.
    pub fn placed(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Seeded users needed.
    pub fn users_needed(&self) -> usize {
        self.first_user + 2 * self.pairs
    }

    /// "40 users x 10 msg/s": for the summary.
    pub fn describe(&self) -> String {
        format!(
            "{} users ({} pairs) x {} msg/s = {} msg/s",
            2 * self.pairs,
            self.pairs,
            self.rate,
            (2.0 * self.pairs as f64 * self.rate).round()
        )
    }
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    spec: LoadSpec,
    logs: Vec<Arc<Mutex<UserLog>>>,
    tasks: JoinSet<()>,
    phase: watch::Sender<Phase>,
}

/// How long [`Load::quiesce`] waits for the ack of a message (msg_server's store timeout is
/// 5 s per attempt; a store that fails gets no ack at all, Decisions 4).
pub const ACK_WAIT: Duration = Duration::from_secs(6);

/// Most that the last acks and deliveries may take after sending stops.
pub const SETTLE_MAX: Duration = Duration::from_secs(15);

impl Load {
    /// Logs every user in at its initial msg_server and starts sending.
    pub async fn start(suite: &Suite, spec: LoadSpec) -> anyhow::Result<Load> {
        if suite.user_count() < spec.users_needed() {
            bail!(
                "the load needs {} users, the suite has {}",
                spec.users_needed(),
                suite.user_count()
            );
        }
        let servers = suite.msg_server_count().max(1);
        let mut logins = JoinSet::new();
        for k in 0..2 * spec.pairs {
            let pair = k / 2;
            let ms = match (spec.placement, k % 2) {
                (Placement::Split, i) => i % servers,
                (Placement::Mixed, 0) => pair % servers,
                (Placement::Mixed, _) => (pair / 2) % servers,
            };
            let addr = suite.msg_addr(ms)?;
            let name = user_name(spec.first_user + k);
            logins.spawn(async move {
                let s = login_at(&addr, &name, ClientType::Windows).await;
                (k, name, s)
            });
        }
        let mut sessions: Vec<Option<(String, Session)>> =
            (0..2 * spec.pairs).map(|_| None).collect();
        while let Some(r) = logins.join_next().await {
            let (k, name, s) = r.context("login task")?;
            sessions[k] = Some((name, s?));
        }
        let ctx = Arc::new(Ctx {
            login_url: suite.login_url().to_owned(),
            cipher: MessageCipher::default_key(),
            run: rand::random(),
            rate: spec.rate,
            size: spec.size,
        });
        let ids: Vec<u32> = sessions
            .iter()
            .map(|s| s.as_ref().map_or(0, |(_, s)| s.user_id))
            .collect();
        let (phase, _) = watch::channel(Phase::Send);
        let mut load = Load {
            spec,
            logs: Vec::new(),
            tasks: JoinSet::new(),
            phase,
        };
        for (k, slot) in sessions.into_iter().enumerate() {
            let (name, s) = slot.context("a login did not finish")?;
            let peer = ids[k ^ 1];
            let log = Arc::new(Mutex::new(UserLog {
                name,
                user_id: s.user_id,
                peer,
                online: true,
                servers: vec![s.addr.clone()],
                ..UserLog::default()
            }));
            load.logs.push(log.clone());
            load.tasks.spawn(user::run(
                ctx.clone(),
                log,
                Some(s),
                load.phase.subscribe(),
                k % 2 == 0,
            ));
        }
        Ok(load)
    }

    /// The load's description for the summary.
    pub fn describe(&self) -> String {
        self.spec.describe()
    }

    /// (sent, acked) so far.
    pub fn progress(&self) -> (u64, u64) {
        let mut sent = 0;
        let mut acked = 0;
        for l in &self.logs {
            let l = lock(l);
            sent += l.sent.len() as u64;
            acked += l.sent.iter().filter(|s| s.ack.is_some()).count() as u64;
        }
        (sent, acked)
    }

    /// Users logged in right now.
    pub fn online(&self) -> usize {
        self.logs.iter().filter(|l| lock(l).online).count()
    }

    /// Waits until every user is logged in again (after a fault), up to `timeout`.
    pub async fn wait_all_online(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while self.online() < self.logs.len() {
            if start.elapsed() > timeout {
                bail!(
                    "{} of {} users logged in after {timeout:?}",
                    self.online(),
                    self.logs.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(start.elapsed())
    }

    /// Acked messages whose online receiver has not got them yet, plus recent sends without
    /// an ack.
    fn outstanding(&self) -> usize {
        let logs: Vec<_> = self.logs.iter().map(|l| lock(l)).collect();
        let mut n = 0;
        for l in &logs {
            // A message without an ack after this long failed (a stock client shows "send
            // failed"); waiting longer only slows the test down.
            n += l
                .sent
                .iter()
                .rev()
                .take_while(|s| s.at.elapsed() < ACK_WAIT)
                .filter(|s| s.ack.is_none())
                .count();
            let Some(r) = logs.iter().find(|r| r.user_id == l.peer) else {
                continue;
            };
            if !r.online {
                continue;
            }
            n += l
                .sent
                .iter()
                .enumerate()
                .filter(|(seq, s)| {
                    let key = (l.user_id, *seq as u32);
                    s.ack.is_some() && !r.live.contains_key(&key) && !r.synced.contains(&key)
                })
                .count();
        }
        n
    }

    /// Stops sending and waits (up to [`SETTLE_MAX`]) until every ack and every delivery
    /// to an online receiver has arrived; returns how long that took.
    pub async fn quiesce(&self) -> Duration {
        let _ = self.phase.send(Phase::Quiet);
        let start = Instant::now();
        while start.elapsed() < SETTLE_MAX && self.outstanding() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Late duplicates would show up now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        start.elapsed()
    }

    /// Stops the users (the first of each pair reads the conversation's storage) and judges
    /// the run; with `window`, only messages acked within it count toward delivery.
    pub async fn finish(mut self, window: Option<(Instant, Instant)>) -> anyhow::Result<Outcome> {
        let _ = self.phase.send(Phase::Stop);
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(r) = tokio::time::timeout_at(deadline, self.tasks.join_next())
            .await
            .context("user tasks did not stop within 60 s")?
        {
            r.context("a user task failed")?;
        }
        let logs: Vec<UserLog> = self
            .logs
            .iter()
            .map(|l| std::mem::take(&mut *lock(l)))
            .collect();
        let refs: Vec<&UserLog> = logs.iter().collect();
        let all = verify(&refs, None);
        let windowed = window.map(|w| verify(&refs, Some(w)));
        Ok(Outcome {
            all,
            windowed,
            logs,
        })
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// Every message.
    pub all: Verdict,
    /// Messages acked within the window given to [`Load::finish`].
    pub windowed: Option<Verdict>,
    /// What each user saw.
    pub logs: Vec<UserLog>,
}

impl Outcome {
    /// The verdict over messages acked within `window`.
    pub fn window(&self, window: (Instant, Instant)) -> Verdict {
        let refs: Vec<&UserLog> = self.logs.iter().collect();
        verify(&refs, Some(window))
    }

    /// Reconnects of users whose connection dropped: (outages, slowest, median).
    pub fn reconnects(&self) -> (usize, Option<Duration>, Option<Duration>) {
        let refs: Vec<&UserLog> = self.logs.iter().collect();
        crate::verify::reconnects(&refs)
    }

    /// Every user's recorded problems.
    pub fn errors(&self) -> Vec<String> {
        self.logs
            .iter()
            .flat_map(|l| l.errors.iter().map(move |e| format!("{}: {e}", l.name)))
            .collect()
    }

    /// Panics with the details unless the run is clean (see [`Verdict::is_clean`]).
    pub fn assert_clean(&self, what: &str) {
        for v in std::iter::once(&self.all).chain(self.windowed.as_ref()) {
            assert!(
                v.is_clean(),
                "{what}: {v:?}\nuser errors: {:?}",
                self.errors()
            );
        }
        assert!(
            self.all.acked > 0,
            "{what}: nothing was acked: {:?}",
            self.errors()
        );
    }
}
