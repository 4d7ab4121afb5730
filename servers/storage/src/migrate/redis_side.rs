//! Reading and writing the cache data in a standalone Redis under the original key names
//! and database numbers ([`RedisConfig::dbs`], a key prefix for shared test servers).
//!
//! Keys are found with SCAN per name pattern and read with pipelined HGETALL/MGET. `device_*`
//! holds two kinds of keys (STORAGE.md 5.2): a suffix that is a decimal user id is
//! `device_<U>`, anything else `device_<token>` (device tokens are long hex or base64 strings,
//! never a bare number of up to ten digits).
//!
//! Writing replaces whole keys (DEL then HSET for hashes, SET for strings) and touches no
//! other key: a destination Redis should not hold another deployment's data.

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;
use redis::{Cmd, IntoConnectionInfo};

use super::cache::{CacheData, Members};
use super::{MigrateError, MigrateResult};
use crate::config::RedisConfig;
use crate::redis_cache::Keys;

/// Keys per SCAN step and commands per pipeline: large enough for few round trips, small
/// enough to keep one reply a few MiB.
const CHUNK: usize = 1000;

/// One Redis deployment: a connection per purpose.
pub(super) struct RedisSide {
    keys: Keys,
    /// `redis://host:port` for reports (no password).
    pub shown: String,
    unread: MultiplexedConnection,
    group_set: MultiplexedConnection,
    token: MultiplexedConnection,
    group_member: MultiplexedConnection,
}

