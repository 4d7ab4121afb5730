//! The single ordered writer and its group commit.
//!
//! Every write is queued when its method is called and applied by this task in queue order,
//! so writes are applied in call order (Decisions 6) without locks between them. A run of
//! queued message stores (and read acks, which only touch Redis counters and must stay
//! ordered with the stores around them) up to `max_batch` is applied as one batch: one MySQL
//! transaction, Redis pipelines before and after it ([`super::store_batch`]). Any other write
//! ends the run and is applied alone. While a batch commits, new requests queue up, so the
//! batch size follows the load: one message alone when idle, hundreds under load. When
//! requests are queued as a batch starts its transaction, the next batch is prepared (ids,
//! relations, de-duplication) meanwhile; transactions and answers stay in queue order.

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

/// State only the writer touches, in two parts: the next batch is prepared with `relations`
/// while the one before it commits with `sessions`.
#[derive(Default)]
pub struct WriterState {
    /// Relation ids.
    pub relations: RelationCache,
    /// Session row ids.
    pub sessions: SessionCache,
}

/// (smallId, bigId) -> relateId of active relations seen; relations are never removed, so an
/// entry stays valid.
#[derive(Default)]
pub struct RelationCache {
    /// The map.
    pub map: HashMap<(u32, u32), u32>,
}

impl RelationCache {
    /// Remembers a relation (starting over when the map is full).
    pub fn remember(&mut self, pair: (u32, u32), relate_id: u32) {
        if self.map.len() >= RELATION_CACHE_MAX {
            self.map.clear();
        }
        self.map.insert(pair, relate_id);
    }
}

/// (userId, peerId, type) -> IMRecentSession.id seen in committed transactions; session rows
/// are never deleted, so the id stays valid (and a vanished one is detected).
#[derive(Default)]
pub struct SessionCache {
    /// The map.
    pub map: HashMap<SessionKey, u32>,
}

impl SessionCache {
    /// Remembers session row ids (starting over when the map is full).
    pub fn remember(&mut self, seen: Vec<(SessionKey, u32)>) {
        if self.map.len() + seen.len() > SESSION_CACHE_MAX {
            self.map.clear();
        }
        self.map.extend(seen);
    }
}

/// The writer task: runs until every sender is gone and the queue is drained.
pub async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<WriteOp>, max_batch: usize) {
    let mut state = WriterState::default();
    let mut held: Option<WriteOp> = None;
    let mut last_purge = Instant::now();
    // A batch prepared (steps 1-4) and not yet committed. It commits as soon as nothing else
    // is queued; when more is queued, the next batch is prepared while it commits (two round
    // trips to MySQL and Redis that no longer add to every message's wait).
    let mut prepared: Option<store_batch::Prepared> = None;
    loop {
        let op = match held.take() {
            Some(op) => Some(op),
            None if prepared.is_some() => rx.try_recv().ok(),
            None => rx.recv().await,
        };
        let Some(op) = op else {
            match prepared.take() {
                Some(p) => {
                    finish(&inner, &mut state.sessions, p).await;
                    continue;
                }
                None => break,
            }
        };
        match op {
            WriteOp::Job(job) => {
                // A job sees every write queued before it (Decisions 6).
                if let Some(p) = prepared.take() {
                    finish(&inner, &mut state.sessions, p).await;
                }
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
                inner
                    .counters
                    .queued
                    .fetch_sub(batch.len(), Ordering::Relaxed);
                let in_flight = prepared.as_ref().map(store_batch::Prepared::in_flight);
                let next = match (prepared.take(), in_flight) {
                    (Some(p), Some(f)) if !f.retries_any(&batch) => {
                        let ((), next) = tokio::join!(
                            finish(&inner, &mut state.sessions, p),
                            store_batch::prepare(&inner, &mut state.relations, &f, batch)
                        );
                        next
                    }
                    (p, _) => {
                        if let Some(p) = p {
                            finish(&inner, &mut state.sessions, p).await;
                        }
                        let none = store_batch::InFlight::default();
                        store_batch::prepare(&inner, &mut state.relations, &none, batch).await
                    }
                };
                prepared = Some(next);
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            purge_request_ids(&inner).await;
        }
    }
    tracing::debug!("MySQL writer stopped");
}

/// Steps 5-6 of a prepared batch and its answers.
async fn finish(inner: &Inner, sessions: &mut SessionCache, prepared: store_batch::Prepared) {
    let n = prepared.ops;
    store_batch::finish(inner, sessions, prepared).await;
    inner.counters.writes.fetch_add(n as u64, Ordering::Relaxed);
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
