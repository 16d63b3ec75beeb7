//! Client, tunnel and notify tickets: stored under the hash of their id, consumed by one
//! atomic statement each.

use core::fmt;

use portcullis_proto::{SharedSecret, TicketId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::credentials::{ServiceCredentials, service_credentials_from_row};
use super::services::{ExchangeService, ServiceColumns, exchange_service_from_row};
use super::sweep::ABANDONED_SESSION_GRACE_MS;
use super::{ServiceId, Store, StoreError, TokenHash, TunnelServerId, UserId, corrupt, to_i64};
use crate::tickets::crypto::{SecretError, TicketHash, open_secret};

/// A client ticket to store (made when the user clicks Connect).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewClientTicket {
    /// [`ticket_hash`](crate::tickets::crypto::ticket_hash) of the ticket id.
    pub id_hash: TicketHash,
    /// A random public id the portal polls the ticket's status with (not the ticket).
    pub status_id: String,
    /// Who may exchange it.
    pub user_id: UserId,
    /// For which service.
    pub service_id: ServiceId,
    /// The launch URL's scrambler: the store keeps only its hash
    /// ([`scrambler_hash`](portcullis_proto::credential::scrambler_hash)).
    pub scrambler: String,
    /// The client's operating system, when the portal knows it.
    pub client_os: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// End of validity, Unix milliseconds (exclusive: at `expires_at` it is expired).
    pub expires_at: i64,
    /// A pass-through password sealed to the ticket id and scrambler (docs/protocol.md
    /// §6.8.2), and the hash of the login session it came from (whose sign-out erases it).
    pub credential: Option<TicketCredential>,
}

/// A pass-through password sealed to a client ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketCredential {
    /// The box, under the key of the ticket id and scrambler.
    pub sealed: Vec<u8>,
    /// The login session that issued the ticket.
    pub session: TokenHash,
}

impl fmt::Debug for TicketCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketCredential(<{} bytes>)", self.sealed.len())
    }
}

/// A live client ticket, as the exchange sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTicket {
    /// The public status id.
    pub status_id: String,
    /// Who may exchange it.
    pub user_id: UserId,
    /// For which service.
    pub service_id: ServiceId,
    /// The hash of the launch URL's scrambler; `None` for a ticket issued before the
    /// broker kept hashes (it matches no scrambler).
    pub scrambler_hash: Option<[u8; 32]>,
    /// The client's operating system, when known.
    pub client_os: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// End of validity, Unix milliseconds.
    pub expires_at: i64,
    /// The pass-through password sealed to the ticket id and scrambler, if any.
    pub credential_box: Option<Vec<u8>>,
}

impl ClientTicket {
    /// Whether `scrambler` is the launch URL's, compared in constant time.
    pub fn scrambler_matches(&self, scrambler: &str) -> bool {
        self.scrambler_hash.is_some_and(|stored| {
            portcullis_proto::constant_time_eq(
                &stored,
                &portcullis_proto::credential::scrambler_hash(scrambler),
            )
        })
    }
}

impl fmt::Debug for ClientTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTicket")
            .field("status_id", &self.status_id)
            .field("user_id", &self.user_id)
            .field("service_id", &self.service_id)
            .field("client_os", &self.client_os)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field(
                "credential_box",
                &self.credential_box.as_ref().map(Vec::len),
            )
            .finish_non_exhaustive()
    }
}

/// Everything an exchange checks before consuming a client ticket, read by
/// [`Store::exchange_context`] in one statement.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExchangeContext {
    /// The live client ticket.
    pub ticket: ClientTicket,
    /// Its service; `None` if the service is gone.
    pub service: Option<ExchangeService>,
    /// The ticket's user's name; `None` if the user is gone.
    pub username: Option<String>,
    /// Whether the user belongs to a group allowed to use the service.
    pub may_use: bool,
    /// How the service signs its user in; [`ServiceCredentials::default`] if it is gone.
    pub credentials: ServiceCredentials,
}