impl RedisSide {
    /// Connects to every database of `config.dbs`.
    pub async fn connect(config: &RedisConfig) -> MigrateResult<RedisSide> {
        if !config.cluster_urls.is_empty() {
            return Err(MigrateError::Url(
                "Redis Cluster: migrate reads and writes a standalone Redis only; copy into a \
                 standalone Redis and move the keys with redis-cli --cluster import"
                    .into(),
            ));
        }
        let info =
            config.url.as_str().into_connection_info().map_err(|e| {
                MigrateError::Url(format!("redis URL {:?}: {e}", shown(&config.url)))
            })?;
        let shown = shown(&config.url);
        let open = |db: u8| {
            let settings = info.redis_settings().clone().set_db(i64::from(db));
            let info = info.clone().set_redis_settings(settings);
            let shown = shown.clone();
            async move {
                let client = redis::Client::open(info)?;
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| MigrateError::Cache(format!("{shown} db {db}: {e}")))
            }
        };
        let dbs = config.dbs;
        Ok(RedisSide {
            keys: Keys::new(&config.key_prefix, false),
            unread: open(dbs.unread).await?,
            group_set: open(dbs.group_set).await?,
            token: open(dbs.token).await?,
            group_member: open(dbs.group_member).await?,
            shown,
        })
    }

    /// Reads every kind of cache data.
    pub async fn read(&self) -> MigrateResult<CacheData> {
        let prefix = self.keys.prefix();
        let mut data = CacheData::default();
        let mut bad = 0u64;
        let mut conn = self.unread.clone();

        for (key, hash) in hashes(&mut conn, prefix, "unread_*").await? {
            let Some(user) = key.strip_prefix("unread_").and_then(id) else {
                bad += 1;
                continue;
            };
            for (peer, count) in hash {
                match (id(&peer), id(&count)) {
                    (Some(peer), Some(count)) => {
                        data.unread.insert((user, peer), count);
                    }
                    _ => bad += 1,
                }
            }
        }
        for (key, value) in strings(&mut conn, prefix, "msg_id_*").await? {
            match (
                key.strip_prefix("msg_id_").and_then(id),
                value.as_deref().and_then(id),
            ) {
                (Some(relation), Some(last)) => {
                    data.msg_ids.insert(relation, last);
                }
                _ => bad += 1,
            }
        }
        let mut last_ids = BTreeMap::new();
        for (key, value) in strings(&mut conn, prefix, "group_msg_id_*").await? {
            match (
                key.strip_prefix("group_msg_id_").and_then(id),
                value.as_deref().and_then(id),
            ) {
                (Some(group), Some(last)) => {
                    last_ids.insert(group, last);
                }
                _ => bad += 1,
            }
        }
        let mut counts = BTreeMap::new();
        for (key, hash) in hashes(&mut conn, prefix, "*_im_group_msg").await? {
            let group = key.strip_suffix("_im_group_msg").and_then(id);
            match (group, hash.get("count").and_then(|c| id(c))) {
                (Some(group), Some(count)) => {
                    counts.insert(group, count);
                }
                _ => bad += 1,
            }
        }
        // A group whose message hash never appeared has sent nothing yet (the original
        // creates it on the first message); one whose id key is gone resumes at its count.
        for (&group, &last) in &last_ids {
            let count = counts.get(&group).copied().unwrap_or(last);
            data.group_counters.insert(group, (last, count));
        }
        for (&group, &count) in &counts {
            data.group_counters.entry(group).or_insert((count, count));
        }
        for (key, hash) in hashes(&mut conn, prefix, "*_im_user_group").await? {
            let pair = key
                .strip_suffix("_im_user_group")
                .and_then(|k| k.split_once('_'))
                .and_then(|(u, g)| Some((id(u)?, id(g)?)));
            match (pair, hash.get("count").and_then(|c| id(c))) {
                (Some(pair), Some(count)) => {
                    data.read_marks.insert(pair, count);
                }
                _ => bad += 1,
            }
        }

        let mut conn = self.token.clone();
        for (key, value) in strings(&mut conn, prefix, "device_*").await? {
            let (Some(suffix), Some(value)) = (key.strip_prefix("device_"), value) else {
                bad += 1;
                continue;
            };
            if let Some(user) = user_id(suffix) {
                data.device_tokens.insert(user, value);
            } else if value.is_empty() {
                data.token_owners.insert(suffix.to_owned(), 0);
            } else if let Some(owner) = id(&value) {
                data.token_owners.insert(suffix.to_owned(), owner);
            } else {
                bad += 1;
            }
        }

        let mut conn = self.group_set.clone();
        for (key, hash) in hashes(&mut conn, prefix, "group_set_*").await? {
            let Some(group) = key.strip_prefix("group_set_").and_then(id) else {
                bad += 1;
                continue;
            };
            for (field, value) in hash {
                let setting = field
                    .split_once('_')
                    .and_then(|(u, t)| Some((id(u)?, id(t)?)));
                match (setting, id(&value)) {
                    (Some((user, kind)), Some(value)) => {
                        data.group_settings.insert((group, user, kind), value);
                    }
                    _ => bad += 1,
                }
            }
        }

        let mut conn = self.group_member.clone();
        for (key, hash) in hashes(&mut conn, prefix, "group_member_*").await? {
            let Some(group) = key.strip_prefix("group_member_").and_then(id) else {
                bad += 1;
                continue;
            };
            let entry = data.group_members.entry(group).or_default();
            for (user, joined) in hash {
                match (id(&user), id(&joined)) {
                    (Some(user), Some(joined)) => {
                        entry.insert(user, joined);
                    }
                    _ => bad += 1,
                }
            }
        }
        data.malformed = bad;
        Ok(data)
    }

    /// Writes `data` and the member hashes `members`.
    pub async fn write(&self, data: &CacheData, members: &Members) -> MigrateResult<()> {
        let k = &self.keys;
        let mut cmds = Vec::new();
        let mut by_user: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        for (&(user, peer), &count) in &data.unread {
            by_user.entry(user).or_default().push((peer, count));
        }
        for (user, fields) in by_user {
            replace_hash(&mut cmds, &k.unread(user), &fields);
        }
        for (&relation, &last) in &data.msg_ids {
            cmds.push(
                redis::cmd("SET")
                    .arg(k.msg_id(relation))
                    .arg(last)
                    .to_owned(),
            );
        }
        for (&group, &(last, count)) in &data.group_counters {
            cmds.push(
                redis::cmd("SET")
                    .arg(k.group_msg_id(group))
                    .arg(last)
                    .to_owned(),
            );
            replace_hash(&mut cmds, &k.group_count(group), &[("count", count)]);
        }
        for (&(user, group), &count) in &data.read_marks {
            replace_hash(&mut cmds, &k.user_group(user, group), &[("count", count)]);
        }
        run(&mut self.unread.clone(), cmds).await?;

        let mut cmds = Vec::new();
        for (&user, value) in &data.device_tokens {
            cmds.push(
                redis::cmd("SET")
                    .arg(k.device_of_user(user))
                    .arg(value)
                    .to_owned(),
            );
        }
        for (token, &owner) in &data.token_owners {
            let value = if owner == 0 {
                String::new()
            } else {
                owner.to_string()
            };
            cmds.push(
                redis::cmd("SET")
                    .arg(k.device_owner(token))
                    .arg(value)
                    .to_owned(),
            );
        }
        run(&mut self.token.clone(), cmds).await?;

        let mut cmds = Vec::new();
        let mut by_group: BTreeMap<u32, Vec<(String, u32)>> = BTreeMap::new();
        for (&(group, user, kind), &value) in &data.group_settings {
            by_group
                .entry(group)
                .or_default()
                .push((format!("{user}_{kind}"), value));
        }
        for (group, fields) in by_group {
            replace_hash(&mut cmds, &k.group_set(group), &fields);
        }
        run(&mut self.group_set.clone(), cmds).await?;

        let mut cmds = Vec::new();
        for (&group, list) in members {
            let fields: Vec<(u32, u32)> = list.iter().map(|(&u, &j)| (u, j)).collect();
            replace_hash(&mut cmds, &k.group_member(group), &fields);
        }
        run(&mut self.group_member.clone(), cmds).await
    }
}

