//! Background upkeep: the group-session sync (STORAGE.md 4.6, FLOWS.md 8) and the login
//! throttle's sweep.
//!
//! Group messages touch only the sender's recent session when they are stored; every few
//! seconds this task lets the store set each member's group session to the group's last
//! chat time (creating missing ones), which is how group chats come up in the members'
//! recent-session lists. The watermark starts at 0 (one full pass after start, which the
//! original meant to do; its start-up logic is inverted, WEAKNESSES 32) and then follows what
//! the store returns.

use std::time::{Duration, Instant};

use im_common::CancellationToken;
use im_storage::{Store, Timestamp};

use crate::server::Shared;

/// How often the throttle table is swept when the sync is off.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs until `stop`.
pub async fn run<S: Store>(sh: &Shared<S>, sync_every: Option<Duration>, stop: CancellationToken) {
    let tick_every = sync_every.unwrap_or(SWEEP_EVERY);
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watermark: Timestamp = 0;
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        if sync_every.is_some() {
            let run = sh.store.sync_group_sessions(watermark);
            // A sync in progress is allowed to finish on shutdown; it is one short transaction.
            match run.await {
                Ok(next) => watermark = next,
                Err(e) => {
                    sh.metrics.sync_errors.inc();
                    tracing::warn!(watermark, error = %e, "group-session sync failed; retrying next round");
                }
            }
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            sh.throttle.sweep(last_sweep);
        }
    }
    tracing::debug!("background sync stopped");
}
