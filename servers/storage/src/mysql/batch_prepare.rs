//! Steps 1-4 of a batch ([`super::store_batch`]): de-duplication of retried requests, group
//! existence and membership, relate ids of user pairs, and message ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use super::batcher::RelationCache;
use super::rows::{col_u32, push_int_list, sql};
use super::schema::{group_message_table, message_table};
use super::store_batch::{Conv, InFlight, Item, msgs_mut};
use super::{Inner, members, relations};
use crate::error::{StorageError, StorageResult};
use crate::redis_cache::{Pool, decode, scripts};
use crate::types::{RequestId, StoreOutcome, UserId};

/// Most request ids looked up per `IN` list.
const IDS_PER_LOOKUP: usize = 1_000;

/// Most `IN` lists per statement (a batch from a few msg_servers needs one statement).
const LOOKUPS_PER_STATEMENT: usize = 16;

/// Steps 1-4: de-duplication, membership, relations, ids.
pub(super) async fn prepare(
    inner: &Inner,
    relations: &mut RelationCache,
    in_flight: &InFlight,
    items: &mut [Item],
) -> StorageResult<()> {
    dedup(inner, items).await?;
    check_groups(inner, items).await?;
    resolve_relations(inner, relations, items).await?;
    allocate_ids(inner, in_flight, items).await
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
    if !lookup.is_empty() {
        let found = stored_request_ids(inner.pools.primary(), lookup.iter().map(|c| c.1)).await?;
        for &(index, rid) in &lookup {
            if let (Some(&msg_id), Item::Msg(m)) = (found.get(&rid), &mut items[index]) {
                m.result = Some(Ok(StoreOutcome::Duplicate(msg_id)));
                inner.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// Request ids already stored, with their message ids. One `origin = ? AND seq IN (...)`
/// part per origin (a msg_server process): a single-column IN list is cheap to plan, unlike
/// OR'ed (origin, seq) pairs. The parts go as one `UNION ALL` of SQL text: one round trip
/// where a prepared statement per origin took two each (the values are integers).
pub(super) async fn stored_request_ids(
    pool: &sqlx::MySqlPool,
    rids: impl Iterator<Item = RequestId>,
) -> StorageResult<HashMap<RequestId, u32>> {
    let mut by_origin: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for rid in rids {
        by_origin.entry(rid.origin).or_default().push(rid.seq);
    }
    let mut parts: Vec<String> = Vec::new();
    for (origin, seqs) in by_origin {
        for chunk in seqs.chunks(IDS_PER_LOOKUP) {
            let mut part = format!(
                "SELECT origin, seq, msgId FROM im_store_request WHERE origin = {origin} AND seq IN ("
            );
            push_int_list(&mut part, chunk);
            part.push(')');
            parts.push(part);
        }
    }
    let mut out = HashMap::new();
    for statement in parts.chunks(LOOKUPS_PER_STATEMENT) {
        let text = statement.join(" UNION ALL ");
        for row in sqlx::raw_sql(sql(text)).fetch_all(pool).await? {
            let origin: u64 = sqlx::Row::try_get_unchecked(&row, 0)?;
            let seq: u64 = sqlx::Row::try_get_unchecked(&row, 1)?;
            out.insert(RequestId { origin, seq }, col_u32(&row, 2)?);
        }
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
    relations: &mut RelationCache,
    items: &mut [Item],
) -> StorageResult<()> {
    let mut missing: Vec<(u32, u32)> = msgs_mut(items)
        .filter(|m| m.open() && !m.msg.msg_type.is_group())
        .map(|m| relations::pair(m.msg.from_id, m.msg.to_id))
        .filter(|p| !relations.map.contains_key(p))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        for (p, id) in relations::resolve(inner, &missing).await? {
            relations.remember(p, id);
        }
    }
    for m in msgs_mut(items).filter(|m| m.open()) {
        if m.msg.msg_type.is_group() {
            m.conv = Some(Conv::Group(m.msg.to_id));
            continue;
        }
        let p = relations::pair(m.msg.from_id, m.msg.to_id);
        match relations.map.get(&p) {
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

async fn allocate_ids(
    inner: &Inner,
    in_flight: &InFlight,
    items: &mut [Item],
) -> StorageResult<()> {
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
            // The batch still committing holds ids MySQL does not show yet.
            let floor = max_stored_id(inner, conv)
                .await?
                .max(in_flight.last_ids.get(&conv).copied().unwrap_or(0));
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
