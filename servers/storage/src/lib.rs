//! im-storage: everything db_proxy_server (and `imctl migrate`) stores.
//!
//! * [`types`]: domain types of our own (users, departments, sessions, messages, groups,
//!   tokens, offline files...), independent of the wire types.
//! * [`Store`]: every read and write, as business operations with the durability, ordering
//!   and transaction guarantees described on the trait.
//! * Backends: SQLite (embedded default: one file, WAL, one writer thread with group commit,
//!   a reader pool, counters in tables of the same file) and MySQL/MariaDB on the original
//!   TeamTalk schema with Redis for counters and caches (original key names).
//! * [`config`]: the `[storage]` config section; [`password`]: password checks (Decisions 9).
//! * [`migrate`]: `imctl migrate` (schema creation, copies between backends, TeamTalk import).

pub mod config;
pub mod error;
pub mod migrate;
pub mod mysql;
pub mod password;
pub mod redis_cache;
pub mod sqlite;
pub mod store;
pub mod types;

pub use config::StorageConfig;
pub use error::{StorageError, StorageResult};
pub use mysql::MysqlStore;
pub use sqlite::SqliteStore;
pub use store::Store;
pub use types::*;
