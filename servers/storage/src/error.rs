//! Storage errors.

use thiserror::Error;

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// Why a storage operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The database (SQLite or MySQL) failed; the operation had no effect (its transaction
    /// was rolled back).
    #[error("database error: {0}")]
    Database(String),
    /// The cache (Redis) failed.
    #[error("cache error: {0}")]
    Cache(String),
    /// The request is not valid (empty name, empty member list...); says what is wrong.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A uniqueness rule would be broken (e.g. an active user with that name exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store is shutting down or its worker is gone.
    #[error("storage is closed")]
    Closed,
    /// Opening or migrating the store failed.
    #[error("cannot open storage: {0}")]
    Open(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

impl From<redis::RedisError> for StorageError {
    fn from(e: redis::RedisError) -> Self {
        StorageError::Cache(e.to_string())
    }
}
