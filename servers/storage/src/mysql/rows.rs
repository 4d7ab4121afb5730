//! Small helpers: column decoding that tolerates the original schema's mix of signed,
//! unsigned and nullable integer columns, placeholder lists, and the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Row};

use crate::error::{StorageError, StorageResult};
use crate::types::Timestamp;

/// Unix time now, in seconds.
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// An integer column as u32 (NULL reads as 0). Decoding is unchecked because the original
/// schema mixes `int(11)` and `int(11) unsigned` for ids; any non-negative value that fits is
/// accepted.
pub fn col_u32(row: &MySqlRow, index: usize) -> StorageResult<u32> {
    let value: Option<u64> = row
        .try_get_unchecked(index)
        .map_err(|e| StorageError::Database(format!("column {index}: {e}")))?;
    u32::try_from(value.unwrap_or(0))
        .map_err(|_| StorageError::Database(format!("column {index}: {value:?} out of range")))
}

/// An integer column as u8 (NULL reads as 0; larger values saturate).
pub fn col_u8(row: &MySqlRow, index: usize) -> StorageResult<u8> {
    Ok(u8::try_from(col_u32(row, index)?).unwrap_or(u8::MAX))
}

/// A text column (NULL reads as "").
pub fn col_str(row: &MySqlRow, index: usize) -> StorageResult<String> {
    let value: Option<String> = row
        .try_get_unchecked(index)
        .map_err(|e| StorageError::Database(format!("column {index}: {e}")))?;
    Ok(value.unwrap_or_default())
}

/// A text column as bytes (NULL reads as empty).
pub fn col_bytes(row: &MySqlRow, index: usize) -> StorageResult<Vec<u8>> {
    let value: Option<Vec<u8>> = row
        .try_get_unchecked(index)
        .map_err(|e| StorageError::Database(format!("column {index}: {e}")))?;
    Ok(value.unwrap_or_default())
}

/// `?,?,?` with `n` placeholders.
pub fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// Marks SQL text built from our own constants and placeholder lists (never from input; every
/// value is bound, WEAKNESSES 2) as safe for sqlx.
pub fn sql(text: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(text)
}

/// Sorted, de-duplicated copy of `ids` (stable lock order and bounded `IN` lists).
pub fn unique_sorted(ids: &[u32]) -> Vec<u32> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(0), "");
        assert_eq!(placeholders(3), "?,?,?");
        assert_eq!(unique_sorted(&[3, 1, 3, 2]), vec![1, 2, 3]);
    }
}
