//! One poller task per server: a persistent admin connection, a stats request every interval,
//! the answer (or the failure) sent to the loop over a channel. A server that stops answering
//! is reconnected with backoff, so it comes back on the screen by itself.
//!
//! Each poller also publishes its current connection on a `watch` channel, so that drill-down
//! requests (connection list, locate, kick) reuse it instead of dialling again.

use std::time::{Duration, Instant};

use anyhow::Context;
use im_proto::admin::{AdminResult, ImAdminMsgServerListReq, ImAdminStatsReq};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::state::{Endpoint, Kind, PollUpdate, Polled};
use crate::admin::{ADMIN_TIMEOUT, AdminClient, check};

/// First wait before dialling a server that failed again; doubles up to [`BACKOFF_MAX`].
/// Short, because a restarted server usually answers at once.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between two dials of a server that is down: how late top may notice that it
/// came back.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Answers waiting for the loop; pollers wait (and skip ticks) when the loop is this far behind.
const CHANNEL_DEPTH: usize = 256;

/// The running pollers. Dropping this stops them (their tasks are aborted).
#[derive(Debug)]
pub struct Pollers {
    /// Every answer and failure, tagged with the server's index.
    pub updates: mpsc::Receiver<PollUpdate>,
    /// The current admin connection of each server (`None` while it is down).
    pub clients: Vec<watch::Receiver<Option<AdminClient>>>,
    _tasks: JoinSet<()>,
}

impl Pollers {
    /// The connection of server `index`, if it is up.
    pub fn client(&self, index: usize) -> Option<AdminClient> {
        self.clients.get(index).and_then(|c| c.borrow().clone())
    }
}

/// Starts one poller per endpoint (index = position in `endpoints`).
pub fn spawn(endpoints: &[Endpoint], token: &str, interval: Duration) -> Pollers {
    let (tx, updates) = mpsc::channel(CHANNEL_DEPTH);
    let mut tasks = JoinSet::new();
    let mut clients = Vec::with_capacity(endpoints.len());
    for (index, e) in endpoints.iter().enumerate() {
        let (client_tx, client_rx) = watch::channel(None);
        clients.push(client_rx);
        let poller = Poller {
            index,
            endpoint: e.clone(),
            token: token.to_owned(),
            interval,
            updates: tx.clone(),
            client: client_tx,
        };
        tasks.spawn(poller.run());
    }
    Pollers {
        updates,
        clients,
        _tasks: tasks,
    }
}

struct Poller {
    index: usize,
    endpoint: Endpoint,
    token: String,
    interval: Duration,
    updates: mpsc::Sender<PollUpdate>,
    client: watch::Sender<Option<AdminClient>>,
}

impl Poller {
    async fn run(self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = BACKOFF_MIN;
        let mut next_dial = tokio::time::Instant::now();
        let mut conn: Option<AdminClient> = None;
        loop {
            ticker.tick().await;
            let c = match &conn {
                Some(c) => c.clone(),
                None if tokio::time::Instant::now() < next_dial => continue,
                None => match connect(&self.endpoint, &self.token).await {
                    Ok(c) => {
                        self.client.send_replace(Some(c.clone()));
                        conn = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        next_dial = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        if !self.report(Err(format!("{e:#}"))).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let timeout = poll_timeout(self.interval);
            let result = match tokio::time::timeout(timeout, sample(&c, self.endpoint.kind)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("no answer within {timeout:?}")),
            };
            match result {
                Ok(p) => {
                    backoff = BACKOFF_MIN;
                    if !self.report(Ok(Box::new(p))).await {
                        return;
                    }
                }
                Err(e) => {
                    // Dial again at the next tick: a restarted server answers at once; the
                    // backoff only grows while dialling keeps failing.
                    c.close();
                    conn = None;
                    self.client.send_replace(None);
                    if !self.report(Err(format!("{e:#}"))).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends a report; false when the loop has gone.
    async fn report(&self, result: Result<Box<Polled>, String>) -> bool {
        let u = PollUpdate {
            index: self.index,
            at: Instant::now(),
            result,
        };
        self.updates.send(u).await.is_ok()
    }
}

/// How long one poll may take before the server counts as down: two intervals, at least
/// two seconds (a loaded server is slow, not down), at most the admin timeout.
pub fn poll_timeout(interval: Duration) -> Duration {
    (interval * 2).clamp(Duration::from_secs(2), ADMIN_TIMEOUT)
}

/// Dials and authenticates.
pub async fn connect(e: &Endpoint, token: &str) -> anyhow::Result<AdminClient> {
    let c = AdminClient::connect(&e.admin_addr, token).await?;
    if !c.kind.is_empty() && c.kind != e.kind.name() {
        c.close();
        anyhow::bail!(
            "{} is a {}, not a {} (check the [admin] section of the imctl config)",
            e.admin_addr,
            c.kind,
            e.kind.name()
        );
    }
    Ok(c)
}

/// One poll: the stats, and for a login_server its msg_server table.
pub async fn sample(c: &AdminClient, kind: Kind) -> anyhow::Result<Polled> {
    let rsp = c.call(&ImAdminStatsReq {}).await?;
    check(rsp.result_code(), None, "stats")?;
    let stats = rsp
        .stats
        .with_context(|| format!("{} answered stats without stats", c.addr))?;
    let msg_servers = if kind == Kind::LoginServer {
        let list = c.call(&ImAdminMsgServerListReq {}).await?;
        (list.result_code() == AdminResult::AdminOk).then_some(list)
    } else {
        None
    };
    Ok(Polled {
        name: c.name.clone(),
        stats,
        msg_servers,
    })
}
