//! Runs a [`Plan`]: one task per simulated user, a coordinator for the phases (and, for runs
//! whose users start together, pairing and groups once everyone is in), a progress line, and
//! the verdict at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_proto::base::GroupType;
use im_proto::client::ImClient;
use im_proto::crypto::MessageCipher;
use im_proto::group::ImGroupCreateReq;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::dial::Dialer;
use super::machine::{self, MachineLoad};
use super::plan::{GroupSetup, Pairing, Plan};
use super::progress::Progress;
use super::stats::Stats;
use super::user::SimUser;
use super::verify::{UserLog, Verdict, verify};

/// When the phases end, µs since the epoch (known once the ramp-up is over for runs whose
/// users start together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// Steps after the first begin (together runs) / the ramp-up ends.
    pub start: u64,
    /// Measuring starts (after the warm-up).
    pub measure_from: u64,
    /// Sends stop.
    pub steady_end: u64,
    /// Users leave.
    pub end: u64,
}

/// State shared by every user task.
#[derive(Debug)]
pub struct Ctx {
    /// The plan.
    pub plan: Plan,
    /// Run id written into every stamp.
    pub run_id: u32,
    /// Opens logged-in connections.
    pub dialer: Dialer,
    /// Counters and histograms.
    pub stats: Stats,
    /// The message cipher (stock clients' key unless configured).
    pub cipher: MessageCipher,
    /// User id of each slot once it logged in (0 before).
    pub ids: Vec<AtomicU32>,
    /// msg_server each slot was sent to at its first login.
    pub servers: Mutex<Vec<String>>,
    /// Peer slot + 1 of each slot (0: none yet).
    pub peers: Vec<AtomicU32>,
    /// Live connection of each slot (the coordinator creates groups through them).
    pub clients: Mutex<Vec<Option<ImClient>>>,
    /// Group members by group id, for verification.
    pub groups: Mutex<HashMap<u32, Vec<u32>>>,
    /// The run-made group of each slot (0: none).
    pub own_group: Vec<AtomicU32>,
    /// Logins in progress at once.
    pub login_gate: Semaphore,
    /// Slots that finished their first login attempt.
    pub arrived: AtomicUsize,
    /// Woken at each arrival.
    pub arrival: Notify,
    /// The phases, once known.
    pub timeline: watch::Receiver<Option<Timeline>>,
    /// Next free send slot of the global rate limit, ns since the epoch.
    pacer_next: AtomicU64,
    /// Set when the run is aborted (Ctrl-C).
    pub cancel: CancellationToken,
    /// Users whose log is in.
    pub finished: AtomicUsize,
    /// First login started / last first-login finished, µs (login storms).
    pub first_login_start: AtomicU64,
    /// See `first_login_start`.
    pub last_login_end: AtomicU64,
}

impl Ctx {
    /// Waits for a slot of the global rate limit, if there is one.
    pub async fn pace(&self) {
        let Some(rate) = self.plan.global_rate.filter(|r| *r > 0.0) else {
            return;
        };
        let interval = (1e9 / rate) as u64;
        let now = self.stats.epoch.elapsed().as_nanos() as u64;
        let prev = self
            .pacer_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.max(now) + interval)
            })
            .unwrap_or(now);
        let slot = prev.max(now);
        if slot > now {
            tokio::time::sleep(Duration::from_nanos(slot - now)).await;
        }
    }

    /// The user id of a slot, 0 while unknown.
    pub fn id_of(&self, slot: usize) -> u32 {
        self.ids.get(slot).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// The peer slot of a slot.
    pub fn peer_of(&self, slot: usize) -> Option<usize> {
        match self.peers.get(slot)?.load(Ordering::Relaxed) {
            0 => None,
            p => Some(p as usize - 1),
        }
    }

    /// Records a slot's first login attempt (the coordinator waits for all of them).
    pub fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::Relaxed);
        self.last_login_end
            .fetch_max(self.stats.now_us(), Ordering::Relaxed);
        self.arrival.notify_one();
    }

    /// Remembers a slot's live connection.
    pub fn set_client(&self, slot: usize, client: Option<ImClient>) {
        if let Ok(mut c) = self.clients.lock()
            && let Some(s) = c.get_mut(slot)
        {
            *s = client;
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Shared counters and histograms.
    pub ctx: Arc<Ctx>,
    /// Delivery matching.
    pub verdict: Verdict,
    /// The phases as they happened.
    pub timeline: Timeline,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// How busy the machine was over the measured window.
    pub machine: Option<MachineLoad>,
}

/// Options that are not part of the plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Show the live progress line.
    pub progress: bool,
    /// Message cipher key (32 bytes; empty = the stock clients' key).
    pub aes_key: String,
    /// Ends the run early when cancelled (idle workers: their parent closed stdin).
    pub stop: Option<CancellationToken>,
}

