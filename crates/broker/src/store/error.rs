//! The one error type of the store.

/// Everything a store operation can fail with.
///
/// The variants map onto HTTP answers: [`NotFound`](Self::NotFound) → 404,
/// [`Conflict`](Self::Conflict) → 409, [`Invalid`](Self::Invalid) → 400, the rest → 500.
/// Messages name tables, columns and user-chosen names, never a secret, a token, a hash
/// or a ticket id.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing (`"user"`, `"group"`, `"service"`, …) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique name or key is already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The arguments break a rule of the data model.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A stored value cannot be read back (a row that breaks the model's rules).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table the row came from.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The schema migrations failed or do not match the database.
    #[error("database migration failed: {0}")]
    Migration(sqlx::migrate::MigrateError),
    /// The database driver failed (connection, I/O, constraint not otherwise mapped).
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

// The driver's message is part of `Display`, so it is not also a `source`: error chains
// (`{:#}` in the binaries) would print it twice.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(error)
    }
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`] with `what` as the
    /// message, and every other error to [`StoreError::Database`].
    pub(crate) fn unique(error: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what()),
            _ => Self::Database(error),
        }
    }
}
