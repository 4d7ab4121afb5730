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
//! Nothing is acknowledged before step 5 commits. If the transaction fails, each message is
//! retried alone (keeping its id) so that one bad message cannot fail its neighbours; a
//! message that fails alone gets the error (db_proxy answers msg_id 0). Ids allocated to a
//! message that is not stored are never reused.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::MySqlConnection;
use tokio::sync::oneshot;

use super::batcher::{WriteOp, WriterState};
use super::rows::{col_u32, now, sql};
use super::schema::{group_message_table, message_table};
use super::{Inner, content, members, relations, sessions};
use crate::error::{StorageError, StorageResult};
use crate::redis_cache::{Pool, decode, scripts};
use crate::types::{NewContent, NewMessage, RequestId, SessionType, StoreOutcome, UserId};

/// Most rows per multi-row INSERT (4096-character contents stay far below max_allowed_packet).
const ROWS_PER_INSERT: usize = 256;

/// A conversation's id sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Conv {
    /// A user pair, by relate id.
    Single(u32),
    /// A group.
    Group(u32),
}

struct Msg {
    msg: NewMessage,
    reply: Option<oneshot::Sender<StorageResult<StoreOutcome>>>,
    /// Decided outcome (early for invalid, duplicate, not-member messages).
    result: Option<StorageResult<StoreOutcome>>,
    /// Index of an earlier message of this batch with the same request id.
    dup_of: Option<usize>,
    conv: Option<Conv>,
    msg_id: u32,
}

impl Msg {
    fn open(&self) -> bool {
        self.result.is_none() && self.dup_of.is_none()
    }
}