/// Runs the plan to its end.
pub async fn run(plan: Plan, dialer: Dialer, opts: &RunOptions) -> anyhow::Result<Outcome> {
    let cipher = if opts.aes_key.is_empty() {
        MessageCipher::default_key()
    } else {
        MessageCipher::new(opts.aes_key.as_bytes())?
    };
    let n = plan.len();
    let (tl_tx, tl_rx) = watch::channel(None);
    let neighbours = plan.pairing == Pairing::Neighbours;
    let ctx = Arc::new(Ctx {
        run_id: rand::random(),
        dialer,
        stats: Stats::new(),
        cipher,
        ids: (0..n).map(|_| AtomicU32::new(0)).collect(),
        servers: Mutex::new(vec![String::new(); n]),
        peers: (0..n)
            .map(|i| AtomicU32::new(if neighbours { neighbour(i, n) } else { 0 }))
            .collect(),
        clients: Mutex::new(vec![None; n]),
        groups: Mutex::new(HashMap::new()),
        own_group: (0..n).map(|_| AtomicU32::new(0)).collect(),
        login_gate: Semaphore::new(plan.login_concurrency.max(1)),
        arrived: AtomicUsize::new(0),
        arrival: Notify::new(),
        timeline: tl_rx,
        pacer_next: AtomicU64::new(0),
        cancel: CancellationToken::new(),
        finished: AtomicUsize::new(0),
        first_login_start: AtomicU64::new(u64::MAX),
        last_login_end: AtomicU64::new(0),
        plan,
    });
    let progress = Progress::start(ctx.clone(), opts.progress);
    {
        let ctx = ctx.clone();
        let stop = opts.stop.clone().unwrap_or_default();
        tokio::spawn(async move {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_ok() { ctx.cancel.cancel() },
                () = stop.cancelled() => ctx.cancel.cancel(),
            }
        });
    }
    let ramp = ctx.plan.phases.ramp_per_sec;
    let mut tasks = Vec::with_capacity(n);
    for slot in 0..n {
        let ctx = ctx.clone();
        let delay = if ramp > 0.0 {
            Duration::from_secs_f64(slot as f64 / ramp)
        } else {
            Duration::ZERO
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            SimUser::new(ctx, slot).run().await
        }));
    }
    let timeline = coordinate(&ctx, &tl_tx).await;
    // Ends the machine's sampling early when the run is cancelled or every user has ended.
    let users_done = ctx.cancel.child_token();
    let machine = {
        let (ctx, stop) = (ctx.clone(), users_done.clone());
        tokio::spawn(async move { measure_machine(timeline, || ctx.stats.now_us(), stop).await })
    };
    let mut logs = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok(log) => logs.push(log),
            Err(e) => {
                ctx.stats.error(format!("a user task failed: {e}"));
                logs.push(UserLog::default());
            }
        }
    }
    users_done.cancel();
    progress.stop().await;
    let groups = ctx.groups.lock().map(|g| g.clone()).unwrap_or_default();
    let verdict = verify(
        &logs,
        &groups,
        ctx.plan.settle.as_micros() as u64,
        ctx.plan.window.as_micros() as u64,
    );
    let elapsed = ctx.stats.epoch.elapsed();
    let machine = machine.await.ok().flatten();
    Ok(Outcome {
        ctx,
        verdict,
        timeline,
        elapsed,
        machine,
    })
}

