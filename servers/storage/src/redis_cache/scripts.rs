//! Lua scripts: each runs atomically in Redis, which is what keeps id allocation and the
//! read-modify-write counter updates correct when several db_proxy processes share a Redis.
//! They are sent with EVAL (Redis caches the compiled script by its hash), so nothing has to be
//! loaded after a Redis restart or a cluster failover.

use redis::Cmd;

/// Allocates `ARGV[1]` ids from an existing sequence key and returns the last one, or -1 when
/// the key is missing (or not a number), so that the caller re-seeds it from MySQL instead of
/// letting INCRBY restart the sequence at 1 (WEAKNESSES 24).
const ALLOC: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or tonumber(v) == nil then return -1 end
return redis.call('INCRBY', KEYS[1], ARGV[1])
";

/// Raises a sequence key to at least `ARGV[1]` (the highest id stored in MySQL), then
/// allocates `ARGV[2]` ids. Never lowers it: another process may have allocated past the
/// floor already.
const SEED_ALLOC: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]))
if v == nil or v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('INCRBY', KEYS[1], ARGV[2])
";

/// Copies the group's message count onto a user's read mark (`<U>_<G>_im_user_group`), as the
/// original's HGETALL + HMSET does, but atomically. A missing count copies as 0.
const COPY_COUNT: &str = r"
local c = redis.call('HGET', KEYS[1], 'count')
if not c then c = '0' end
redis.call('HSET', KEYS[2], 'count', c)
return tonumber(c)
";

/// Writes a rebuilt member hash only if the key is still missing, so that a rebuild from an
/// older MySQL read never overwrites a hash a membership change has written meanwhile.
const FILL_IF_MISSING: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
";

/// Blanks `device_<U>` only if its token (without the `ios:`/`android:` prefix) is `ARGV[1]`.
const CLEAR_TOKEN_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t = v
if string.sub(v, 1, 4) == 'ios:' then t = string.sub(v, 5)
elseif string.sub(v, 1, 8) == 'android:' then t = string.sub(v, 9) end
if t ~= '' and t == ARGV[1] then redis.call('SET', KEYS[1], '') return 1 end
return 0
";

/// Blanks a string key only if it still holds `ARGV[1]` (the reverse `device_<token>` entry).
const CLEAR_IF_EQUAL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], '') return 1 end
return 0
";

fn eval(script: &str, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd
}

/// [`ALLOC`]: `n` ids from `key`; replies the last id or -1.
pub fn alloc(key: &str, n: u32) -> Cmd {
    let mut cmd = eval(ALLOC, &[key]);
    cmd.arg(n);
    cmd
}

/// [`SEED_ALLOC`]: raise `key` to `floor`, then `n` ids; replies the last id.
pub fn seed_alloc(key: &str, floor: u32, n: u32) -> Cmd {
    let mut cmd = eval(SEED_ALLOC, &[key]);
    cmd.arg(floor).arg(n);
    cmd
}

/// [`COPY_COUNT`]: the user's mark becomes the group count; replies the count.
pub fn copy_count(group_count_key: &str, user_group_key: &str) -> Cmd {
    eval(COPY_COUNT, &[group_count_key, user_group_key])
}

/// [`FILL_IF_MISSING`]: writes `fields` into `key` unless it exists; replies 1 if written.
pub fn fill_if_missing(key: &str, fields: &[(u32, u32)]) -> Cmd {
    let mut cmd = eval(FILL_IF_MISSING, &[key]);
    for (field, value) in fields {
        cmd.arg(*field).arg(*value);
    }
    cmd
}

/// [`CLEAR_TOKEN_IF`]: blank `device_<U>` if it holds `token`; replies 1 if blanked.
pub fn clear_token_if(user_key: &str, token: &str) -> Cmd {
    let mut cmd = eval(CLEAR_TOKEN_IF, &[user_key]);
    cmd.arg(token);
    cmd
}

/// [`CLEAR_IF_EQUAL`]: blank `key` if it holds `value`; replies 1 if blanked.
pub fn clear_if_equal(key: &str, value: &str) -> Cmd {
    let mut cmd = eval(CLEAR_IF_EQUAL, &[key]);
    cmd.arg(value);
    cmd
}
