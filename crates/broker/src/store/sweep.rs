//! Removal of expired rows, and the background task that does it periodically.

use std::time::Duration;

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::audit::AuditEvent;
use super::{Store, StoreError};
use crate::clock::Clock;
use crate::metrics::TableLabels;

/// How long a used client ticket is kept after its exchange: the portal shows it among the
/// user's recent connections and follows its tunnel session until then.
pub const USED_CLIENT_TICKET_KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// How long a redeemed or burned tunnel ticket is kept (for inspection) before sweeping.
pub const USED_TUNNEL_TICKET_KEEP_MS: i64 = 60 * 60 * 1000;
/// How long a stopped session's notify ticket is kept before sweeping.
pub const STOPPED_SESSION_KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// How long past its maximum duration a never-stopped session (its tunnel server died)
/// is kept before sweeping; a stop report still counts until then.
pub const ABANDONED_SESSION_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// How many rows one [`Store::sweep_expired`] removed, per table.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct SweepCounts {
    /// Expired unused client tickets, and those used over a day ago.
    pub client_tickets: u64,
    /// Expired tunnel tickets, and those used or burned over an hour ago.
    pub tunnel_tickets: u64,
    /// Notify tickets stopped over a day ago, or abandoned (never stopped; each of these
    /// is audited as `tunnel.unreported`).
    pub notify_tickets: u64,
    /// Expired login sessions.
    pub login_sessions: u64,
}

impl SweepCounts {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.client_tickets + self.tunnel_tickets + self.notify_tickets + self.login_sessions
    }
}

/// Rows one sweep statement deletes at most. Between statements the write lock is
/// released, so exchanges never wait behind one long delete: under sustained load a minute
/// of expired tickets is hundreds of thousands of rows, and deleting 240,000 in one
/// statement stalled every exchange on SQLite for 2.4 s. In chunks of 2,000 the longest
/// wait is under 0.1 s; a sweep costs somewhat more in all (smaller chunks, more).
const SWEEP_CHUNK: i64 = 2_000;

/// What one table's sweep deletes: rows whose `condition` holds (with the times bound to
/// `$1`, `$2`), found by `key`.
struct SweepTarget {
    table: &'static str,
    key: &'static str,
    condition: &'static str,
}

const CLIENT_TICKETS: SweepTarget = SweepTarget {
    table: "client_tickets",
    key: "id_hash",
    condition: "(used_at IS NULL AND expires_at <= $1) OR used_at <= $2",
};
const TUNNEL_TICKETS: SweepTarget = SweepTarget {
    table: "tunnel_tickets",
    key: "id_hash",
    condition: "expires_at <= $1 OR used_at <= $2",
};
/// Stopped sessions (`$1`: stopped at or before). Abandoned ones, never stopped, go through
/// [`Store::sweep_unreported`], which audits each.
const NOTIFY_TICKETS: SweepTarget = SweepTarget {
    table: "notify_tickets",
    key: "id_hash",
    condition: "stopped_at <= $1",
};

/// The sessions past their notify ticket's expiry without a `stop` (`$1`:
/// now), with what their audit events name. Missing names (a user, service or tunnel
/// server removed since) come back NULL.
const UNREPORTED_SESSIONS: &str = "SELECT notify_tickets.id_hash, notify_tickets.started_at, \
     users.username, services.name AS service, tunnel_servers.name AS tunnel_server, \
     tunnel_servers.legacy \
     FROM notify_tickets \
     LEFT JOIN users ON users.id = notify_tickets.user_id \
     LEFT JOIN services ON services.id = notify_tickets.service_id \
     LEFT JOIN tunnel_servers ON tunnel_servers.id = notify_tickets.tunnel_server_id \
     WHERE notify_tickets.stopped_at IS NULL AND notify_tickets.expires_at <= $1";

/// A session swept without its `stop`, as read for its audit event.
struct UnreportedSession {
    id_hash: Vec<u8>,
    started_at: i64,
    username: Option<String>,
    service: Option<String>,
    tunnel_server: Option<String>,
    legacy: Option<bool>,
}

impl UnreportedSession {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id_hash: row.try_get("id_hash")?,
            started_at: row.try_get("started_at")?,
            username: row.try_get("username")?,
            service: row.try_get("service")?,
            tunnel_server: row.try_get("tunnel_server")?,
            legacy: row
                .try_get::<Option<i64>, _>("legacy")?
                .map(|legacy| legacy != 0),
        })
    }

    /// Its `tunnel.unreported` event at `now`.
    fn event(self, now: i64) -> AuditEvent {
        AuditEvent {
            actor: None,
            at: now,
            kind: "tunnel.unreported".into(),
            username: self.username,
            service: self.service,
            source_ip: None,
            detail: json!({
                "tunnel_server": self.tunnel_server,
                "legacy": self.legacy,
                "started_at": self.started_at,
            })
            .to_string(),
        }
    }
}
const LOGIN_SESSIONS: SweepTarget = SweepTarget {
    table: "login_sessions",
    key: "token_hash",
    condition: "expires_at <= $1",
};
/// Events older than the bound time (`$1`), for [`Store::prune_audit`].
const OLD_AUDIT_EVENTS: SweepTarget = SweepTarget {
    table: "audit_events",
    key: "id",
    condition: "at < $1",
};