/// The machine's CPU load over the measured window (`now_us` is the run's clock), or up to
/// `stop` if that comes first (a cancelled run, or one whose users all ended early does not
/// wait for the window's end); `None` for a run without a window, one stopped before its
/// window began, or where `/proc` cannot be read.
async fn measure_machine(
    t: Timeline,
    now_us: impl Fn() -> u64,
    stop: CancellationToken,
) -> Option<MachineLoad> {
    if t.steady_end <= t.measure_from {
        return None;
    }
    let until = |us: u64| Duration::from_micros(us.saturating_sub(now_us()));
    tokio::select! {
        () = tokio::time::sleep(until(t.measure_from)) => {}
        () = stop.cancelled() => return None,
    }
    let first = machine::sample()?;
    tokio::select! {
        () = tokio::time::sleep(until(t.steady_end)) => {}
        () = stop.cancelled() => {}
    }
    machine::between(first, machine::sample()?, machine::cores())
}

/// Peer + 1 of slot `i` among `n` in neighbour pairing: 0-1, 2-3, ...; an odd last one talks
/// to slot 0.
fn neighbour(i: usize, n: usize) -> u32 {
    if n < 2 {
        return 0;
    }
    let p = if i ^ 1 < n { i ^ 1 } else { 0 };
    p as u32 + 1
}

/// Decides the timeline: at once for ramped runs, after every first login for together runs
/// (then pairs and groups are made first).
async fn coordinate(ctx: &Arc<Ctx>, tl: &watch::Sender<Option<Timeline>>) -> Timeline {
    let p = &ctx.plan.phases;
    let n = ctx.plan.len();
    let start = if p.together {
        loop {
            let notified = ctx.arrival.notified();
            if ctx.arrived.load(Ordering::Relaxed) >= n || ctx.cancel.is_cancelled() {
                break;
            }
            notified.await;
        }
        if ctx.plan.pairing == Pairing::CrossServer {
            pair_across_servers(ctx);
        }
        if let GroupSetup::Temporary { size } = ctx.plan.groups {
            make_groups(ctx, size).await;
        }
        // Everyone is in; give route_server the settle time to learn the last logins, so
        // that no message of the run is sent before its receiver counts as online.
        tokio::time::sleep(ctx.plan.settle).await;
        ctx.stats.now_us()
    } else if p.ramp_per_sec > 0.0 {
        (n as f64 / p.ramp_per_sec * 1e6) as u64
    } else {
        0
    };
    let us = |d: Duration| d.as_micros() as u64;
    let timeline = Timeline {
        start,
        measure_from: start + us(p.warmup),
        steady_end: start + us(p.warmup) + us(p.steady),
        end: start + us(p.warmup) + us(p.steady) + us(p.cool_down),
    };
    ctx.stats
        .set_window(timeline.measure_from, timeline.steady_end);
    let _ = tl.send(Some(timeline));
    timeline
}

/// Pairs users on different msg_servers first, then the rest among themselves.
fn pair_across_servers(ctx: &Ctx) {
    let servers = ctx.servers.lock().map(|s| s.clone()).unwrap_or_default();
    let mut by_server: HashMap<&str, Vec<usize>> = HashMap::new();
    for (slot, s) in servers.iter().enumerate() {
        if ctx.id_of(slot) != 0 {
            by_server.entry(s.as_str()).or_default().push(slot);
        }
    }
    let mut lists: Vec<Vec<usize>> = by_server.into_values().collect();
    lists.sort_by_key(|l| std::cmp::Reverse(l.len()));
    let mut pairs = Vec::new();
    // Take one user from each of the two fullest servers until at most one server is left.
    loop {
        lists.sort_by_key(|l| std::cmp::Reverse(l.len()));
        if lists.len() < 2 || lists[1].is_empty() {
            break;
        }
        if let (Some(a), Some(b)) = (lists[0].pop(), lists[1].pop()) {
            pairs.push((a, b));
        }
    }
    let rest: Vec<usize> = lists.into_iter().flatten().collect();
    for c in rest.chunks(2) {
        if let [a, b] = c {
            pairs.push((*a, *b));
        }
    }
    for (a, b) in pairs {
        ctx.peers[a].store(b as u32 + 1, Ordering::Relaxed);
        ctx.peers[b].store(a as u32 + 1, Ordering::Relaxed);
    }
}

