//! Group commit of message stores (FLOWS.md 6 step 3 and 12.6 step 2, for many messages at
//! once). One batch, in queue order:
//!
//! 1. validation, and the de-duplication table for retried requests (Decisions 4);
//! 2. group existence and membership (Redis member hashes, rebuilt from MySQL if missing);
//! 3. relate ids of user pairs (cached; created with the unique key or a locking read);
//! 4. message ids: one Redis script call per conversation allocates all its ids of the batch
//!    (pipelined); a missing sequence is re-seeded from MAX(msgId) in MySQL (WEAKNESSES 24);
//! 5. one MySQL transaction: IMAudio rows, multi-row INSERTs per shard table, both sessions of
//!    each pair and the sender's group session (upserts), `IMGroup.lastChated`, request ids;
//! 6. after the commit, the unread counters and group counts, pipelined in queue order
//!    together with the read acks queued between the messages.
//!
//! Steps 1-4 of a batch may run while the batch before it is in steps 5-6 (the writer's
//! pipeline, [`super::batcher`]): they read what that batch holds from an [`InFlight`] (a
//! re-seeded sequence starts above its ids), and a batch that retries one of its requests
//! waits for its commit instead.
//!
//! Nothing is acknowledged before step 5 commits. If the transaction fails, each message is
//! retried alone (keeping its id) so that one bad message cannot fail its neighbours; a
//! message that fails alone gets the error (db_proxy answers msg_id 0). Ids allocated to a
//! message that is not stored are never reused.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::batcher::{RelationCache, SessionCache, WriteOp};
use super::{Inner, batch_commit, batch_prepare, content};
use crate::error::{StorageError, StorageResult};
use crate::redis_cache::{Pool, scripts};
use crate::types::{NewContent, NewMessage, RequestId, SessionType, StoreOutcome, UserId};

/// A conversation's id sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Conv {
    /// A user pair, by relate id.
    Single(u32),
    /// A group.
    Group(u32),
}

pub(super) struct Msg {
    pub(super) msg: NewMessage,
    reply: Option<oneshot::Sender<StorageResult<StoreOutcome>>>,
    /// Decided outcome (early for invalid, duplicate, not-member messages).
    pub(super) result: Option<StorageResult<StoreOutcome>>,
    /// Index of an earlier message of this batch with the same request id.
    pub(super) dup_of: Option<usize>,
    pub(super) conv: Option<Conv>,
    pub(super) msg_id: u32,
}

impl Msg {
    pub(super) fn open(&self) -> bool {
        self.result.is_none() && self.dup_of.is_none()
    }
}

pub(super) enum Item {
    Msg(Msg),
    Clear {
        user: UserId,
        session_type: SessionType,
        peer: u32,
        reply: oneshot::Sender<StorageResult<()>>,
        /// Set when the Redis pipeline failed.
        error: Option<StorageError>,
    },
}

/// What a batch that is being committed holds that the preparation of the next one must take
/// into account.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Request ids being stored (a retry of one of them must wait for the commit).
    rids: HashSet<RequestId>,
    /// Largest id allocated per conversation (a re-seeded sequence starts above it).
    pub(super) last_ids: HashMap<Conv, u32>,
}

/// A batch with its messages validated, de-duplicated and given ids: steps 1-4 done.
pub struct Prepared {
    items: Vec<Item>,
    /// Queued writes it answers (messages and read acks).
    pub ops: usize,
}

impl Prepared {
    /// What the next batch's preparation must know about this one while it commits.
    pub(super) fn in_flight(&self) -> InFlight {
        let mut f = InFlight::default();
        for item in &self.items {
            let Item::Msg(m) = item else { continue };
            if !m.open() {
                continue;
            }
            if let Some(rid) = m.msg.request_id {
                f.rids.insert(rid);
            }
            if let Some(conv) = m.conv {
                let last = f.last_ids.entry(conv).or_insert(0);
                *last = (*last).max(m.msg_id);
            }
        }
        f
    }
}

