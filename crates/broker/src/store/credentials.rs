//! How each service signs its user in (docs/protocol.md §6.8), and the pass-through boxes
//! of login sessions and client tickets. Every password here is a sealed box: the store
//! never sees one in clear.

use core::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ServiceId, Store, StoreError, TokenHash, UserId, corrupt};
use crate::model::CredentialMode;

/// The longest user name, domain or principal template stored for a service, in bytes.
pub const MAX_CREDENTIAL_FIELD_LEN: usize = 256;

/// A service's credential settings.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ServiceCredentials {
    /// The mode.
    pub mode: CredentialMode,
    /// The stored account's user name (`stored`).
    pub username: Option<String>,
    /// The domain (`stored`, `pass-through`).
    pub domain: Option<String>,
    /// The stored password, a box under the broker's credential key (`stored`).
    pub secret: Option<Vec<u8>>,
    /// The principal template (`ssh-certificate`), such as `{username}`.
    pub ssh_principal: Option<String>,
    /// The certificate's source addresses (`ssh-certificate`): `client`, `none`, or a
    /// comma-separated list of addresses and networks.
    pub ssh_source_address: Option<String>,
}

impl fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCredentials")
            .field("mode", &self.mode)
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("secret", &self.secret.as_ref().map(|_| "<sealed>"))
            .field("ssh_principal", &self.ssh_principal)
            .field("ssh_source_address", &self.ssh_source_address)
            .finish()
    }
}

impl ServiceCredentials {
    /// The settings of a mode without stored fields: `none`, `pass-through` with a domain,
    /// `ssh-certificate` with a principal template.
    pub fn mode(mode: CredentialMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let fields = [
            &self.username,
            &self.domain,
            &self.ssh_principal,
            &self.ssh_source_address,
        ];
        if fields.into_iter().flatten().any(|field| {
            field.is_empty()
                || field.len() > MAX_CREDENTIAL_FIELD_LEN
                || field.chars().any(char::is_control)
        }) {
            return Err(StoreError::Invalid(format!(
                "user names, domains, principals and addresses must be 1 to \
                 {MAX_CREDENTIAL_FIELD_LEN} bytes without control characters"
            )));
        }
        let mode = self.mode;
        let stored = mode == CredentialMode::Stored;
        if stored != (self.username.is_some() && self.secret.is_some()) {
            return Err(StoreError::Invalid(
                "a user name and a sealed password go with the stored mode, and only with it"
                    .to_owned(),
            ));
        }
        let ssh = mode == CredentialMode::SshCertificate;
        if !ssh && (self.ssh_principal.is_some() || self.ssh_source_address.is_some()) {
            return Err(StoreError::Invalid(
                "SSH principals and source addresses go with the ssh-certificate mode only"
                    .to_owned(),
            ));
        }
        if self.domain.is_some()
            && !matches!(mode, CredentialMode::Stored | CredentialMode::PassThrough)
        {
            return Err(StoreError::Invalid(
                "a domain goes with the pass-through and stored modes only".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Reads a service's credential columns, named `<prefix>credential_mode` and so on.
pub(super) fn service_credentials_from_row(
    row: &AnyRow,
    prefix: &str,
) -> Result<ServiceCredentials, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    let mode: String = row.try_get(column("credential_mode").as_str())?;
    Ok(ServiceCredentials {
        mode: mode
            .parse()
            .map_err(|_| corrupt("services", "unknown credential_mode"))?,
        username: row.try_get(column("credential_username").as_str())?,
        domain: row.try_get(column("credential_domain").as_str())?,
        secret: row.try_get(column("credential_secret").as_str())?,
        ssh_principal: row.try_get(column("ssh_principal").as_str())?,
        ssh_source_address: row.try_get(column("ssh_source_address").as_str())?,
    })
}

/// A login session's pass-through box and its half of the box's key.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredential {
    /// The row's share of the key (the cookie holds the other).
    pub share: [u8; 32],
    /// The password, sealed.
    pub sealed: Vec<u8>,
}

impl fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCredential(<redacted>)")
    }
}

impl Drop for SessionCredential {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

const CREDENTIAL_COLUMNS: &str = "credential_mode, credential_username, credential_domain, \
     credential_secret, ssh_principal, ssh_source_address";

impl Store {
    /// Sets how the service `name` signs its users in. The mode must suit the service's
    /// protocol ([`CredentialMode::suits`]).
    pub async fn set_service_credentials(
        &self,
        name: &str,
        credentials: &ServiceCredentials,
    ) -> Result<(), StoreError> {
        credentials.check()?;
        let service = self
            .service_by_name(name)
            .await?
            .ok_or(StoreError::NotFound("service"))?;
        let mode = credentials.mode;
        if !mode.suits(service.protocol) {
            return Err(StoreError::Invalid(format!(
                "a {} service cannot use the {mode} mode (pass-through and stored: rdp, vnc; \
                 ssh-certificate: ssh)",
                service.protocol
            )));
        }
        let mut writer = self.writer().await?;
        sqlx::query(
            "UPDATE services SET credential_mode = $1, credential_username = $2, \
             credential_domain = $3, credential_secret = $4, ssh_principal = $5, \
             ssh_source_address = $6 WHERE id = $7",
        )
        .bind(mode.as_str())
        .bind(credentials.username.as_deref())
        .bind(credentials.domain.as_deref())
        .bind(credentials.secret.clone())
        .bind(credentials.ssh_principal.as_deref())
        .bind(credentials.ssh_source_address.as_deref())
        .bind(service.id.0)
        .execute(writer.conn())
        .await?;
        Ok(())
    }

