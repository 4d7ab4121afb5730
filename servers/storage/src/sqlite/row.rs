//! Tolerant column readers.
//!
//! Data may come from an original MySQL database copied table by table, where a column
//! declared as text can hold a number and the other way round, and nullable columns hold
//! NULL. These readers accept any storage class and fall back to 0 / "" instead of failing a
//! whole query on one odd value.

use rusqlite::Row;
use rusqlite::types::ValueRef;

/// An unsigned 32-bit column (ids, times, counts); out-of-range values are clamped.
pub(super) fn u32_at(row: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(v) => v.clamp(0, i64::from(u32::MAX)) as u32,
        ValueRef::Real(f) => f as u32,
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        ValueRef::Null => 0,
    })
}

/// A small unsigned column (status, sex, type).
pub(super) fn u8_at(row: &Row<'_>, i: usize) -> rusqlite::Result<u8> {
    Ok(u32_at(row, i)?.min(u32::from(u8::MAX)) as u8)
}

/// A text column (lossy for invalid UTF-8).
pub(super) fn text_at(row: &Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(v) => v.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    })
}

/// A byte column (message content): the exact bytes, whether stored as BLOB or TEXT.
pub(super) fn bytes_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
        ValueRef::Integer(v) => v.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Null => Vec::new(),
    })
}
