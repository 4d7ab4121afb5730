//! The live progress line on stderr (hidden when stderr is not a terminal).

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine::Ctx;
use super::stats::get;

/// Redraw interval.
const TICK: Duration = Duration::from_millis(250);

/// A running progress line.
#[derive(Debug)]
pub struct Progress {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (or does nothing when `enabled` is false).
    pub fn start(ctx: Arc<Ctx>, enabled: bool) -> Progress {
        let stop = CancellationToken::new();
        if !enabled {
            return Progress { stop, task: None };
        }
        let bar = ProgressBar::new(1000);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut last = (0u64, 0u64);
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = s.cancelled() => break,
                }
                let c = &ctx.stats.counters;
                let now = ctx.stats.now_us();
                let acked = get(&c.acked);
                let rate = (acked - last.1) as f64 * 1e6 / (now - last.0).max(1) as f64;
                last = (now, acked);
                let tl = *ctx.timeline.borrow();
                let (phase, pos) = match tl {
                    None => ("ramp-up", 0),
                    Some(t) if now < t.start => ("ramp-up", 0),
                    Some(t) if now < t.measure_from => ("warm-up", frac(now, t.end)),
                    Some(t) if now < t.steady_end => ("steady", frac(now, t.end)),
                    Some(t) => ("cool-down", frac(now, t.end)),
                };
                bar.set_position(pos);
                bar.set_message(format!(
                    "{phase}  logins {}/{}  sent {}  acked {}  delivered {}  {:.0} msg/s  errors {}",
                    get(&c.logins),
                    ctx.plan.len(),
                    get(&c.sent),
                    acked,
                    get(&c.delivered),
                    rate,
                    get(&c.errors) + get(&c.login_failures),
                ));
            }
            bar.finish_and_clear();
        });
        Progress {
            stop,
            task: Some(task),
        }
    }

    /// Stops and clears the line.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn frac(now: u64, end: u64) -> u64 {
    (now.saturating_mul(1000) / end.max(1)).min(1000)
}