/// `redis://host:port/...` without a password.
fn shown(url: &str) -> String {
    crate::mysql::pool::redact(url)
}

/// DEL + one HSET per [`CHUNK`] fields (nothing for an empty hash: Redis has none).
fn replace_hash<F: redis::ToRedisArgs, V: redis::ToRedisArgs>(
    cmds: &mut Vec<Cmd>,
    key: &str,
    fields: &[(F, V)],
) {
    if fields.is_empty() {
        return;
    }
    cmds.push(redis::cmd("DEL").arg(key).to_owned());
    for chunk in fields.chunks(CHUNK) {
        let mut hset = redis::cmd("HSET");
        hset.arg(key);
        for (field, value) in chunk {
            hset.arg(field).arg(value);
        }
        cmds.push(hset);
    }
}

async fn run(conn: &mut MultiplexedConnection, cmds: Vec<Cmd>) -> MigrateResult<()> {
    for chunk in cmds.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for cmd in chunk {
            pipe.add_command(cmd.clone()).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// A decimal u32 (cluster hash tags `{7}` allowed, as in `{7}_im_group_msg`).
fn id(s: &str) -> Option<u32> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The user id of a `device_<U>` suffix (digits only).
fn user_id(suffix: &str) -> Option<u32> {
    if suffix.len() > 10 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    suffix.parse().ok()
}

/// `pattern` after `prefix`, with the prefix's glob characters escaped.
fn pattern(prefix: &str, pattern: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + pattern.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str(pattern);
    out
}

/// Keys matching `prefix` + `glob`, without the prefix (non-UTF-8 keys are left out).
async fn scan(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    glob: &str,
) -> MigrateResult<Vec<String>> {
    let pattern = pattern(prefix, glob);
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(conn)
            .await?;
        out.extend(
            keys.into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter_map(|k| k.strip_prefix(prefix).map(str::to_owned)),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every hash matching the pattern: (key without prefix, fields).
async fn hashes(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    glob: &str,
) -> MigrateResult<Vec<(String, HashMap<String, String>)>> {
    let keys = scan(conn, prefix, glob).await?;
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("HGETALL").arg(format!("{prefix}{key}"));
        }
        let replies: Vec<HashMap<Vec<u8>, Vec<u8>>> = pipe.query_async(conn).await?;
        for (key, hash) in chunk.iter().zip(replies) {
            let fields = hash
                .into_iter()
                .filter_map(|(f, v)| Some((String::from_utf8(f).ok()?, String::from_utf8(v).ok()?)))
                .collect();
            out.push((key.clone(), fields));
        }
    }
    Ok(out)
}

/// Every string matching the pattern: (key without prefix, value; `None` if not UTF-8 or
/// gone meanwhile).
async fn strings(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    glob: &str,
) -> MigrateResult<Vec<(String, Option<String>)>> {
    let keys = scan(conn, prefix, glob).await?;
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut mget = redis::cmd("MGET");
        for key in chunk {
            mget.arg(format!("{prefix}{key}"));
        }
        let values: Vec<Option<Vec<u8>>> = mget.query_async(conn).await?;
        for (key, value) in chunk.iter().zip(values) {
            out.push((key.clone(), value.and_then(|v| String::from_utf8(v).ok())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts() {
        assert_eq!(id("17"), Some(17));
        assert_eq!(id("{17}"), Some(17));
        assert_eq!(id("+17"), None);
        assert_eq!(id(""), None);
        assert_eq!(user_id("42"), Some(42));
        assert_eq!(user_id("0f1e2d3c"), None);
        assert_eq!(user_id("123456789012"), None);
        assert_eq!(pattern("t*1:", "unread_*"), "t\\*1:unread_*");
    }
}