    /// The credential settings of service `id`.
    pub async fn service_credentials(
        &self,
        id: ServiceId,
    ) -> Result<Option<ServiceCredentials>, StoreError> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM services WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(|row| service_credentials_from_row(row, ""))
            .transpose()
    }

    /// Every stored password box, by service: what a rotation of the credential key
    /// re-seals.
    pub async fn stored_secrets(&self) -> Result<Vec<(ServiceId, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, credential_secret FROM services \
             WHERE credential_secret IS NOT NULL ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    ServiceId(row.try_get("id")?),
                    row.try_get("credential_secret")?,
                ))
            })
            .collect()
    }

    /// Replaces stored password boxes, in one transaction: each `(service, old, new)`
    /// only where the box is still `old`. Fails, changing nothing, if any box changed
    /// meanwhile.
    pub async fn reseal_stored_secrets(
        &self,
        boxes: &[(ServiceId, Vec<u8>, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (id, old, new) in boxes {
            let done = sqlx::query(
                "UPDATE services SET credential_secret = $1 \
                 WHERE id = $2 AND credential_secret = $3",
            )
            .bind(new.clone())
            .bind(id.0)
            .bind(old.clone())
            .execute(tx.conn())
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Err(StoreError::Invalid(format!(
                    "the stored credentials of service {id} changed during the rotation; \
                     run it again"
                )));
            }
        }
        tx.commit().await
    }

    /// Whether `user` may use at least one `pass-through` service: only then does sign-in
    /// keep the password (sealed).
    pub async fn user_has_pass_through_service(&self, user: UserId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(CASE WHEN EXISTS ( \
                 SELECT 1 FROM services \
                 JOIN service_groups ON service_groups.service_id = services.id \
                 JOIN user_groups ON user_groups.group_id = service_groups.group_id \
                 WHERE user_groups.user_id = $1 AND services.credential_mode = 'pass-through') \
             THEN 1 ELSE 0 END AS BIGINT) AS found",
        )
        .bind(user.0)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>("found")? != 0)
    }

    /// Keeps a login session's pass-through box and its share of the key.
    pub async fn set_session_credential(
        &self,
        session: &TokenHash,
        credential: &SessionCredential,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(
            "UPDATE login_sessions SET credential_share = $1, credential_box = $2 \
             WHERE token_hash = $3",
        )
        .bind(credential.share.to_vec())
        .bind(credential.sealed.clone())
        .bind(session.as_bytes().to_vec())
        .execute(writer.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The pass-through box of a live login session, if it has one.
    pub async fn session_credential(
        &self,
        session: &TokenHash,
        now: i64,
    ) -> Result<Option<SessionCredential>, StoreError> {
        let row = sqlx::query(
            "SELECT credential_share, credential_box FROM login_sessions \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(session.as_bytes().to_vec())
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let share: Option<Vec<u8>> = row.try_get("credential_share")?;
        let sealed: Option<Vec<u8>> = row.try_get("credential_box")?;
        let (Some(share), Some(sealed)) = (share, sealed) else {
            return Ok(None);
        };
        let share = zeroize::Zeroizing::new(share);
        let share = <[u8; 32]>::try_from(share.as_slice())
            .map_err(|_| corrupt("login_sessions", "credential_share is not 32 bytes"))?;
        Ok(Some(SessionCredential { share, sealed }))
    }

    /// Erases the pass-through boxes of the unused client tickets a login session issued
    /// (at its sign-out, before the session's row goes). Returns how many.
    pub async fn erase_session_ticket_credentials(
        &self,
        session: &TokenHash,
    ) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(
            "UPDATE client_tickets SET credential_box = NULL \
             WHERE session_hash = $1 AND credential_box IS NOT NULL",
        )
        .bind(session.as_bytes().to_vec())
        .execute(writer.conn())
        .await?;
        Ok(done.rows_affected())
    }
}
