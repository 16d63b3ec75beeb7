//! A connection as its user sees it in the portal: one client ticket (one click on
//! Connect), followed through its exchange to the tunnel session and its stop report.
//!
//! The client ticket's `tunnel_ticket_hash` (set by the exchange of a tunneled service)
//! leads to the tunnel ticket and, once a tunnel server redeemed it, the notify ticket that
//! carries the session's start, stop and byte counts. Used client tickets are kept for a
//! day ([`USED_CLIENT_TICKET_KEEP_MS`](super::USED_CLIENT_TICKET_KEEP_MS)), less than any
//! notify ticket is, so a connection's session is never swept before the connection.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, UserId};

/// How many connections [`Store::recent_connections`] returns at most.
pub const RECENT_CONNECTIONS: i64 = 10;

/// Where a connection is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ConnectionState {
    /// No launcher has asked for the ticket yet.
    Waiting,
    /// A launcher is at it: the broker is preparing the service (its progress so far), or,
    /// for a tunneled service, the exchange is done and the tunnel is not open yet
    /// (100 %).
    Preparing {
        /// 0 to 100.
        percent: u8,
        /// The last progress or error message.
        message: Option<String>,
    },
    /// Direct service: exchanged. Tunneled service: a tunnel server opened the session.
    Connected {
        /// Since when, Unix milliseconds (the exchange, or the tunnel's start).
        since: i64,
    },
    /// The tunnel server reported the session's end.
    Ended {
        /// The tunnel's start, Unix milliseconds.
        started_at: i64,
        /// The stop report, Unix milliseconds.
        ended_at: i64,
        /// Bytes the tunnel server sent to the launcher.
        sent: u64,
        /// Bytes the tunnel server received from the launcher.
        recv: u64,
    },
    /// No launcher exchanged the ticket within its life.
    Expired,
    /// Exchanged, but no tunnel server opened the tunnel within the tunnel ticket's life.
    Failed,
}

/// One connection of a user.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connection {
    /// The public id the portal polls with (not the ticket).
    pub status_id: String,
    /// The service's name (`None` if it was removed since).
    pub service: Option<String>,
    /// When the user clicked Connect, Unix milliseconds.
    pub created_at: i64,
    /// Where it is.
    pub state: ConnectionState,
}

/// The columns a connection is read from; `{filter}` completes the statement.
const CONNECTION_QUERY: &str = "SELECT client_tickets.status_id, client_tickets.created_at, \
     client_tickets.expires_at, client_tickets.used_at, client_tickets.progress_percent, \
     client_tickets.last_error, services.name AS service_name, \
     CAST(CASE WHEN client_tickets.tunnel_ticket_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) \
         AS tunneled, \
     tunnel_tickets.expires_at AS tunnel_expires_at, \
     notify_tickets.started_at, notify_tickets.stopped_at, notify_tickets.sent, \
     notify_tickets.recv \
     FROM client_tickets \
     LEFT JOIN services ON services.id = client_tickets.service_id \
     LEFT JOIN tunnel_tickets ON tunnel_tickets.id_hash = client_tickets.tunnel_ticket_hash \
     LEFT JOIN notify_tickets \
         ON notify_tickets.tunnel_ticket_hash = client_tickets.tunnel_ticket_hash \
     WHERE client_tickets.user_id = $1 AND ";

fn connection_from_row(row: &AnyRow, now: i64) -> Result<Connection, StoreError> {
    Ok(Connection {
        status_id: row.try_get("status_id")?,
        service: row.try_get("service_name")?,
        created_at: row.try_get("created_at")?,
        state: state_from_row(row, now)?,
    })
}

fn state_from_row(row: &AnyRow, now: i64) -> Result<ConnectionState, StoreError> {
    let used_at: Option<i64> = row.try_get("used_at")?;
    let Some(used_at) = used_at else {
        let expires_at: i64 = row.try_get("expires_at")?;
        let percent: Option<i64> = row.try_get("progress_percent")?;
        return Ok(match percent {
            _ if expires_at <= now => ConnectionState::Expired,
            None => ConnectionState::Waiting,
            Some(percent) => ConnectionState::Preparing {
                percent: u8::try_from(percent.clamp(0, 100)).unwrap_or(100),
                message: row.try_get("last_error")?,
            },
        });
    };
    if row.try_get::<i64, _>("tunneled")? == 0 {
        return Ok(ConnectionState::Connected { since: used_at });
    }
    let started_at: Option<i64> = row.try_get("started_at")?;
    let Some(started_at) = started_at else {
        // Not redeemed: still possible while the tunnel ticket lives (a redeemed one
        // always has its notify ticket).
        let tunnel_expires_at: Option<i64> = row.try_get("tunnel_expires_at")?;
        return Ok(match tunnel_expires_at {
            Some(expires_at) if expires_at > now => ConnectionState::Preparing {
                percent: 100,
                message: None,
            },
            _ => ConnectionState::Failed,
        });
    };
    let stopped_at: Option<i64> = row.try_get("stopped_at")?;
    Ok(match stopped_at {
        None => ConnectionState::Connected { since: started_at },
        Some(ended_at) => ConnectionState::Ended {
            started_at,
            ended_at,
            sent: count(row, "sent")?,
            recv: count(row, "recv")?,
        },
    })
}

/// A byte count of a stop report (stored as a non-negative `BIGINT`).
fn count(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let value: Option<i64> = row.try_get(column)?;
    Ok(value.map_or(0, |value| u64::try_from(value).unwrap_or(0)))
}

impl Store {
    /// The connection with public id `status_id` if it belongs to `user`, as of `now`.
    pub async fn connection(
        &self,
        status_id: &str,
        user: UserId,
        now: i64,
    ) -> Result<Option<Connection>, StoreError> {
        let sql = format!("{CONNECTION_QUERY}client_tickets.status_id = $2");
        let row = sqlx::query(&sql)
            .bind(user.0)
            .bind(status_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| connection_from_row(&row, now)).transpose()
    }

    /// The user's latest [`RECENT_CONNECTIONS`] connections, newest first, as of `now`.
    pub async fn recent_connections(
        &self,
        user: UserId,
        now: i64,
    ) -> Result<Vec<Connection>, StoreError> {
        let sql = format!(
            "{CONNECTION_QUERY}1 = 1 ORDER BY client_tickets.created_at DESC, \
             client_tickets.status_id LIMIT {RECENT_CONNECTIONS}"
        );
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| connection_from_row(row, now))
            .collect()
    }
}