impl Store {
    /// Deletes what is no longer needed at `now`: expired unused client tickets and those
    /// used over a day ago (the portal's history), expired tunnel tickets and those used
    /// over an hour ago, notify tickets stopped over a day ago or abandoned (each abandoned
    /// one audited as `tunnel.unreported`), expired login sessions. Each table goes in statements of at most 2,000 rows, each atomic by
    /// itself, so that exchanges never wait long behind a sweep.
    pub async fn sweep_expired(&self, now: i64) -> Result<SweepCounts, StoreError> {
        Ok(SweepCounts {
            client_tickets: self
                .sweep(
                    &CLIENT_TICKETS,
                    &[now, now.saturating_sub(USED_CLIENT_TICKET_KEEP_MS)],
                )
                .await?,
            tunnel_tickets: self
                .sweep(
                    &TUNNEL_TICKETS,
                    &[now, now.saturating_sub(USED_TUNNEL_TICKET_KEEP_MS)],
                )
                .await?,
            notify_tickets: self
                .sweep(
                    &NOTIFY_TICKETS,
                    &[now.saturating_sub(STOPPED_SESSION_KEEP_MS)],
                )
                .await?
                .saturating_add(self.sweep_unreported(now).await?),
            login_sessions: self.sweep(&LOGIN_SESSIONS, &[now]).await?,
        })
    }

    /// Deletes the notify tickets that expired without a `stop` (their tunnel server died,
    /// or is an OpenUDS 5 one, which never reports), each with an audit event
    /// `tunnel.unreported` naming the user, the service, the tunnel server and the
    /// session's start time; returns how many.
    ///
    /// A chunk at a time like [`Store::sweep`], each chunk one transaction (its deletions
    /// and its events together), the writer released between chunks. Of several brokers
    /// sweeping one database, only the one whose delete removed a row audits it.
    async fn sweep_unreported(&self, now: i64) -> Result<u64, StoreError> {
        let select = format!("{UNREPORTED_SESSIONS} LIMIT {SWEEP_CHUNK}");
        let mut deleted = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(&select).bind(now).fetch_all(tx.conn()).await?;
            let found = rows.len();
            if found == 0 {
                tx.rollback().await?;
                return Ok(deleted);
            }
            let sessions = rows
                .iter()
                .map(UnreportedSession::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let mut sql = String::from(
                "DELETE FROM notify_tickets \
                 WHERE stopped_at IS NULL AND expires_at <= $1 AND id_hash IN (",
            );
            for index in 0..sessions.len() {
                if index > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", index + 2));
            }
            sql.push_str(") RETURNING id_hash");
            let mut query = sqlx::query(&sql).bind(now);
            for session in &sessions {
                query = query.bind(session.id_hash.as_slice());
            }
            let gone = query
                .fetch_all(tx.conn())
                .await?
                .iter()
                .map(|row| row.try_get::<Vec<u8>, _>("id_hash"))
                .collect::<Result<std::collections::HashSet<_>, _>>()?;
            let events: Vec<AuditEvent> = sessions
                .into_iter()
                .filter(|session| gone.contains(&session.id_hash))
                .map(|session| session.event(now))
                .collect();
            let stored = self.audit_in(tx.conn(), events).await?;
            tx.commit().await?;
            self.exported(stored);
            deleted += u64::try_from(gone.len()).unwrap_or(u64::MAX);
            if found < usize::try_from(SWEEP_CHUNK).unwrap_or(usize::MAX) {
                return Ok(deleted);
            }
            // Let the writers that queued meanwhile go first.
            tokio::task::yield_now().await;
        }
    }

    /// Deletes the audit events from before `before` (Unix milliseconds), in the sweeper's
    /// chunks so that a running broker keeps serving; returns how many.
    pub async fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        self.sweep(&OLD_AUDIT_EVENTS, &[before]).await
    }

    /// Deletes the rows of `target` whose condition holds for `times`, a chunk at a time;
    /// returns how many.
    async fn sweep(&self, target: &SweepTarget, times: &[i64]) -> Result<u64, StoreError> {
        let SweepTarget {
            table,
            key,
            condition,
        } = target;
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE {condition} LIMIT {SWEEP_CHUNK})"
        );
        let mut deleted = 0;
        loop {
            let mut writer = self.writer().await?;
            let mut query = sqlx::query(&sql);
            for time in times {
                query = query.bind(*time);
            }
            let chunk = query.execute(writer.conn()).await?.rows_affected();
            drop(writer);
            deleted += chunk;
            if chunk < SWEEP_CHUNK.unsigned_abs() {
                return Ok(deleted);
            }
            // Let the writers that queued meanwhile go first.
            tokio::task::yield_now().await;
        }
    }
}

/// Runs [`Store::sweep_expired`] every `interval` (the first run at once) at the time
/// `clock` tells (the broker's, as for tickets and the login limits), until the returned task is aborted. Counts are logged at debug level, failures
/// at warn level; a failed sweep is retried at the next tick.
pub fn spawn_sweeper(store: Store, interval: Duration, clock: Clock) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match store.sweep_expired(clock()).await {
                Ok(counts) => {
                    for (table, rows) in [
                        (CLIENT_TICKETS.table, counts.client_tickets),
                        (TUNNEL_TICKETS.table, counts.tunnel_tickets),
                        (NOTIFY_TICKETS.table, counts.notify_tickets),
                        (LOGIN_SESSIONS.table, counts.login_sessions),
                    ] {
                        store
                            .metrics
                            .swept_rows
                            .get_or_create(&TableLabels { table })
                            .inc_by(rows);
                    }
                    tracing::debug!(
                        client_tickets = counts.client_tickets,
                        tunnel_tickets = counts.tunnel_tickets,
                        notify_tickets = counts.notify_tickets,
                        login_sessions = counts.login_sessions,
                        "swept expired rows"
                    );
                }
                Err(error) => tracing::warn!(%error, "sweeping expired rows failed"),
            }
        }
    })
}
