//! The data tables `imctl migrate` copies, their columns, and the canonical row encoding the
//! checksums are computed over.
//!
//! Both backends use the same table and column names (only the argon2 side table is named
//! `IMUserArgon2` in SQLite and `im_user_argon2` in MySQL). The first column of every table
//! is its integer primary key; rows are read and copied in its order.
//!
//! Not copied, on purpose: the schema version tables (`IMSchemaVersion`, `im_schema_version`:
//! the destination's own migration writes them), the store-request de-duplication tables
//! (`IMRequestDedup`, `im_store_request`: they only guard retries of the last minutes, and
//! msg_servers talking to the new store start new request ids), and the `IMCache*` tables
//! (copied as cache data, see [`super::cache`]).

use std::fmt;

/// How a column's values are read, written and encoded for the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer (ids, times, counts, status).
    Int,
    /// UTF-8 text.
    Text,
    /// Message `content`: arbitrary bytes (SQLite BLOB; MySQL varchar, with non-UTF-8 bytes
    /// escaped as `mysql::content` does).
    Bytes,
}

/// One column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name (the same in both backends).
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
}

const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
    }
}

const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}

const fn bytes(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Bytes,
    }
}

/// One table to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// Name in SQLite; also the name in reports.
    pub name: &'static str,
    /// Name in MySQL.
    pub mysql: &'static str,
    /// Columns; the first is the integer primary key.
    pub columns: &'static [Column],
    /// Whether the destination has a unique key besides the primary key (rows of an original
    /// database that break it are skipped and reported).
    pub unique_key: bool,
}

impl TableSpec {
    /// The primary key column.
    pub fn key(&self) -> &'static str {
        self.columns[0].name
    }
}

const ADMIN: &[Column] = &[
    int("id"),
    text("uname"),
    text("pwd"),
    int("status"),
    int("created"),
    int("updated"),
];
const AUDIO: &[Column] = &[
    int("id"),
    int("fromId"),
    int("toId"),
    text("path"),
    int("size"),
    int("duration"),
    int("created"),
];
const DEPART: &[Column] = &[
    int("id"),
    text("departName"),
    int("priority"),
    int("parentId"),
    int("status"),
    int("created"),
    int("updated"),
];
const DISCOVERY: &[Column] = &[
    int("id"),
    text("itemName"),
    text("itemUrl"),
    int("itemPriority"),
    int("status"),
    int("created"),
    int("updated"),
];
const GROUP: &[Column] = &[
    int("id"),
    text("name"),
    text("avatar"),
    int("creator"),
    int("type"),
    int("userCnt"),
    int("status"),
    int("version"),
    int("lastChated"),
    int("updated"),
    int("created"),
];
const GROUP_MEMBER: &[Column] = &[
    int("id"),
    int("groupId"),
    int("userId"),
    int("status"),
    int("created"),
    int("updated"),
];
const GROUP_MESSAGE: &[Column] = &[
    int("id"),
    int("groupId"),
    int("userId"),
    int("msgId"),
    bytes("content"),
    int("type"),
    int("status"),
    int("updated"),
    int("created"),
];
const MESSAGE: &[Column] = &[
    int("id"),
    int("relateId"),
    int("fromId"),
    int("toId"),
    int("msgId"),
    bytes("content"),
    int("type"),
    int("status"),
    int("updated"),
    int("created"),
];
const RECENT_SESSION: &[Column] = &[
    int("id"),
    int("userId"),
    int("peerId"),
    int("type"),
    int("status"),
    int("created"),
    int("updated"),
];
const RELATION: &[Column] = &[
    int("id"),
    int("smallId"),
    int("bigId"),
    int("status"),
    int("created"),
    int("updated"),
];
const USER: &[Column] = &[
    int("id"),
    int("sex"),
    text("name"),
    text("domain"),
    text("nick"),
    text("password"),
    text("salt"),
    text("phone"),
    text("email"),
    text("avatar"),
    int("departId"),
    int("status"),
    int("created"),
    int("updated"),
    int("push_shield_status"),
    text("sign_info"),
];
const TRANSMIT_FILE: &[Column] = &[
    int("id"),
    int("fromId"),
    int("toId"),
    text("fileName"),
    int("size"),
    text("taskId"),
    int("status"),
    int("created"),
    int("updated"),
];
const ARGON2: &[Column] = &[int("userId"), text("phc"), int("updated")];

const fn plain(name: &'static str, columns: &'static [Column]) -> TableSpec {
    TableSpec {
        name,
        mysql: name,
        columns,
        unique_key: false,
    }
}

const fn keyed(name: &'static str, columns: &'static [Column]) -> TableSpec {
    TableSpec {
        name,
        mysql: name,
        columns,
        unique_key: true,
    }
}

