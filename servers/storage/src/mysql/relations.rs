//! `IMRelationShip`: the relate id of a user pair, which names its message sequence and picks
//! its message shard. Created on a pair's first message, never duplicated (WEAKNESSES 26):
//! with the unique key, by `INSERT ... ON DUPLICATE KEY UPDATE`; without it (old data holds
//! duplicates), by a locking read in a transaction, which also blocks a concurrent insert of
//! the same pair.
//!
//! When old data holds several rows for a pair, every path picks the same one: the active
//! (status 0) row with the lowest id, else the lowest id (which is then reactivated).

use std::collections::HashMap;

use sqlx::MySqlPool;

use super::Inner;
use super::rows::{col_u32, now, sql};
use crate::error::StorageResult;
use crate::types::UserId;

/// Most pairs looked up in one statement (see `sessions::ROWS_PER_UPSERT` for why small).
const CHUNK: usize = 100;

/// (smallId, bigId) of a pair.
pub fn pair(a: UserId, b: UserId) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// The active relation of a pair, if any (reads; nothing is created).
pub async fn find(pool: &MySqlPool, a: UserId, b: UserId) -> StorageResult<Option<u32>> {
    let (small, big) = pair(a, b);
    let row = sqlx::query(
        "SELECT id FROM IMRelationShip WHERE smallId = ? AND bigId = ? AND status = 0 \
         ORDER BY id LIMIT 1",
    )
    .bind(small)
    .bind(big)
    .fetch_optional(pool)
    .await?;
    row.map(|r| col_u32(&r, 0)).transpose()
}

/// Relate ids of `pairs` (sorted, distinct), creating or reactivating relations as needed.
pub async fn resolve(
    inner: &Inner,
    pairs: &[(u32, u32)],
) -> StorageResult<HashMap<(u32, u32), u32>> {
    if inner.unique.relation {
        resolve_keyed(inner.pools.primary(), pairs).await
    } else {
        let mut out = HashMap::with_capacity(pairs.len());
        for &p in pairs {
            out.insert(p, resolve_locked(inner.pools.primary(), p).await?);
        }
        Ok(out)
    }
}

/// Rows of `pairs`: pair -> (id, active) of the preferred row.
async fn select(
    pool: &MySqlPool,
    pairs: &[(u32, u32)],
) -> StorageResult<HashMap<(u32, u32), (u32, bool)>> {
    let mut found: HashMap<(u32, u32), (u32, bool)> = HashMap::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        let cond = vec!["(smallId = ? AND bigId = ?)"; chunk.len()].join(" OR ");
        let text =
            format!("SELECT smallId, bigId, id, (status <=> 0) FROM IMRelationShip WHERE {cond}");
        let mut q = sqlx::query(sql(text)).persistent(false);
        for &(small, big) in chunk {
            q = q.bind(small).bind(big);
        }
        for row in q.fetch_all(pool).await? {
            let key = (col_u32(&row, 0)?, col_u32(&row, 1)?);
            let id = col_u32(&row, 2)?;
            let active = col_u32(&row, 3)? == 1;
            let better = match found.get(&key) {
                None => true,
                Some(&(old_id, old_active)) => {
                    (active, std::cmp::Reverse(id)) > (old_active, std::cmp::Reverse(old_id))
                }
            };
            if better {
                found.insert(key, (id, active));
            }
        }
    }
    Ok(found)
}

async fn resolve_keyed(
    pool: &MySqlPool,
    pairs: &[(u32, u32)],
) -> StorageResult<HashMap<(u32, u32), u32>> {
    let found = select(pool, pairs).await?;
    let mut out = HashMap::with_capacity(pairs.len());
    let mut missing = Vec::new();
    for &p in pairs {
        match found.get(&p) {
            Some(&(id, true)) => {
                out.insert(p, id);
            }
            _ => missing.push(p),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let t = now();
    for chunk in missing.chunks(CHUNK) {
        let values = vec!["(?,?,0,?,?)"; chunk.len()].join(",");
        // `updated` first: it must see the old status.
        let text = format!(
            "INSERT INTO IMRelationShip (smallId, bigId, status, created, updated) VALUES {values} \
             ON DUPLICATE KEY UPDATE updated = IF(status <=> 0, updated, VALUES(updated)), status = 0"
        );
        let mut q = sqlx::query(sql(text)).persistent(false);
        for &(small, big) in chunk {
            q = q.bind(small).bind(big).bind(t).bind(t);
        }
        q.execute(pool).await?;
    }
    let created = select(pool, &missing).await?;
    for p in missing {
        if let Some(&(id, _)) = created.get(&p) {
            out.insert(p, id);
        }
    }
    Ok(out)
}

async fn resolve_locked(pool: &MySqlPool, (small, big): (u32, u32)) -> StorageResult<u32> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT id, (status <=> 0) FROM IMRelationShip WHERE smallId = ? AND bigId = ? \
         ORDER BY (status <=> 0) DESC, id LIMIT 1 FOR UPDATE",
    )
    .bind(small)
    .bind(big)
    .fetch_optional(&mut *tx)
    .await?;
    let t = now();
    let id = match row {
        Some(row) => {
            let id = col_u32(&row, 0)?;
            if col_u32(&row, 1)? != 1 {
                sqlx::query("UPDATE IMRelationShip SET status = 0, updated = ? WHERE id = ?")
                    .bind(t)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            id
        }
        None => {
            let done = sqlx::query(
                "INSERT INTO IMRelationShip (smallId, bigId, status, created, updated) \
                 VALUES (?, ?, 0, ?, ?)",
            )
            .bind(small)
            .bind(big)
            .bind(t)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            u32::try_from(done.last_insert_id()).unwrap_or(0)
        }
    };
    tx.commit().await?;
    Ok(id)
}