/// Creates one temporary group per `size` users (in slot order), through the client
/// protocol, by the group's first logged-in member.
async fn make_groups(ctx: &Ctx, size: usize) {
    let n = ctx.plan.len();
    let clients = ctx.clients.lock().map(|c| c.clone()).unwrap_or_default();
    for (k, chunk) in (0..n).collect::<Vec<_>>().chunks(size.max(2)).enumerate() {
        let members: Vec<(usize, u32)> = chunk
            .iter()
            .map(|&s| (s, ctx.id_of(s)))
            .filter(|(_, id)| *id != 0)
            .collect();
        let Some(&(creator, creator_id)) = members.first() else {
            continue;
        };
        let Some(client) = clients.get(creator).cloned().flatten() else {
            continue;
        };
        let req = ImGroupCreateReq {
            user_id: creator_id,
            group_type: GroupType::Tmp as i32,
            group_name: format!("sim-{:08x}-{k}", ctx.run_id),
            group_avatar: String::new(),
            member_id_list: members.iter().map(|m| m.1).collect(),
            attach_data: None,
        };
        match client.request(&req).await {
            Ok(rsp) if rsp.result_code == 0 && rsp.group_id.unwrap_or(0) != 0 => {
                let gid = rsp.group_id.unwrap_or(0);
                let mut ids: Vec<u32> = rsp.user_id_list.clone();
                if ids.is_empty() {
                    ids = members.iter().map(|m| m.1).collect();
                }
                if let Ok(mut g) = ctx.groups.lock() {
                    g.insert(gid, ids);
                }
                for (slot, _) in &members {
                    ctx.own_group[*slot].store(gid, Ordering::Relaxed);
                }
            }
            Ok(rsp) => ctx.stats.error(format!(
                "creating group {k}: result {} (group id {:?})",
                rsp.result_code, rsp.group_id
            )),
            Err(e) => ctx.stats.error(format!("creating group {k}: {e}")),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn window(from_s: u64, to_s: u64) -> Timeline {
        Timeline {
            start: 0,
            measure_from: from_s * 1_000_000,
            steady_end: to_s * 1_000_000,
            end: to_s * 1_000_000,
        }
    }

    /// A stop inside the window ends the sampling there, with a result, instead of waiting
    /// for the window's end.
    #[tokio::test]
    async fn a_stop_inside_the_window_ends_the_sample() {
        let epoch = std::time::Instant::now();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            // Past a clock tick (10 ms), so that the two samples differ.
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.cancel();
        });
        let load = tokio::time::timeout(
            Duration::from_secs(10),
            measure_machine(window(0, 3600), || epoch.elapsed().as_micros() as u64, stop),
        )
        .await
        .expect("the stop ended the sampling");
        let load = load.expect("a sample over the 100 ms before the stop");
        assert!((0.0..=100.0).contains(&load.cpu_busy_pct), "{load:?}");
    }

    /// A stop before the window begins gives no figure; so does a run without a window.
    #[tokio::test]
    async fn no_figure_without_a_window() {
        let epoch = std::time::Instant::now();
        let now = || epoch.elapsed().as_micros() as u64;
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(measure_machine(window(3600, 7200), now, stop).await, None);
        let stop = CancellationToken::new();
        assert_eq!(measure_machine(window(5, 5), now, stop).await, None);
    }
}
