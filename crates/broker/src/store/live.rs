//! Live tunnel sessions as the broker knows them (docs/protocol.md §7.8): the bytes so far
//! that tunnel servers report on their control channel, the ends the broker was asked for
//! and not yet confirmed by a `stop`, and the revocation of what a user may no longer use.
//!
//! A session is its notify ticket's row, named by the row's key (the ticket's hash, which
//! is the session reference of the control channel). It is live from its `start` until its
//! `stop`, or until it expires unreported ([`super::sweep`]).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{ServiceId, Store, StoreError, TunnelServerId, UserId, to_i64};
use crate::tickets::crypto::TicketHash;

/// Byte reports written in one statement at most (three values each).
const REPORT_CHUNK: usize = 512;

/// Why the broker asked for a session's end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndCause {
    /// An administrator ended the connection.
    Administrator,
    /// The user was disabled.
    UserDisabled,
    /// The user may no longer use the service (a group left, a grant or the service
    /// removed, the user removed).
    AccessRemoved,
}

impl EndCause {
    /// As stored and audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::UserDisabled => "user_disabled",
            Self::AccessRemoved => "access_removed",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        match text {
            "administrator" => Some(Self::Administrator),
            "user_disabled" => Some(Self::UserDisabled),
            "access_removed" => Some(Self::AccessRemoved),
            _ => None,
        }
    }
}

/// An end the broker was asked for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EndRequest {
    /// When, Unix milliseconds.
    pub at: i64,
    /// Who asked (an administrator's name, `cli:<user>`), when one did.
    pub by: Option<String>,
    /// Why.
    pub cause: Option<EndCause>,
}

/// One live session, as the admin pages show it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LiveSession {
    /// The session's reference (its notify ticket's hash).
    pub reference: TicketHash,
    /// The user (`None` if removed since).
    pub username: Option<String>,
    /// The service (`None` if removed since).
    pub service: Option<String>,
    /// The tunnel server (`None` if unregistered since).
    pub tunnel_server: Option<String>,
    /// Whether that tunnel server is an OpenUDS 5 one (no control channel).
    pub legacy: bool,
    /// The tunnel server's last control request, Unix milliseconds.
    pub control_seen_at: Option<i64>,
    /// The `start`, Unix milliseconds.
    pub started_at: i64,
    /// Bytes sent to the launcher so far, as last reported.
    pub sent: Option<u64>,
    /// Bytes received from the launcher so far, as last reported.
    pub recv: Option<u64>,
    /// When the bytes were reported.
    pub reported_at: Option<i64>,
    /// The end asked for, if any.
    pub end: Option<EndRequest>,
}

/// What a revocation cancelled and ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Revoked {
    /// Client tickets no launcher had exchanged yet, now expired.
    pub client_tickets: u64,
    /// Tunnel tickets no tunnel server had redeemed yet, now expired.
    pub tunnel_tickets: u64,
    /// Live sessions whose end the broker now asks for.
    pub sessions: u64,
}

impl Revoked {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Self) {
        self.client_tickets += other.client_tickets;
        self.tunnel_tickets += other.tunnel_tickets;
        self.sessions += other.sessions;
    }

    /// Whether anything was revoked.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A session whose end the broker was asked for, for the audit log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EndingSession {
    /// The user.
    pub user_id: UserId,
    /// The service.
    pub service_id: ServiceId,
    /// The tunnel server to tell.
    pub tunnel_server_id: TunnelServerId,
}

/// The columns of a live session, joined with its names.
const LIVE_QUERY: &str = "SELECT notify_tickets.id_hash, notify_tickets.started_at, \
     notify_tickets.live_sent, notify_tickets.live_recv, notify_tickets.reported_at, \
     notify_tickets.end_requested_at, notify_tickets.end_requested_by, \
     notify_tickets.end_cause, users.username, services.name AS service_name, \
     tunnel_servers.name AS tunnel_server_name, tunnel_servers.legacy, \
     tunnel_servers.control_seen_at \
     FROM notify_tickets \
     LEFT JOIN users ON users.id = notify_tickets.user_id \
     LEFT JOIN services ON services.id = notify_tickets.service_id \
     LEFT JOIN tunnel_servers ON tunnel_servers.id = notify_tickets.tunnel_server_id \
     WHERE notify_tickets.stopped_at IS NULL AND notify_tickets.expires_at > $1";

/// Sessions that the user may no longer use: no group of theirs is granted the service
/// (a removed user or service has no grant either).
const LOST_ACCESS: &str = "NOT EXISTS (SELECT 1 FROM service_groups \
     JOIN user_groups ON user_groups.group_id = service_groups.group_id \
     JOIN users ON users.id = user_groups.user_id \
     WHERE service_groups.service_id = {table}.service_id \
     AND user_groups.user_id = {table}.user_id AND users.disabled_at IS NULL)";