impl InFlight {
    /// True if `ops` retries a request of the batch in flight: then it is prepared only after
    /// that batch committed, so that the retry is answered as the duplicate it is.
    pub fn retries_any(&self, ops: &[WriteOp]) -> bool {
        !self.rids.is_empty()
            && ops.iter().any(|op| {
                matches!(op, WriteOp::Message(m, _) if m.request_id.is_some_and(|r| self.rids.contains(&r)))
            })
    }
}

/// Steps 1-4 (validation, de-duplication, membership, relations, ids). May run while the batch
/// before commits: `in_flight` is what that batch holds.
pub(super) async fn prepare(
    inner: &Inner,
    relations: &mut RelationCache,
    in_flight: &InFlight,
    ops: Vec<WriteOp>,
) -> Prepared {
    let ops_len = ops.len();
    let mut items: Vec<Item> = ops
        .into_iter()
        .filter_map(|op| match op {
            WriteOp::Message(msg, reply) => {
                let result = validate(&msg).err().map(Err);
                Some(Item::Msg(Msg {
                    msg,
                    reply: Some(reply),
                    result,
                    dup_of: None,
                    conv: None,
                    msg_id: 0,
                }))
            }
            WriteOp::ClearUnread {
                user,
                session_type,
                peer,
                reply,
            } => Some(Item::Clear {
                user,
                session_type,
                peer,
                reply,
                error: None,
            }),
            WriteOp::Job(_) => None,
        })
        .collect();
    let count = items.iter().filter(|i| matches!(i, Item::Msg(_))).count() as u64;
    if count > 0 {
        let c = &inner.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.batched_messages.fetch_add(count, Ordering::Relaxed);
        c.largest_batch.fetch_max(count, Ordering::Relaxed);
        let started = Instant::now();
        if let Err(e) = batch_prepare::prepare(inner, relations, in_flight, &mut items).await {
            fail_open(&mut items, &e);
        }
        add_micros(&c.prepare_us, started.elapsed());
    }
    Prepared {
        items,
        ops: ops_len,
    }
}

/// Steps 5-6 (the transaction, then the Redis counters) and the answers.
pub(super) async fn finish(inner: &Inner, sessions: &mut SessionCache, prepared: Prepared) {
    let mut items = prepared.items;
    if items.iter().any(|i| matches!(i, Item::Msg(_))) {
        let started = Instant::now();
        batch_commit::store(inner, sessions, &mut items).await;
        add_micros(&inner.counters.commit_us, started.elapsed());
    }
    let started = Instant::now();
    after_commit(inner, &mut items).await;
    add_micros(&inner.counters.after_commit_us, started.elapsed());
    reply(items);
}

fn add_micros(counter: &AtomicU64, d: Duration) {
    counter.fetch_add(
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

pub(super) fn msgs_mut(items: &mut [Item]) -> impl Iterator<Item = &mut Msg> {
    items.iter_mut().filter_map(|i| match i {
        Item::Msg(m) => Some(m),
        Item::Clear { .. } => None,
    })
}

fn fail_open(items: &mut [Item], e: &StorageError) {
    for m in msgs_mut(items).filter(|m| m.open()) {
        m.result = Some(Err(copy_error(e)));
    }
}

pub(super) fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Database(s) => StorageError::Database(s.clone()),
        StorageError::Cache(s) => StorageError::Cache(s.clone()),
        StorageError::Invalid(s) => StorageError::Invalid(s.clone()),
        StorageError::Conflict(s) => StorageError::Conflict(s.clone()),
        StorageError::Closed => StorageError::Closed,
        StorageError::Open(s) => StorageError::Open(s.clone()),
    }
}

fn validate(m: &NewMessage) -> StorageResult<()> {
    if m.to_id == 0 {
        return Err(StorageError::Invalid("receiver (to_id) 0".into()));
    }
    if !m.msg_type.is_group() && m.from_id == m.to_id {
        return Err(StorageError::Invalid(format!(
            "sender and receiver are both user {}",
            m.from_id
        )));
    }
    match &m.content {
        NewContent::Text(bytes) => {
            if m.msg_type.is_audio() {
                return Err(StorageError::Invalid(format!(
                    "msg_type {:?} needs audio content, got text",
                    m.msg_type
                )));
            }
            if let Err(chars) = content::encode(bytes) {
                return Err(StorageError::Invalid(format!(
                    "message content needs {chars} characters; at most {}",
                    content::MAX_CHARS
                )));
            }
        }
        NewContent::Audio { path, .. } => {
            if !m.msg_type.is_audio() {
                return Err(StorageError::Invalid(format!(
                    "msg_type {:?} needs text content, got audio",
                    m.msg_type
                )));
            }
            let chars = path.chars().count();
            if chars == 0 || chars > 255 {
                return Err(StorageError::Invalid(format!(
                    "audio path has {chars} characters; expected 1..=255"
                )));
            }
        }
    }
    Ok(())
}