/// A tunnel ticket to store, made by a successful exchange for a tunneled service.
#[derive(Clone, PartialEq, Eq)]
pub struct NewTunnelTicket {
    /// Hash of the tunnel ticket id.
    pub id_hash: TicketHash,
    /// The shared secret, sealed by [`seal_secret`](crate::tickets::crypto::seal_secret).
    pub secret_enc: Vec<u8>,
    /// Where the tunnel server connects.
    pub target_host: String,
    /// Target TCP port.
    pub target_port: u16,
    /// The service.
    pub service_id: ServiceId,
    /// The user.
    pub user_id: UserId,
    /// Only tunnel servers of this group may redeem it.
    pub tunnel_group: String,
    /// Longest session, in seconds.
    pub max_session_secs: u32,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// End of validity, Unix milliseconds (exclusive).
    pub expires_at: i64,
    /// Issued for a legacy (OpenUDS 5) tunnel server, which cannot bring the launcher's
    /// proof: only such a ticket may be redeemed without one.
    pub issued_to_legacy: bool,
}

/// A live tunnel ticket, as the `start` handler sees it before checking the proof.
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelTicket {
    /// The sealed shared secret; open it with [`TunnelTicket::open_secret`].
    pub secret_enc: Vec<u8>,
    /// Where the tunnel server connects.
    pub target_host: String,
    /// Target TCP port.
    pub target_port: u16,
    /// The service.
    pub service_id: ServiceId,
    /// The user.
    pub user_id: UserId,
    /// The tunnel group allowed to redeem it.
    pub tunnel_group: String,
    /// Longest session, in seconds.
    pub max_session_secs: u32,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// End of validity, Unix milliseconds.
    pub expires_at: i64,
    /// Wrong proofs presented for it so far (counted, never burning it).
    pub failed_proofs: u32,
    /// Issued for a legacy tunnel server: may be redeemed without a proof.
    pub issued_to_legacy: bool,
}

impl TunnelTicket {
    /// Opens the shared secret with the ticket id the tunnel server presented.
    pub fn open_secret(&self, id: &TicketId) -> Result<SharedSecret, SecretError> {
        open_secret(id, &self.secret_enc)
    }
}

macro_rules! debug_without_secret {
    ($name:ident { $($field:ident),* }) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("secret_enc", &format_args!("<{} bytes>", self.secret_enc.len()))
                    $(.field(stringify!($field), &self.$field))*
                    .finish()
            }
        }
    };
}

debug_without_secret!(NewTunnelTicket {
    id_hash,
    target_host,
    target_port,
    service_id,
    user_id,
    tunnel_group,
    max_session_secs,
    created_at,
    expires_at,
    issued_to_legacy
});
debug_without_secret!(TunnelTicket {
    target_host,
    target_port,
    service_id,
    user_id,
    tunnel_group,
    max_session_secs,
    created_at,
    expires_at,
    failed_proofs,
    issued_to_legacy
});

/// The notify ticket that a tunnel ticket's redemption creates: the tunnel server reports
/// the session's end under it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewNotifyTicket {
    /// Hash of the notify ticket id.
    pub id_hash: TicketHash,
    /// The tunnel server that redeemed the tunnel ticket.
    pub tunnel_server_id: TunnelServerId,
}

/// A session ended by [`Store::stop_notify`], for the audit log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoppedSession {
    /// The user (who may have been removed since).
    pub user_id: UserId,
    /// The service (which may have been removed since).
    pub service_id: ServiceId,
    /// The tunnel server that carried it.
    pub tunnel_server_id: TunnelServerId,
    /// Redemption time, Unix milliseconds.
    pub started_at: i64,
    /// From redemption to the stop report, in milliseconds.
    pub duration_ms: i64,
    /// Bytes sent to the launcher.
    pub sent: u64,
    /// Bytes received from the launcher.
    pub recv: u64,
    /// The end the broker had asked for, if it had (an administrator, a disabled user, a
    /// removed access).
    pub end: Option<super::EndRequest>,
}

const TUNNEL_TICKET_COLUMNS: &str = "secret_enc, target_host, target_port, service_id, \
     user_id, tunnel_group, max_session_secs, created_at, expires_at, failed_proofs, \
     issued_to_legacy";

