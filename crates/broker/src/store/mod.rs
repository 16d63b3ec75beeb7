//! The broker's storage: users, groups, services, tunnel servers, one-use tickets, login
//! sessions and the audit log, on SQLite (the embedded default) or PostgreSQL (several
//! brokers sharing one database).
//!
//! One set of queries runs on both backends through sqlx's `Any` driver; each backend has
//! its own migration folder with the same tables and columns. Every method that depends on
//! time takes `now` in Unix milliseconds; [`spawn_sweeper`] reads the broker's clock
//! ([`crate::clock`]). The store uses no broker state: it is what the state is built on.
//!
//! Ticket ids never reach the database: rows are keyed by
//! [`ticket_hash`](crate::tickets::crypto::ticket_hash), and a tunnel ticket's shared secret
//! is stored sealed under a key derived from the id. Consuming a ticket is one atomic
//! `UPDATE … WHERE used_at IS NULL AND expires_at > now RETURNING …`, so a ticket is used
//! at most once however many requests (or brokers) race for it.

mod audit;
mod connections;
mod credentials;
mod error;
mod exchange_commit;
mod live;
mod migrate;
mod oidc_users;
mod services;
mod sweep;
mod tickets;
mod types;
mod users;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use exchange_commit::ExchangeQueue;

use crate::metrics::StoreMetrics;

/// The service kinds the store validates and keeps, shared with the rest of the broker.
pub use crate::model::{CredentialMode, Protocol, Readiness, Transport};
pub use audit::{AUDIT_KINDS, AuditEvent, AuditFilter, AuditSink, StoredAuditEvent};
pub use connections::{Connection, ConnectionState, RECENT_CONNECTIONS};
pub use credentials::{MAX_CREDENTIAL_FIELD_LEN, ServiceCredentials, SessionCredential};
pub use error::StoreError;
pub use live::{EndCause, EndRequest, EndingSession, LiveSession, Revoked};
pub use services::{ExchangeService, NewService, NewTunnelServer, Service, TunnelServer};
pub use sweep::{
    ABANDONED_SESSION_GRACE_MS, STOPPED_SESSION_KEEP_MS, SweepCounts, USED_CLIENT_TICKET_KEEP_MS,
    USED_TUNNEL_TICKET_KEEP_MS, spawn_sweeper,
};
pub use tickets::{
    ClientTicket, ExchangeContext, NewClientTicket, NewNotifyTicket, NewTunnelTicket,
    StoppedSession, TicketCredential, TunnelTicket,
};
pub use types::{GroupId, ServiceId, TokenHash, TunnelServerId, UserId};
pub use users::{Group, OidcLink, User};

/// Pragmas run on every new SQLite connection. WAL lets readers run beside the writer;
/// `synchronous = NORMAL` is durable against crashes of the broker and loses at most the
/// last commits on power loss; `busy_timeout` is how long a connection waits for another
/// process's writer before failing with "database is locked". Checkpointing every 10,000
/// WAL pages (about 40 MB) instead of 1,000 writes a page that many commits touch (index
/// pages under ticket churn) back to the database once instead of ten times: a sweep of
/// 120,000 expired tickets took 2.3 s instead of 3.5 s. `secure_delete = FAST` zeroes
/// deleted rows where that costs no extra I/O, so a signed-out session's pass-through box
/// and key share do not linger in free pages.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = 10000; \
     PRAGMA secure_delete = FAST;";

/// The database behind a [`Store`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Backend {
    /// A SQLite file (or an in-memory database in tests).
    Sqlite,
    /// A PostgreSQL database, possibly shared by several brokers.
    Postgres,
}

impl Backend {
    /// The backend a database URL names: `sqlite:…` or `postgres://…`/`postgresql://…`.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            // Never echo the URL: it may carry a password.
            Err(StoreError::Invalid(
                "database URL must start with sqlite: or postgres://".to_owned(),
            ))
        }
    }
}

/// Tuning of [`Store::connect_with`]; the defaults suit one broker.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Pool size. Default: 8 for SQLite (writes are serialized in the process anyway), 10
    /// for PostgreSQL (mind the server's `max_connections` when running several brokers).
    pub max_connections: Option<u32>,
    /// How long an operation waits for a free pooled connection. Default: 30 s.
    pub acquire_timeout: Duration,
    /// Where group commits and sweeps are counted (the broker registers these in its
    /// `/metrics`). Default: counted nowhere anyone reads.
    pub metrics: StoreMetrics,
    /// Where every audit event goes once committed (the broker's audit export). Default:
    /// nowhere.
    pub audit_sink: Option<AuditSink>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(30),
            metrics: StoreMetrics::default(),
            audit_sink: None,
        }
    }
}