fn hash_from(row: &AnyRow, column: &str) -> Result<TicketHash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    let bytes: [u8; TicketHash::LEN] = bytes
        .try_into()
        .map_err(|_| super::corrupt("notify_tickets", "id_hash is not 32 bytes"))?;
    Ok(TicketHash::from_bytes(bytes))
}

fn count(row: &AnyRow, column: &str) -> Result<Option<u64>, StoreError> {
    let value: Option<i64> = row.try_get(column)?;
    Ok(value.map(|value| u64::try_from(value).unwrap_or(0)))
}

fn live_from_row(row: &AnyRow) -> Result<LiveSession, StoreError> {
    let end_at: Option<i64> = row.try_get("end_requested_at")?;
    let cause: Option<String> = row.try_get("end_cause")?;
    let end = match end_at {
        Some(at) => Some(EndRequest {
            at,
            by: row.try_get("end_requested_by")?,
            cause: cause.as_deref().and_then(EndCause::parse),
        }),
        None => None,
    };
    Ok(LiveSession {
        reference: hash_from(row, "id_hash")?,
        username: row.try_get("username")?,
        service: row.try_get("service_name")?,
        tunnel_server: row.try_get("tunnel_server_name")?,
        legacy: row
            .try_get::<Option<i64>, _>("legacy")?
            .is_some_and(|legacy| legacy != 0),
        control_seen_at: row.try_get("control_seen_at")?,
        started_at: row.try_get("started_at")?,
        sent: count(row, "live_sent")?,
        recv: count(row, "live_recv")?,
        reported_at: row.try_get("reported_at")?,
        end,
    })
}