fn client_ticket_from_row(row: &AnyRow) -> Result<ClientTicket, StoreError> {
    Ok(ClientTicket {
        status_id: row.try_get("status_id")?,
        user_id: UserId(row.try_get("user_id")?),
        service_id: ServiceId(row.try_get("service_id")?),
        scrambler_hash: row
            .try_get::<Option<Vec<u8>>, _>("scrambler_hash")?
            .and_then(|hash| <[u8; 32]>::try_from(hash).ok()),
        client_os: row.try_get("client_os")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        credential_box: row.try_get("credential_box")?,
    })
}

/// The service columns of [`Store::exchange_context`]'s query.
const EXCHANGE_SERVICE_COLUMNS: ServiceColumns = ServiceColumns {
    id: "service_row_id",
    name: "service_name",
    host: "service_host",
    port: "service_port",
    protocol: "service_protocol",
    transport: "service_transport",
    tunnel_group: "service_tunnel_group",
    max_session_secs: "service_max_session_secs",
    readiness: "service_readiness",
};

fn exchange_context_from_row(row: &AnyRow) -> Result<ExchangeContext, StoreError> {
    // The service is gone when the LEFT JOIN found no row.
    let service = match row.try_get::<Option<i64>, _>(EXCHANGE_SERVICE_COLUMNS.id)? {
        None => None,
        Some(_) => Some(exchange_service_from_row(row, &EXCHANGE_SERVICE_COLUMNS)?),
    };
    let may_use: i64 = row.try_get("may_use")?;
    let credentials = match service {
        Some(_) => service_credentials_from_row(row, "service_")?,
        None => ServiceCredentials::default(),
    };
    Ok(ExchangeContext {
        ticket: client_ticket_from_row(row)?,
        service,
        username: row.try_get("username")?,
        may_use: may_use != 0,
        credentials,
    })
}

fn tunnel_ticket_from_row(row: &AnyRow) -> Result<TunnelTicket, StoreError> {
    let narrow = |column: &str| -> Result<i64, StoreError> { Ok(row.try_get(column)?) };
    let out_of_range = |what: &str| corrupt("tunnel_tickets", format!("{what} out of range"));
    Ok(TunnelTicket {
        secret_enc: row.try_get("secret_enc")?,
        target_host: row.try_get("target_host")?,
        target_port: u16::try_from(narrow("target_port")?)
            .map_err(|_| out_of_range("target_port"))?,
        service_id: ServiceId(row.try_get("service_id")?),
        user_id: UserId(row.try_get("user_id")?),
        tunnel_group: row.try_get("tunnel_group")?,
        max_session_secs: u32::try_from(narrow("max_session_secs")?)
            .map_err(|_| out_of_range("max_session_secs"))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        failed_proofs: u32::try_from(narrow("failed_proofs")?)
            .map_err(|_| out_of_range("failed_proofs"))?,
        issued_to_legacy: narrow("issued_to_legacy")? != 0,
    })
}

pub(super) fn check_validity(created_at: i64, expires_at: i64) -> Result<(), StoreError> {
    if expires_at <= created_at {
        return Err(StoreError::Invalid(
            "a ticket must expire after its creation".to_owned(),
        ));
    }
    Ok(())
}

/// Maps the insertion errors of a ticket row.
pub(super) fn insert_error(error: sqlx::Error, table: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound("user or service")
        }
        _ => StoreError::unique(error, || {
            format!("{table}: ticket or status id already taken")
        }),
    }
}

impl Store {
    /// Stores a new client ticket.
    pub async fn insert_client_ticket(&self, new: NewClientTicket) -> Result<(), StoreError> {
        check_validity(new.created_at, new.expires_at)?;
        let mut writer = self.writer().await?;
        sqlx::query(
            "INSERT INTO client_tickets (id_hash, status_id, user_id, service_id, \
             scrambler_hash, client_os, created_at, expires_at, credential_box, session_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new.id_hash.as_bytes().as_slice())
        .bind(new.status_id)
        .bind(new.user_id.0)
        .bind(new.service_id.0)
        .bind(portcullis_proto::credential::scrambler_hash(&new.scrambler).to_vec())
        .bind(new.client_os)
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.credential.as_ref().map(|c| c.sealed.clone()))
        .bind(
            new.credential
                .as_ref()
                .map(|c| c.session.as_bytes().to_vec()),
        )
        .execute(writer.conn())
        .await
        .map_err(|e| insert_error(e, "client_tickets"))?;
        Ok(())
    }