/// The broker's storage. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: serializes this process's write transactions, so concurrent writers
    /// queue here instead of sleeping in SQLite's busy handler. Other processes on the
    /// same file are still arbitrated by `busy_timeout`.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Where exchanges queue their writes for group commit; `None` in the writers' own
    /// handle and outside a Tokio runtime.
    exchange_queue: Option<ExchangeQueue>,
    metrics: StoreMetrics,
    audit_sink: Option<AuditSink>,
}

/// A write transaction; on SQLite it also holds the process's write lock.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    _lock: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// The connection to run statements on.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Commits the transaction (and releases the write lock).
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls the transaction back before releasing the write lock. (Dropping a `WriteTx`
    /// also rolls back, but in the background, possibly after the lock is released.)
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

/// A pooled connection for one write statement; on SQLite it holds the write lock.
pub(crate) struct Writer {
    conn: PoolConnection<Any>,
    _lock: Option<OwnedMutexGuard<()>>,
}

impl Writer {
    /// The connection to run the statement on.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Store {
    /// Connects to `url` with default [`StoreOptions`] and brings the schema up to date.
    ///
    /// `sqlite://path/to/file.db?mode=rwc` creates the file when missing (see
    /// [`DatabaseUrl::sqlite`](crate::config::DatabaseUrl::sqlite));
    /// `postgres://user:password@host/database` needs an existing database.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects to `url` and brings the schema up to date.
    ///
    /// Several processes may call this at once on one database: on PostgreSQL migrations
    /// take an advisory lock, on SQLite a process that loses the race retries.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let mut pool = AnyPoolOptions::new().acquire_timeout(options.acquire_timeout);
        match backend {
            Backend::Sqlite => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                // Every connection to an in-memory URL is a new, empty database: keep one
                // connection, forever.
                let (default_size, size_cap) = if in_memory { (1, 1) } else { (8, u32::MAX) };
                pool = pool
                    .max_connections(
                        options
                            .max_connections
                            .unwrap_or(default_size)
                            .min(size_cap),
                    )
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_PRAGMAS).await?;
                            Ok(())
                        })
                    });
                if in_memory {
                    pool = pool
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
            }
            Backend::Postgres => {
                pool = pool.max_connections(options.max_connections.unwrap_or(10));
            }
        }
        if backend == Backend::Sqlite {
            private_sqlite_files(url)?;
        }
        let pool = pool.connect(url).await?;
        let migrator = migrate::migrator(backend).await?;
        // sqlx takes no migration lock on SQLite: processes opening a file at once race to
        // apply each pending migration, and a loser fails on the winner's change (a table
        // or column that exists now). Each loss means another process applied a migration,
        // so a process loses at most once per migration; a new look finds it recorded.
        let mut retries = migrate::COUNT;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(error) if backend == Backend::Sqlite && retries > 0 => {
                    tracing::debug!(%error, "another process migrated meanwhile; looking again");
                    retries -= 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let mut store = Self {
            pool,
            backend,
            write_lock,
            exchange_queue: None,
            metrics: options.metrics.clone(),
            audit_sink: options.audit_sink.clone(),
        };
        store.exchange_queue = ExchangeQueue::start(&store);
        Ok(store)
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// The backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every pooled connection; later operations fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for reads (which need no write lock).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn write_lock(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(lock) => Some(Arc::clone(lock).lock_owned().await),
            None => None,
        }
    }

    /// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`, which takes the
    /// database's write lock up front (waiting up to `busy_timeout` for other processes).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let lock = self.write_lock().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _lock: lock })
    }

    /// A connection for one write statement (atomic by itself).
    pub(crate) async fn writer(&self) -> Result<Writer, StoreError> {
        let lock = self.write_lock().await;
        let conn = self.pool.acquire().await?;
        Ok(Writer { conn, _lock: lock })
    }
}

/// Makes the database file of a SQLite `url` (not an in-memory one) and the files beside
/// it mode 0600, creating it so when missing ([`crate::files::make_database_private`]).
fn private_sqlite_files(url: &str) -> Result<(), StoreError> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if in_memory || path.as_os_str().is_empty() {
        return Ok(());
    }
    // `mode=ro` and `mode=rw` must not create the file: leave a missing one to SQLite.
    if !path.exists() && !url.contains("mode=rwc") {
        return Ok(());
    }
    crate::files::make_database_private(path)
        .map_err(|error| StoreError::Invalid(format!("{}: {error}", path.display())))
}

/// Converts an unsigned count to a stored `BIGINT`, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `StoreError::Corrupt` for a value of `table` that breaks the model's rules.
pub(crate) fn corrupt(table: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_of_url() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        let error = Backend::of_url("mysql://root:hunter2@h/db").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }
}