/// Asks for the end of every live session that lost its access, and expires every unused
/// tunnel ticket that did, on `conn` (in the caller's transaction).
pub(super) async fn revoke_lost_access(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Revoked, StoreError> {
    let sessions = sqlx::query(&format!(
        "UPDATE notify_tickets SET end_requested_at = $1, end_cause = 'access_removed' \
         WHERE stopped_at IS NULL AND end_requested_at IS NULL AND expires_at > $1 AND {}",
        LOST_ACCESS.replace("{table}", "notify_tickets")
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Unused client tickets stay: their exchange refuses them with "This service is no
    // longer available to you", which says more than an expired ticket would.
    let tunnel_tickets = sqlx::query(&format!(
        "UPDATE tunnel_tickets SET expires_at = $1 \
         WHERE used_at IS NULL AND expires_at > $1 AND {}",
        LOST_ACCESS.replace("{table}", "tunnel_tickets")
    ))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Revoked {
        client_tickets: 0,
        tunnel_tickets,
        sessions,
    })
}

/// Asks for the end of every live session of `user` and expires their unused tickets, on
/// `conn`; `by` is who disabled them.
pub(super) async fn revoke_user(
    conn: &mut AnyConnection,
    user: UserId,
    now: i64,
    by: Option<&str>,
) -> Result<Revoked, StoreError> {
    let sessions = sqlx::query(
        "UPDATE notify_tickets SET end_requested_at = $1, end_requested_by = $2, \
         end_cause = 'user_disabled' \
         WHERE user_id = $3 AND stopped_at IS NULL AND end_requested_at IS NULL \
         AND expires_at > $1",
    )
    .bind(now)
    .bind(by)
    .bind(user.0)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let mut revoked = expire_tickets(conn, now, &format!("{{t}}.user_id = {}", user.0)).await?;
    revoked.sessions = sessions;
    Ok(revoked)
}

/// Expires the unused client and tunnel tickets for which `condition` holds (`{t}` stands
/// for the table), so that no launcher can exchange and no tunnel server redeem them.
async fn expire_tickets(
    conn: &mut AnyConnection,
    now: i64,
    condition: &str,
) -> Result<Revoked, StoreError> {
    let mut revoked = Revoked::default();
    for (table, counter) in [
        ("client_tickets", &mut revoked.client_tickets),
        ("tunnel_tickets", &mut revoked.tunnel_tickets),
    ] {
        *counter = sqlx::query(&format!(
            "UPDATE {table} SET expires_at = $1 \
             WHERE used_at IS NULL AND expires_at > $1 AND {}",
            condition.replace("{t}", table)
        ))
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(revoked)
}

impl Store {
    /// Records what `server` reported on its control channel: the bytes so far of each of
    /// its live sessions (others are ignored), and that it was seen. One statement per
    /// 512 sessions (`REPORT_CHUNK`), in one transaction.
    pub async fn record_session_reports(
        &self,
        server: TunnelServerId,
        reports: &[(TicketHash, u64, u64)],
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE tunnel_servers SET last_seen_at = $1, control_seen_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(server.0)
        .execute(tx.conn())
        .await?;
        let mut updated = 0;
        for chunk in reports.chunks(REPORT_CHUNK) {
            // `VALUES` columns are `column1`, `column2`, … on both backends.
            let mut sql = String::from(
                "UPDATE notify_tickets SET live_sent = v.column2, live_recv = v.column3, \
                 reported_at = $1 FROM (VALUES ",
            );
            for index in 0..chunk.len() {
                if index > 0 {
                    sql.push_str(", ");
                }
                let first = 3 + index * 3;
                sql.push_str(&format!("(${first}, ${}, ${})", first + 1, first + 2));
            }
            sql.push_str(
                ") AS v WHERE notify_tickets.id_hash = v.column1 \
                 AND notify_tickets.tunnel_server_id = $2 AND notify_tickets.stopped_at IS NULL",
            );
            let mut query = sqlx::query(&sql).bind(now).bind(server.0);
            for (hash, sent, recv) in chunk {
                query = query
                    .bind(hash.as_bytes().as_slice())
                    .bind(to_i64(*sent))
                    .bind(to_i64(*recv));
            }
            updated += query.execute(tx.conn()).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Notes that `server` called the broker (`start`, `stop`) at `now`.
    pub async fn touch_tunnel_server(
        &self,
        server: TunnelServerId,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        sqlx::query("UPDATE tunnel_servers SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(server.0)
            .execute(writer.conn())
            .await?;
        Ok(())
    }

    /// The live sessions of `server` whose end the broker was asked for.
    pub async fn pending_ends(
        &self,
        server: TunnelServerId,
        now: i64,
    ) -> Result<Vec<TicketHash>, StoreError> {
        let rows = sqlx::query(
            "SELECT id_hash FROM notify_tickets WHERE tunnel_server_id = $1 \
             AND end_requested_at IS NOT NULL AND stopped_at IS NULL AND expires_at > $2",
        )
        .bind(server.0)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| hash_from(row, "id_hash")).collect()
    }

    /// Per tunnel server with pending ends: how many, and the latest request's time. What
    /// a broker polls to notice ends asked for on other brokers (or by `portcullis admin`).
    pub async fn pending_end_summary(
        &self,
        now: i64,
    ) -> Result<Vec<(TunnelServerId, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tunnel_server_id, COUNT(*) AS pending, MAX(end_requested_at) AS latest \
             FROM notify_tickets WHERE end_requested_at IS NOT NULL AND stopped_at IS NULL \
             AND expires_at > $1 GROUP BY tunnel_server_id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    TunnelServerId(row.try_get("tunnel_server_id")?),
                    row.try_get("pending")?,
                    row.try_get::<Option<i64>, _>("latest")?.unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Asks for the end of the live session `reference`, by `by`; `None` when it is not
    /// live, or its end was asked for already.
    pub async fn request_session_end(
        &self,
        reference: &TicketHash,
        now: i64,
        by: &str,
    ) -> Result<Option<EndingSession>, StoreError> {
        let mut writer = self.writer().await?;
        let row = sqlx::query(
            "UPDATE notify_tickets SET end_requested_at = $1, end_requested_by = $2, \
             end_cause = 'administrator' \
             WHERE id_hash = $3 AND stopped_at IS NULL AND end_requested_at IS NULL \
             AND expires_at > $1 \
             RETURNING user_id, service_id, tunnel_server_id",
        )
        .bind(now)
        .bind(by)
        .bind(reference.as_bytes().as_slice())
        .fetch_optional(writer.conn())
        .await?;
        row.map(|row| {
            Ok(EndingSession {
                user_id: UserId(row.try_get("user_id")?),
                service_id: ServiceId(row.try_get("service_id")?),
                tunnel_server_id: TunnelServerId(row.try_get("tunnel_server_id")?),
            })
        })
        .transpose()
    }

    /// The live sessions at `now`, newest first, at most `limit`.
    pub async fn live_sessions(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<LiveSession>, StoreError> {
        let sql = format!(
            "{LIVE_QUERY} ORDER BY notify_tickets.started_at DESC, notify_tickets.id_hash \
             LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(live_from_row).collect()
    }

    /// The live session `reference`, if it is live at `now`.
    pub async fn live_session(
        &self,
        reference: &TicketHash,
        now: i64,
    ) -> Result<Option<LiveSession>, StoreError> {
        let sql = format!("{LIVE_QUERY} AND notify_tickets.id_hash = $2");
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(reference.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(live_from_row).transpose()
    }

    /// How many sessions of each tunnel server are live at `now`, by tunnel server id.
    pub async fn live_sessions_per_server(
        &self,
        now: i64,
    ) -> Result<Vec<(TunnelServerId, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tunnel_server_id, COUNT(*) AS live FROM notify_tickets \
             WHERE stopped_at IS NULL AND expires_at > $1 GROUP BY tunnel_server_id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    TunnelServerId(row.try_get("tunnel_server_id")?),
                    row.try_get("live")?,
                ))
            })
            .collect()
    }
}