/// Every data table, in copy order (users and groups before what refers to them, so a
/// partial copy is already readable).
pub const TABLES: &[TableSpec] = &[
    plain("IMAdmin", ADMIN),
    plain("IMDepart", DEPART),
    plain("IMUser", USER),
    TableSpec {
        name: "IMUserArgon2",
        mysql: "im_user_argon2",
        columns: ARGON2,
        unique_key: false,
    },
    plain("IMDiscovery", DISCOVERY),
    plain("IMGroup", GROUP),
    keyed("IMGroupMember", GROUP_MEMBER),
    keyed("IMRelationShip", RELATION),
    keyed("IMRecentSession", RECENT_SESSION),
    plain("IMAudio", AUDIO),
    plain("IMMessage_0", MESSAGE),
    plain("IMMessage_1", MESSAGE),
    plain("IMMessage_2", MESSAGE),
    plain("IMMessage_3", MESSAGE),
    plain("IMMessage_4", MESSAGE),
    plain("IMMessage_5", MESSAGE),
    plain("IMMessage_6", MESSAGE),
    plain("IMMessage_7", MESSAGE),
    plain("IMGroupMessage_0", GROUP_MESSAGE),
    plain("IMGroupMessage_1", GROUP_MESSAGE),
    plain("IMGroupMessage_2", GROUP_MESSAGE),
    plain("IMGroupMessage_3", GROUP_MESSAGE),
    plain("IMGroupMessage_4", GROUP_MESSAGE),
    plain("IMGroupMessage_5", GROUP_MESSAGE),
    plain("IMGroupMessage_6", GROUP_MESSAGE),
    plain("IMGroupMessage_7", GROUP_MESSAGE),
    plain("IMTransmitFile", TRANSMIT_FILE),
];

/// The table named `name` (SQLite or MySQL name).
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name || t.mysql == name)
}

/// A column value as both backends can represent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL (nullable columns of the original schema: `IMUser.avatar`, `status`...).
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (message content).
    Bytes(Vec<u8>),
}

impl Value {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// One row: values in [`TableSpec::columns`] order.
pub type Row = Vec<Value>;

/// The primary key of a row (0 if the first value is not an integer, which the readers never
/// produce).
pub fn row_key(row: &Row) -> i64 {
    row.first().and_then(Value::as_int).unwrap_or(0)
}

/// md5 of the canonical encoding of a row, as a number. The encoding depends only on the
/// values, never on the backend: a tag per value (NULL, integer, text, bytes), integers as 8
/// big-endian bytes, text and bytes with a 4-byte length. Text and bytes get different tags
/// so a value that changed kind on the way is noticed.
pub fn row_hash(row: &Row) -> u128 {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&(row.len() as u32).to_be_bytes());
    for value in row {
        match value {
            Value::Null => buf.push(0),
            Value::Int(v) => {
                buf.push(1);
                buf.extend_from_slice(&v.to_be_bytes());
            }
            Value::Text(s) => {
                buf.push(2);
                buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                buf.push(3);
                buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
                buf.extend_from_slice(b);
            }
        }
    }
    u128::from_be_bytes(md5::compute(&buf).0)
}

/// Row count and checksum of a set of rows: the wrapping sum of the rows' [`row_hash`]es.
/// A sum does not depend on the order rows are read in, and rows can be taken out of it
/// (rows skipped on purpose are subtracted before comparing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksum {
    /// Rows.
    pub rows: u64,
    /// Sum of the row hashes.
    pub sum: u128,
}

impl Checksum {
    /// Adds one row.
    pub fn add(&mut self, row: &Row) {
        self.add_hash(row_hash(row));
    }

    /// Adds one row by its hash.
    pub fn add_hash(&mut self, hash: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// `self` without the rows of `other`.
    pub fn minus(&self, other: &Checksum) -> Checksum {
        Checksum {
            rows: self.rows.saturating_sub(other.rows),
            sum: self.sum.wrapping_sub(other.sum),
        }
    }

    /// The sum as 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }

    /// Parses [`Checksum::hex`] output.
    pub fn parse_sum(hex: &str) -> Option<u128> {
        u128::from_str_radix(hex.trim(), 16).ok()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, {}", self.rows, self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_once_with_an_integer_key() {
        assert_eq!(TABLES.len(), 11 + 16);
        for t in TABLES {
            assert_eq!(t.columns[0].kind, Kind::Int, "{}", t.name);
            assert_eq!(table(t.name), Some(t));
            assert_eq!(table(t.mysql), Some(t));
        }
        assert_eq!(table("im_user_argon2").map(|t| t.key()), Some("userId"));
        assert!(table("IMRequestDedup").is_none());
    }

    #[test]
    fn checksums_are_order_free_and_subtractable() {
        let a = vec![Value::Int(1), Value::Text("x".into()), Value::Null];
        let b = vec![Value::Int(2), Value::Bytes(b"x".to_vec()), Value::Int(0)];
        let (mut ab, mut ba, mut only_a) = (
            Checksum::default(),
            Checksum::default(),
            Checksum::default(),
        );
        ab.add(&a);
        ab.add(&b);
        ba.add(&b);
        ba.add(&a);
        only_a.add(&a);
        assert_eq!(ab, ba);
        let mut only_b = Checksum::default();
        only_b.add(&b);
        assert_eq!(ab.minus(&only_a), only_b);
        assert_eq!(Checksum::parse_sum(&ab.hex()), Some(ab.sum));
        // Kinds, NULLs and empty values are told apart.
        let text_x = vec![Value::Text("x".into())];
        let bytes_x = vec![Value::Bytes(b"x".to_vec())];
        assert_ne!(row_hash(&text_x), row_hash(&bytes_x));
        assert_ne!(
            row_hash(&vec![Value::Null]),
            row_hash(&vec![Value::Text(String::new())])
        );
        assert_ne!(row_hash(&vec![Value::Int(0)]), row_hash(&vec![Value::Null]));
    }
}