    /// What an exchange of the client ticket with this hash needs, if the ticket is unused
    /// and unexpired at `now`: the ticket, its service, its user's name and whether the
    /// user may use the service, in one statement. Looking does not consume: only
    /// [`Store::exchange_client_ticket`] does.
    pub async fn exchange_context(
        &self,
        hash: &TicketHash,
        now: i64,
    ) -> Result<Option<ExchangeContext>, StoreError> {
        let row = sqlx::query(
            "SELECT client_tickets.status_id, client_tickets.user_id, \
             client_tickets.service_id, client_tickets.scrambler_hash, \
             client_tickets.client_os, client_tickets.created_at, client_tickets.expires_at, \
             client_tickets.credential_box, \
             services.credential_mode AS service_credential_mode, \
             services.credential_username AS service_credential_username, \
             services.credential_domain AS service_credential_domain, \
             services.credential_secret AS service_credential_secret, \
             services.ssh_principal AS service_ssh_principal, \
             services.ssh_source_address AS service_ssh_source_address, \
             services.id AS service_row_id, services.name AS service_name, \
             services.host AS service_host, services.port AS service_port, \
             services.protocol AS service_protocol, services.transport AS service_transport, \
             services.tunnel_group AS service_tunnel_group, \
             services.max_session_secs AS service_max_session_secs, \
             services.readiness AS service_readiness, \
             users.username AS username, \
             CAST(CASE WHEN EXISTS ( \
                 SELECT 1 FROM service_groups \
                 JOIN user_groups ON user_groups.group_id = service_groups.group_id \
                 WHERE service_groups.service_id = client_tickets.service_id \
                 AND user_groups.user_id = client_tickets.user_id) \
             THEN 1 ELSE 0 END AS BIGINT) AS may_use \
             FROM client_tickets \
             LEFT JOIN services ON services.id = client_tickets.service_id \
             LEFT JOIN users ON users.id = client_tickets.user_id \
             WHERE client_tickets.id_hash = $1 AND client_tickets.used_at IS NULL \
             AND client_tickets.expires_at > $2",
        )
        .bind(hash.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(exchange_context_from_row).transpose()
    }

    /// Records preparation progress ("Preparing service", 0–100 %) or an error message on
    /// an unused client ticket, for the portal's status polling. `false` if no such ticket.
    pub async fn set_client_ticket_progress(
        &self,
        hash: &TicketHash,
        percent: u8,
        message: &str,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(
            "UPDATE client_tickets SET progress_percent = $1, last_error = $2 \
             WHERE id_hash = $3 AND used_at IS NULL",
        )
        .bind(i64::from(percent.min(100)))
        .bind(message)
        .bind(hash.as_bytes().as_slice())
        .execute(writer.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tunnel ticket with this hash if it is unused and unexpired at `now`. Looking
    /// does not redeem: check the proof, then call [`Store::redeem_tunnel_ticket`].
    pub async fn tunnel_ticket_for_redemption(
        &self,
        hash: &TicketHash,
        now: i64,
    ) -> Result<Option<TunnelTicket>, StoreError> {
        let sql = format!(
            "SELECT {TUNNEL_TICKET_COLUMNS} FROM tunnel_tickets \
             WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2"
        );
        let row = sqlx::query(&sql)
            .bind(hash.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tunnel_ticket_from_row).transpose()
    }

    /// Counts a wrong handshake proof against a live tunnel ticket, for the audit log: the
    /// count never burns the ticket (docs/protocol.md §7.3). Returns the count, this one
    /// included; `None` if the ticket is unknown, used or expired.
    pub async fn record_failed_proof(
        &self,
        hash: &TicketHash,
        now: i64,
    ) -> Result<Option<u32>, StoreError> {
        let mut writer = self.writer().await?;
        let row = sqlx::query(
            "UPDATE tunnel_tickets SET failed_proofs = failed_proofs + 1 \
             WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING failed_proofs",
        )
        .bind(hash.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(writer.conn())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let failures: i64 = row.try_get("failed_proofs")?;
        u32::try_from(failures)
            .map(Some)
            .map_err(|_| corrupt("tunnel_tickets", "failed_proofs out of range"))
    }

    /// Redeems the tunnel ticket and stores the session's notify ticket: one transaction.
    ///
    /// The redemption is `UPDATE … SET used_at = now WHERE used_at IS NULL AND
    /// expires_at > now RETURNING …`: of any number of concurrent calls exactly one gets
    /// `true`. `false` means unknown, used, burned or expired, and nothing was stored.
    pub async fn redeem_tunnel_ticket(
        &self,
        hash: &TicketHash,
        now: i64,
        notify: NewNotifyTicket,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let redeemed = sqlx::query(
            "UPDATE tunnel_tickets SET used_at = $1 \
             WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id, service_id, max_session_secs",
        )
        .bind(now)
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(tx.conn())
        .await?;
        let Some(redeemed) = redeemed else {
            tx.rollback().await?;
            return Ok(false);
        };
        let max_session_secs: i64 = redeemed.try_get("max_session_secs")?;
        // A session never stopped (its tunnel server died) is swept after this.
        let expires_at = now
            .saturating_add(max_session_secs.saturating_mul(1000))
            .saturating_add(ABANDONED_SESSION_GRACE_MS);
        sqlx::query(
            "INSERT INTO notify_tickets (id_hash, tunnel_ticket_hash, user_id, service_id, \
             tunnel_server_id, started_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(notify.id_hash.as_bytes().as_slice())
        .bind(hash.as_bytes().as_slice())
        .bind(redeemed.try_get::<i64, _>("user_id")?)
        .bind(redeemed.try_get::<i64, _>("service_id")?)
        .bind(notify.tunnel_server_id.0)
        .bind(now)
        .bind(expires_at)
        .execute(tx.conn())
        .await
        .map_err(|e| StoreError::unique(e, || "notify ticket already taken".to_owned()))?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends the session of a notify ticket with its byte counts, atomically: only the first
    /// stop counts, and only from the tunnel server that redeemed the ticket (`None` for a
    /// repeated or unknown one, or one of another tunnel server).
    pub async fn stop_notify(
        &self,
        hash: &TicketHash,
        tunnel_server: TunnelServerId,
        now: i64,
        sent: u64,
        recv: u64,
    ) -> Result<Option<StoppedSession>, StoreError> {
        let mut writer = self.writer().await?;
        let row = sqlx::query(
            "UPDATE notify_tickets SET stopped_at = $1, sent = $2, recv = $3 \
             WHERE id_hash = $4 AND tunnel_server_id = $5 AND stopped_at IS NULL \
             RETURNING user_id, service_id, tunnel_server_id, started_at, end_requested_at, \
             end_requested_by, end_cause",
        )
        .bind(now)
        .bind(to_i64(sent))
        .bind(to_i64(recv))
        .bind(hash.as_bytes().as_slice())
        .bind(tunnel_server.0)
        .fetch_optional(writer.conn())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let started_at: i64 = row.try_get("started_at")?;
        let end = match row.try_get::<Option<i64>, _>("end_requested_at")? {
            Some(at) => Some(super::EndRequest {
                at,
                by: row.try_get("end_requested_by")?,
                cause: row
                    .try_get::<Option<String>, _>("end_cause")?
                    .as_deref()
                    .and_then(super::EndCause::parse),
            }),
            None => None,
        };
        Ok(Some(StoppedSession {
            end,
            user_id: UserId(row.try_get("user_id")?),
            service_id: ServiceId(row.try_get("service_id")?),
            tunnel_server_id: TunnelServerId(row.try_get("tunnel_server_id")?),
            started_at,
            duration_ms: now.saturating_sub(started_at).max(0),
            sent,
            recv,
        }))
    }
}
