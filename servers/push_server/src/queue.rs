//! The bounded push queue and its delivery workers.
//!
//! The listener answers msg_server at once (result 0 = accepted here, as the original
//! answered 0 once the frame was written to Apple's socket) and puts one [`Job`] per token
//! into a bounded channel; `workers` tasks take jobs from it and send them. A failed attempt
//! worth retrying waits (backoff with jitter, at least the provider's Retry-After) in a timer
//! task of its own, so a provider outage never blocks a worker, and then re-enters the queue
//! behind the new pushes. A dead token is handed to [`crate::tokens::DeadTokens`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ProviderKind, RetryConfig};
use crate::metrics::Metrics;
use crate::payload::Push;
use crate::providers::{Outcome, Providers};
use crate::tokens::DeadTokens;

/// What a push says, shared by the jobs of all its tokens.
#[derive(Debug)]
pub struct Content {
    /// Alert text, already cut (or replaced when message text is hidden).
    pub alert: String,
    /// The msg_server's data JSON text ('custom').
    pub data: String,
}

/// One push to one token.
#[derive(Debug)]
pub struct Job {
    /// Provider chosen for the token's client type.
    pub provider: ProviderKind,
    /// Owner of the token.
    pub user_id: u32,
    /// UserTokenInfo.user_type.
    pub client_type: i32,
    /// Device token.
    pub token: String,
    /// Badge (the user's unread total).
    pub badge: u32,
    /// push_type 2: badge only, no alert or sound.
    pub silent: bool,
    /// Alert and data.
    pub content: Arc<Content>,
    /// Attempts made so far.
    pub attempts: u32,
}

impl Job {
    /// The push as the payload builders take it.
    pub fn push(&self) -> Push<'_> {
        Push {
            alert: (!self.silent).then_some(self.content.alert.as_str()),
            badge: self.badge,
            data: &self.content.data,
        }
    }
}

/// The intake side of the queue.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<Job>,
    in_flight: AtomicUsize,
    retrying: AtomicUsize,
}

impl Queue {
    /// Queues `job`; gives it back when the queue is full.
    pub fn try_push(&self, job: Job) -> Result<(), Job> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
        })
    }

    /// Jobs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Jobs a worker is sending right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Jobs waiting for their next attempt.
    pub fn retrying(&self) -> usize {
        self.retrying.load(Ordering::Relaxed)
    }

    /// Waits until nothing is queued, in flight or waiting for a retry, at most `grace`;
    /// `false` if work was left.
    pub async fn drain(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            if self.depth() == 0 && self.in_flight() == 0 && self.retrying() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Everything a worker needs.
struct Delivery {
    queue: Arc<Queue>,
    rx: Mutex<mpsc::Receiver<Job>>,
    providers: Arc<Providers>,
    metrics: Metrics,
    retry: RetryConfig,
    dead: DeadTokens,
    stop: CancellationToken,
    timers: TaskTracker,
}

/// Creates the queue (`config.queue_capacity`) and starts `config.workers` delivery tasks on
/// `tasks`; they stop when `stop` is cancelled (abandoning what is left).
pub fn start(
    config: &Config,
    providers: Arc<Providers>,
    metrics: Metrics,
    dead: DeadTokens,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Arc<Queue> {
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let queue = Arc::new(Queue {
        tx,
        in_flight: AtomicUsize::new(0),
        retrying: AtomicUsize::new(0),
    });
    let d = Arc::new(Delivery {
        queue: queue.clone(),
        rx: Mutex::new(rx),
        providers,
        metrics,
        retry: config.retry,
        dead,
        stop,
        timers: tasks.clone(),
    });
    for _ in 0..config.workers {
        tasks.spawn(worker(d.clone()));
    }
    queue
}

async fn worker(d: Arc<Delivery>) {
    loop {
        let next = tokio::select! {
            biased;
            () = d.stop.cancelled() => None,
            // One worker at a time waits on the channel; recv is cancellation-safe.
            j = async { d.rx.lock().await.recv().await } => j,
        };
        let Some(mut job) = next else { return };
        d.queue.in_flight.fetch_add(1, Ordering::Relaxed);
        job.attempts += 1;
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = d.stop.cancelled() => None,
            o = d.providers.send(&job) => Some(o),
        };
        d.queue.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(outcome) = outcome else { return };
        d.metrics
            .provider(job.provider)
            .latency
            .record(started.elapsed());
        finish(&d, job, outcome);
    }
}

fn finish(d: &Delivery, job: Job, outcome: Outcome) {
    let m = d.metrics.provider(job.provider);
    let provider = job.provider.name();
    match outcome {
        Outcome::Delivered => {
            m.sent.inc();
            tracing::debug!(
                user_id = job.user_id,
                provider,
                attempts = job.attempts,
                "push delivered"
            );
        }
        Outcome::Retry { why, after } if job.attempts < d.retry.attempts => {
            m.retried.inc();
            let delay = d.retry.delay(job.attempts, after);
            tracing::debug!(user_id = job.user_id, provider, attempts = job.attempts, %why,
                delay_ms = delay.as_millis() as u64, "push failed, retrying");
            schedule_retry(d, job, delay);
        }
        Outcome::Retry { why, .. } => {
            m.failed.inc();
            tracing::info!(user_id = job.user_id, provider, attempts = job.attempts, %why,
                "push given up: attempts exhausted");
        }
        Outcome::Dead { why } => {
            m.dead.inc();
            m.failed.inc();
            tracing::info!(user_id = job.user_id, provider, %why, "provider reports a dead token");
            d.dead.report(job.user_id, job.token, job.provider);
        }
        Outcome::Failed { why } => {
            m.failed.inc();
            tracing::info!(user_id = job.user_id, provider, %why, "push failed");
        }
    }
}

fn schedule_retry(d: &Delivery, job: Job, delay: Duration) {
    d.queue.retrying.fetch_add(1, Ordering::Relaxed);
    let queue = d.queue.clone();
    let stop = d.stop.clone();
    d.timers.spawn(async move {
        tokio::select! {
            biased;
            () = stop.cancelled() => {}
            () = tokio::time::sleep(delay) => {
                // Waits for room rather than dropping: the push was already accepted.
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    _ = queue.tx.send(job) => {}
                }
            }
        }
        queue.retrying.fetch_sub(1, Ordering::Relaxed);
    });
}