/// Step 6: unread counters, group counts and read acks, in queue order.
async fn after_commit(inner: &Inner, items: &mut [Item]) {
    let keys = inner.cache.keys();
    let mut cmds = Vec::new();
    let mut clears = 0usize;
    for item in items.iter() {
        match item {
            Item::Msg(m) => {
                if m.dup_of.is_some() || !matches!(m.result, Some(Ok(StoreOutcome::Stored(_)))) {
                    continue;
                }
                let (from, to) = (m.msg.from_id, m.msg.to_id);
                if m.msg.msg_type.is_group() {
                    let count_key = keys.group_count(to);
                    cmds.push(
                        redis::cmd("HINCRBY")
                            .arg(&count_key)
                            .arg("count")
                            .arg(1)
                            .to_owned(),
                    );
                    cmds.push(scripts::copy_count(&count_key, &keys.user_group(from, to)));
                } else {
                    cmds.push(
                        redis::cmd("HINCRBY")
                            .arg(keys.unread(to))
                            .arg(from)
                            .arg(1)
                            .to_owned(),
                    );
                }
            }
            Item::Clear {
                user,
                session_type,
                peer,
                ..
            } => {
                clears += 1;
                cmds.push(clear_cmd(inner, *user, *session_type, *peer));
            }
        }
    }
    if cmds.is_empty() {
        return;
    }
    let stored = cmds.len() - clears;
    if let Err(e) = inner.cache.run(Pool::Unread, cmds).await {
        if stored > 0 {
            inner
                .counters
                .cache_errors_after_commit
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "unread counters not updated after a committed batch");
        }
        for item in items.iter_mut() {
            if let Item::Clear { error, .. } = item {
                *error = Some(copy_error(&e));
            }
        }
    }
}

/// The Redis command that clears one session's unread count.
pub fn clear_cmd(inner: &Inner, user: UserId, session_type: SessionType, peer: u32) -> redis::Cmd {
    let keys = inner.cache.keys();
    match session_type {
        SessionType::Single => redis::cmd("HDEL")
            .arg(keys.unread(user))
            .arg(peer)
            .to_owned(),
        SessionType::Group => {
            scripts::copy_count(&keys.group_count(peer), &keys.user_group(user, peer))
        }
    }
}

fn reply(mut items: Vec<Item>) {
    let outcomes: Vec<Option<StorageResult<StoreOutcome>>> = items
        .iter()
        .map(|i| match i {
            Item::Msg(m) => m.result.as_ref().map(|r| match r {
                Ok(o) => Ok(*o),
                Err(e) => Err(copy_error(e)),
            }),
            Item::Clear { .. } => None,
        })
        .collect();
    for item in items.drain(..) {
        match item {
            Item::Msg(mut m) => {
                let result = match m.dup_of {
                    Some(first) => match &outcomes[first] {
                        Some(Ok(StoreOutcome::Stored(id) | StoreOutcome::Duplicate(id))) => {
                            Ok(StoreOutcome::Duplicate(*id))
                        }
                        Some(Ok(other)) => Ok(*other),
                        Some(Err(e)) => Err(copy_error(e)),
                        None => Err(StorageError::Closed),
                    },
                    None => m.result.take().unwrap_or(Err(StorageError::Closed)),
                };
                if let Some(reply) = m.reply.take() {
                    let _ = reply.send(result);
                }
            }
            Item::Clear { reply, error, .. } => {
                let _ = reply.send(error.map_or(Ok(()), Err));
            }
        }
    }
}
