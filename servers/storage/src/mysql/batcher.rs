//! The single ordered writer and its group commit.
//!
//! Every write is queued when its method is called and applied by this task in queue order,
//! so writes are applied in call order (Decisions 6) without locks between them. A run of
//! queued message stores (and read acks, which only touch Redis counters and must stay
//! ordered with the stores around them) up to `max_batch` is applied as one batch: one MySQL
//! transaction, Redis pipelines before and after it ([`super::store_batch`]). Any other write
//! ends the run and is applied alone. While a batch commits, new requests queue up, so the
//! batch size follows the load: one message alone when idle, hundreds under load.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::rows::now;
use super::sessions::SessionKey;
use super::store_batch;
use crate::error::StorageResult;
use crate::types::{NewMessage, SessionType, StoreOutcome, UserId};

/// How long store request ids are remembered (Decisions 4 asks for at least 10 minutes).
pub const DEDUP_KEEP_SECS: u32 = 15 * 60;

/// How often expired request ids are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Most expired request ids deleted per purge statement (keeps each one short).
const PURGE_LIMIT: u32 = 20_000;

/// Most user pairs whose relation id the writer remembers before starting over.
const RELATION_CACHE_MAX: usize = 1_000_000;

/// Most session row ids the writer remembers before starting over (about 40 MB).
const SESSION_CACHE_MAX: usize = 2_000_000;

/// A queued write that is not a message store: runs alone, in order.
pub type Job = Box<dyn FnOnce(Arc<Inner>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One queued write.
pub enum WriteOp {
    /// `store_message`.
    Message(NewMessage, oneshot::Sender<StorageResult<StoreOutcome>>),
    /// `clear_unread` (Redis only; batched with the stores around it, in order).
    ClearUnread {
        /// Reader.
        user: UserId,
        /// Single or group.
        session_type: SessionType,
        /// Peer user or group.
        peer: u32,
        /// Answer.
        reply: oneshot::Sender<StorageResult<()>>,
    },
    /// Anything else.
    Job(Job),
}

/// State only the writer touches.
#[derive(Default)]
pub struct WriterState {
    /// (smallId, bigId) -> relateId of active relations seen; relations are never removed,
    /// so an entry stays valid.
    pub relations: HashMap<(u32, u32), u32>,
    /// (userId, peerId, type) -> IMRecentSession.id seen in committed transactions; session
    /// rows are never deleted, so the id stays valid (and a vanished one is detected).
    pub sessions: HashMap<SessionKey, u32>,
}

impl WriterState {
    /// Remembers a relation (starting over when the map is full).
    pub fn remember_relation(&mut self, pair: (u32, u32), relate_id: u32) {
        if self.relations.len() >= RELATION_CACHE_MAX {
            self.relations.clear();
        }
        self.relations.insert(pair, relate_id);
    }

    /// Remembers session row ids (starting over when the map is full).
    pub fn remember_sessions(&mut self, seen: Vec<(SessionKey, u32)>) {
        if self.sessions.len() + seen.len() > SESSION_CACHE_MAX {
            self.sessions.clear();
        }
        self.sessions.extend(seen);
    }
}

/// The writer task: runs until every sender is gone and the queue is drained.
pub async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<WriteOp>, max_batch: usize) {
    let mut state = WriterState::default();
    let mut held: Option<WriteOp> = None;
    let mut last_purge = Instant::now();
    loop {
        let op = match held.take() {
            Some(op) => op,
            None => match rx.recv().await {
                Some(op) => op,
                None => break,
            },
        };
        match op {
            WriteOp::Job(job) => {
                inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
                job(Arc::clone(&inner)).await;
                inner.counters.writes.fetch_add(1, Ordering::Relaxed);
            }
            first => {
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(WriteOp::Job(job)) => {
                            held = Some(WriteOp::Job(job));
                            break;
                        }
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                inner.counters.queued.fetch_sub(n, Ordering::Relaxed);
                store_batch::apply(&inner, &mut state, batch).await;
                inner.counters.writes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            purge_request_ids(&inner).await;
        }
    }
    tracing::debug!("MySQL writer stopped");
}

/// Deletes request ids older than [`DEDUP_KEEP_SECS`].
async fn purge_request_ids(inner: &Inner) {
    let before = now().saturating_sub(DEDUP_KEEP_SECS);
    let result = sqlx::query("DELETE FROM im_store_request WHERE created < ? LIMIT ?")
        .bind(before)
        .bind(PURGE_LIMIT)
        .execute(inner.pools.primary())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "purging old store request ids failed");
    }
}