enum Item {
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

/// Applies one batch of queued stores and read acks.
pub async fn apply(inner: &Inner, state: &mut WriterState, ops: Vec<WriteOp>) {
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
        if let Err(e) = prepare(inner, state, &mut items).await {
            fail_open(&mut items, &e);
        }
        let prepared = Instant::now();
        store(inner, &mut items).await;
        add_micros(&c.prepare_us, prepared - started);
        add_micros(&c.commit_us, prepared.elapsed());
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

fn msgs_mut(items: &mut [Item]) -> impl Iterator<Item = &mut Msg> {
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

fn copy_error(e: &StorageError) -> StorageError {
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

/// Steps 1-4: de-duplication, membership, relations, ids.
async fn prepare(inner: &Inner, state: &mut WriterState, items: &mut [Item]) -> StorageResult<()> {
    dedup(inner, items).await?;
    check_groups(inner, items).await?;
    resolve_relations(inner, state, items).await?;
    allocate_ids(inner, items).await
}

async fn dedup(inner: &Inner, items: &mut [Item]) -> StorageResult<()> {
    let mut first: HashMap<RequestId, usize> = HashMap::new();
    let mut lookup: Vec<(usize, RequestId)> = Vec::new();
    for (index, item) in items.iter_mut().enumerate() {
        let Item::Msg(m) = item else { continue };
        let Some(rid) = m.msg.request_id.filter(|_| m.result.is_none()) else {
            continue;
        };
        match first.get(&rid) {
            Some(&earlier) => m.dup_of = Some(earlier),
            None => {
                first.insert(rid, index);
                lookup.push((index, rid));
            }
        }
    }
    for chunk in lookup.chunks(ROWS_PER_INSERT) {
        let found = stored_request_ids(inner.pools.primary(), chunk.iter().map(|c| c.1)).await?;
        for &(index, rid) in chunk {
            if let (Some(&msg_id), Item::Msg(m)) = (found.get(&rid), &mut items[index]) {
                m.result = Some(Ok(StoreOutcome::Duplicate(msg_id)));
                inner.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

async fn stored_request_ids(
    pool: &sqlx::MySqlPool,
    rids: impl Iterator<Item = RequestId>,
) -> StorageResult<HashMap<RequestId, u32>> {
    let rids: Vec<RequestId> = rids.collect();
    if rids.is_empty() {
        return Ok(HashMap::new());
    }
    let cond = vec!["(origin = ? AND seq = ?)"; rids.len()].join(" OR ");
    let text = format!("SELECT origin, seq, msgId FROM im_store_request WHERE {cond}");
    let mut q = sqlx::query(sql(text)).persistent(false);
    for rid in &rids {
        q = q.bind(rid.origin).bind(rid.seq);
    }
    let mut out = HashMap::new();
    for row in q.fetch_all(pool).await? {
        let origin: u64 = sqlx::Row::try_get_unchecked(&row, 0)?;
        let seq: u64 = sqlx::Row::try_get_unchecked(&row, 1)?;
        out.insert(RequestId { origin, seq }, col_u32(&row, 2)?);
    }
    Ok(out)
}

async fn check_groups(inner: &Inner, items: &mut [Item]) -> StorageResult<()> {
    let mut asks: Vec<(u32, UserId)> = msgs_mut(items)
        .filter(|m| m.open() && m.msg.msg_type.is_group())
        .map(|m| (m.msg.to_id, m.msg.from_id))
        .collect();
    if asks.is_empty() {
        return Ok(());
    }
    asks.sort_unstable();
    asks.dedup();
    let mut groups: Vec<u32> = asks.iter().map(|a| a.0).collect();
    groups.dedup();
    let keys = inner.cache.keys();
    let mut cmds = Vec::with_capacity(groups.len() + asks.len());
    for &g in &groups {
        cmds.push(redis::cmd("EXISTS").arg(keys.group_member(g)).to_owned());
    }
    for &(g, u) in &asks {
        cmds.push(
            redis::cmd("HEXISTS")
                .arg(keys.group_member(g))
                .arg(u)
                .to_owned(),
        );
    }
    let mut values = inner.cache.run(Pool::GroupMember, cmds).await?.into_iter();
    let mut exists: HashMap<u32, Option<Vec<UserId>>> = HashMap::new();
    for &g in &groups {
        let present: bool = decode(values.next().unwrap_or(redis::Value::Nil), "EXISTS")?;
        if !present {
            // Missing hash: the group may still exist in MySQL (Redis lost, or created there).
            let rebuilt = members::rebuild(inner, g).await?;
            exists.insert(g, rebuilt.map(|l| l.iter().map(|m| m.user_id).collect()));
        }
    }
    let mut member: HashMap<(u32, UserId), bool> = HashMap::new();
    for &(g, u) in &asks {
        let hexists: bool = decode(values.next().unwrap_or(redis::Value::Nil), "HEXISTS")?;
        member.insert((g, u), hexists);
    }
    for m in msgs_mut(items).filter(|m| m.open() && m.msg.msg_type.is_group()) {
        let (g, u) = (m.msg.to_id, m.msg.from_id);
        let outcome = match exists.get(&g) {
            Some(None) => Some(StoreOutcome::NoSuchGroup),
            Some(Some(list)) if !list.contains(&u) => Some(StoreOutcome::NotMember),
            Some(Some(_)) => None,
            None if !member.get(&(g, u)).copied().unwrap_or(false) => Some(StoreOutcome::NotMember),
            None => None,
        };
        if let Some(outcome) = outcome {
            m.result = Some(Ok(outcome));
        }
    }
    Ok(())
}

async fn resolve_relations(
    inner: &Inner,
    state: &mut WriterState,
    items: &mut [Item],
) -> StorageResult<()> {
    let mut missing: Vec<(u32, u32)> = msgs_mut(items)
        .filter(|m| m.open() && !m.msg.msg_type.is_group())
        .map(|m| relations::pair(m.msg.from_id, m.msg.to_id))
        .filter(|p| !state.relations.contains_key(p))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        for (p, id) in relations::resolve(inner, &missing).await? {
            state.remember_relation(p, id);
        }
    }
    for m in msgs_mut(items).filter(|m| m.open()) {
        if m.msg.msg_type.is_group() {
            m.conv = Some(Conv::Group(m.msg.to_id));
            continue;
        }
        let p = relations::pair(m.msg.from_id, m.msg.to_id);
        match state.relations.get(&p) {
            Some(&relate_id) => m.conv = Some(Conv::Single(relate_id)),
            None => {
                m.result = Some(Err(StorageError::Database(format!(
                    "no relation row for users {} and {} after creating it",
                    p.0, p.1
                ))))
            }
        }
    }
    Ok(())
}

fn sequence_key(inner: &Inner, conv: Conv) -> String {
    match conv {
        Conv::Single(r) => inner.cache.keys().msg_id(r),
        Conv::Group(g) => inner.cache.keys().group_msg_id(g),
    }
}

/// Highest id stored for a conversation (primary), the floor for a re-seeded sequence.
async fn max_stored_id(inner: &Inner, conv: Conv) -> StorageResult<u32> {
    let text = match conv {
        Conv::Single(r) => format!(
            "SELECT COALESCE(MAX(msgId), 0) FROM {} WHERE relateId = ?",
            message_table(r)
        ),
        Conv::Group(g) => format!(
            "SELECT COALESCE(MAX(msgId), 0) FROM {} WHERE groupId = ?",
            group_message_table(g)
        ),
    };
    let id = match conv {
        Conv::Single(x) | Conv::Group(x) => x,
    };
    let row = sqlx::query(sql(text))
        .bind(id)
        .fetch_one(inner.pools.primary())
        .await?;
    col_u32(&row, 0)
}

async fn allocate_ids(inner: &Inner, items: &mut [Item]) -> StorageResult<()> {
    let mut order: Vec<(Conv, u32)> = Vec::new();
    let mut index: HashMap<Conv, usize> = HashMap::new();
    for m in msgs_mut(items).filter(|m| m.open()) {
        let Some(conv) = m.conv else { continue };
        let i = *index.entry(conv).or_insert_with(|| {
            order.push((conv, 0));
            order.len() - 1
        });
        order[i].1 += 1;
    }
    if order.is_empty() {
        return Ok(());
    }
    let cmds = order
        .iter()
        .map(|&(conv, n)| scripts::alloc(&sequence_key(inner, conv), n))
        .collect();
    let values = inner.cache.run(Pool::Unread, cmds).await?;
    let mut last: Vec<i64> = Vec::with_capacity(order.len());
    for v in values {
        last.push(decode(v, "id allocation")?);
    }
    let missing: Vec<usize> = (0..order.len()).filter(|&i| last[i] < 0).collect();
    if !missing.is_empty() {
        let mut cmds = Vec::with_capacity(missing.len());
        for &i in &missing {
            let (conv, n) = order[i];
            let floor = max_stored_id(inner, conv).await?;
            tracing::info!(
                ?conv,
                floor,
                "re-seeding a missing message id sequence from MySQL"
            );
            cmds.push(scripts::seed_alloc(&sequence_key(inner, conv), floor, n));
        }
        inner
            .counters
            .reseeded_sequences
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let values = inner.cache.run(Pool::Unread, cmds).await?;
        for (&i, v) in missing.iter().zip(values) {
            last[i] = decode(v, "id allocation")?;
        }
    }
    // next[i] = the id the next message of conversation i gets.
    let mut next: Vec<Option<u32>> = order
        .iter()
        .zip(&last)
        .map(|(&(_, n), &last)| {
            let first = last - i64::from(n) + 1;
            (first >= 1 && last <= i64::from(u32::MAX)).then_some(first as u32)
        })
        .collect();
    for m in msgs_mut(items).filter(|m| m.open()) {
        let Some(conv) = m.conv else { continue };
        let i = index[&conv];
        match next[i] {
            Some(id) => {
                m.msg_id = id;
                next[i] = Some(id.saturating_add(1));
            }
            None => {
                m.result = Some(Err(StorageError::Cache(format!(
                    "sequence {} answered {} for {} ids",
                    sequence_key(inner, conv),
                    last[i],
                    order[i].1
                ))))
            }
        }
    }
    Ok(())
}

/// Step 5: the batch transaction, or each message alone if it fails.
async fn store(inner: &Inner, items: &mut [Item]) {
    let open: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Item::Msg(m) if m.open()))
        .map(|(i, _)| i)
        .collect();
    if open.is_empty() {
        return;
    }
    let batch: Vec<&Msg> = open
        .iter()
        .filter_map(|&i| match &items[i] {
            Item::Msg(m) => Some(m),
            Item::Clear { .. } => None,
        })
        .collect();
    match commit(inner, &batch).await {
        Ok(()) => {
            for &i in &open {
                if let Item::Msg(m) = &mut items[i] {
                    m.result = Some(Ok(StoreOutcome::Stored(m.msg_id)));
                }
            }
            inner
                .counters
                .stored_messages
                .fetch_add(open.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            inner
                .counters
                .failed_batches
                .fetch_add(1, Ordering::Relaxed);
            if open.len() > 1 {
                tracing::warn!(error = %e, messages = open.len(), "batch failed; retrying its messages one by one");
            }
            for &i in &open {
                let Item::Msg(m) = &mut items[i] else {
                    continue;
                };
                let result = if open.len() == 1 {
                    Err(copy_error(&e))
                } else {
                    inner
                        .counters
                        .retried_messages
                        .fetch_add(1, Ordering::Relaxed);
                    retry_alone(inner, m).await
                };
                if result.is_ok() {
                    inner
                        .counters
                        .stored_messages
                        .fetch_add(1, Ordering::Relaxed);
                }
                m.result = Some(result);
            }
        }
    }
}

async fn retry_alone(inner: &Inner, m: &Msg) -> StorageResult<StoreOutcome> {
    // A concurrent process may have stored the same request meanwhile.
    if let Some(rid) = m.msg.request_id
        && let Some(&id) = stored_request_ids(inner.pools.primary(), std::iter::once(rid))
            .await?
            .get(&rid)
    {
        return Ok(StoreOutcome::Duplicate(id));
    }
    commit(inner, &[m]).await?;
    Ok(StoreOutcome::Stored(m.msg_id))
}

async fn commit(inner: &Inner, batch: &[&Msg]) -> StorageResult<()> {
    let mut tx = inner.pools.primary().begin().await?;
    let conn: &mut MySqlConnection = &mut tx;
    let mut contents: Vec<Cow<'_, str>> = Vec::with_capacity(batch.len());
    for m in batch {
        contents.push(match &m.msg.content {
            NewContent::Text(bytes) => match content::encode(bytes) {
                Ok(text) => text,
                Err(chars) => {
                    return Err(StorageError::Invalid(format!(
                        "message content needs {chars} characters"
                    )));
                }
            },
            NewContent::Audio {
                path,
                size,
                duration,
            } => {
                let done = sqlx::query(
                    "INSERT INTO IMAudio (fromId, toId, path, size, duration, created) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(m.msg.from_id)
                .bind(m.msg.to_id)
                .bind(path)
                .bind(size)
                .bind(duration)
                .bind(m.msg.created)
                .execute(&mut *conn)
                .await?;
                Cow::Owned(done.last_insert_id().to_string())
            }
        });
    }
    insert_rows(conn, batch, &contents).await?;

    let mut sessions_rows: BTreeMap<(u32, u32, u8), u32> = BTreeMap::new();
    let mut groups: BTreeMap<u32, u32> = BTreeMap::new();
    for m in batch {
        let (from, to, t) = (m.msg.from_id, m.msg.to_id, m.msg.created);
        let mut touch = |key: (u32, u32, u8)| {
            let e = sessions_rows.entry(key).or_insert(t);
            *e = (*e).max(t);
        };
        if m.msg.msg_type.is_group() {
            touch((from, to, SessionType::Group as u8));
            let e = groups.entry(to).or_insert(t);
            *e = (*e).max(t);
        } else {
            touch((from, to, SessionType::Single as u8));
            touch((to, from, SessionType::Single as u8));
        }
    }
    let rows: Vec<sessions::Touch> = sessions_rows
        .into_iter()
        .map(|((user, peer, kind), time)| sessions::Touch {
            user,
            peer,
            kind,
            time,
        })
        .collect();
    sessions::upsert(conn, inner.unique.session, &rows, true).await?;
    for (group, time) in groups {
        sqlx::query("UPDATE IMGroup SET lastChated = GREATEST(lastChated, ?) WHERE id = ?")
            .bind(time)
            .bind(group)
            .execute(&mut *conn)
            .await?;
    }
    let requests: Vec<(RequestId, u32)> = batch
        .iter()
        .filter_map(|m| m.msg.request_id.map(|rid| (rid, m.msg_id)))
        .collect();
    let created = now();
    for chunk in requests.chunks(ROWS_PER_INSERT) {
        let values = vec!["(?,?,?,?)"; chunk.len()].join(",");
        let text =
            format!("INSERT INTO im_store_request (origin, seq, msgId, created) VALUES {values}");
        let mut q = sqlx::query(sql(text)).persistent(false);
        for (rid, msg_id) in chunk {
            q = q.bind(rid.origin).bind(rid.seq).bind(msg_id).bind(created);
        }
        q.execute(&mut *conn).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Multi-row INSERTs, one run per shard table.
async fn insert_rows(
    conn: &mut MySqlConnection,
    batch: &[&Msg],
    contents: &[Cow<'_, str>],
) -> StorageResult<()> {
    let mut by_table: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (i, m) in batch.iter().enumerate() {
        let table = match m.conv {
            Some(Conv::Single(r)) => message_table(r),
            Some(Conv::Group(g)) => group_message_table(g),
            None => continue,
        };
        by_table.entry(table).or_default().push(i);
    }
    for (table, rows) in by_table {
        let group = table.starts_with("IMGroupMessage");
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let text = if group {
                format!(
                    "INSERT INTO {table} (groupId, userId, msgId, content, type, status, created, updated) \
                     VALUES {}",
                    vec!["(?,?,?,?,?,0,?,?)"; chunk.len()].join(",")
                )
            } else {
                format!(
                    "INSERT INTO {table} (relateId, fromId, toId, msgId, content, type, status, created, updated) \
                     VALUES {}",
                    vec!["(?,?,?,?,?,?,0,?,?)"; chunk.len()].join(",")
                )
            };
            let mut q = sqlx::query(sql(text)).persistent(false);
            for &i in chunk {
                let m = batch[i];
                let kind = m.msg.msg_type.as_u32();
                match m.conv {
                    Some(Conv::Group(g)) => {
                        q = q
                            .bind(g)
                            .bind(m.msg.from_id)
                            .bind(m.msg_id)
                            .bind(contents[i].as_ref())
                            .bind(kind)
                            .bind(m.msg.created)
                            .bind(m.msg.created);
                    }
                    Some(Conv::Single(r)) => {
                        q = q
                            .bind(r)
                            .bind(m.msg.from_id)
                            .bind(m.msg.to_id)
                            .bind(m.msg_id)
                            .bind(contents[i].as_ref())
                            .bind(kind)
                            .bind(m.msg.created)
                            .bind(m.msg.created);
                    }
                    None => {}
                }
            }
            q.execute(&mut *conn).await?;
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
