//! What a signed-in person may do, whatever the route: password sign-in under the login
//! limits, login sessions, and issuing a client ticket for a service. The user API, the
//! portal and the OpenID Connect callback call these; they only parse requests and shape
//! answers (`crate::http`).

use portcullis_proto::api::LaunchUrl;
use portcullis_proto::credential::{self, CredentialKey};
use portcullis_proto::{Scrambler, SourceKey, TicketId, b64};
use serde_json::json;
use zeroize::Zeroizing;

use crate::client_addr::ClientAddr;
use crate::password::decoy_hash;
use crate::rate_limit::retry_after_secs;
use crate::scripts::{Os, SecretString};
use crate::state::AppState;
use crate::store::{
    AuditEvent, CredentialMode, NewClientTicket, ServiceId, SessionCredential, StoreError,
    TicketCredential, TokenHash, User,
};
use crate::tickets::crypto::ticket_hash;

/// The longest user name accepted, in bytes (as the store and the admin CLI).
pub const MAX_USERNAME_LEN: usize = 128;

/// Why an account operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The user name is empty or longer than [`MAX_USERNAME_LEN`].
    #[error("the user name must be 1 to {MAX_USERNAME_LEN} bytes")]
    InvalidName,
    /// Too many sign-in attempts; retry after this many seconds.
    #[error("too many login attempts, retry in {0} s")]
    RateLimited(u64),
    /// Too many password checks are running; retry in a moment.
    #[error("the broker is busy, retry in a moment")]
    Busy,
    /// Wrong user name or password (or a user who cannot sign in with one).
    #[error("invalid user name or password")]
    BadCredentials,
    /// The service does not exist or the user may not use it (one answer for both).
    #[error("not found")]
    NotFound,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (randomness, encoding); the detail is for the log.
    #[error("{0}")]
    Internal(String),
}

impl From<portcullis_proto::Error> for AccountError {
    fn from(error: portcullis_proto::Error) -> Self {
        Self::Internal(error.to_string())
    }
}

/// A session token, for the session cookie only (it is a bearer credential).
pub type SessionToken = String;

/// Checks a user name and password under the login rate limits, audits the attempt, and
/// on success opens a login session.
pub async fn sign_in(
    state: &AppState,
    client: &ClientAddr,
    username: &str,
    password: SecretString,
) -> Result<(User, SessionToken), AccountError> {
    // No account has a longer name (the store refuses them), so a longer one is refused
    // before it reaches the limiter's keys or the audit log.
    if username.is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(AccountError::InvalidName);
    }
    let now = state.now();
    // Both guards count the attempt as in flight until the answer is ready.
    let _per_ip = match client.0 {
        Some(ip) => Some(
            state
                .logins_per_ip
                .check(&SourceKey::of(ip), now)
                .map_err(|wait| AccountError::RateLimited(retry_after_secs(wait)))?,
        ),
        None => None,
    };
    let user_key = username.to_owned();
    let _per_user = state
        .logins_per_user
        .check(&user_key, now)
        .map_err(|wait| AccountError::RateLimited(retry_after_secs(wait)))?;

    // A user who signs in through an OpenID Connect provider has no password, and a
    // disabled one may not sign in: both are checked against the decoy, as unknown names.
    let user = state
        .store
        .user_by_name(username)
        .await?
        .filter(|user| user.oidc.is_none() && user.disabled_at.is_none());
    let stored = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
    // Kept (zeroized on drop) for pass-through services, sealed once the session exists.
    let kept = password.clone();
    let valid = state
        .password_checks
        .verify(password, stored)
        .await
        .map_err(|_| {
            state.metrics.connections.logins_busy.inc();
            AccountError::Busy
        })?
        .map_err(|error| AccountError::Internal(error.to_string()))?;
    let (Some(user), true) = (user, valid) else {
        audit(
            state,
            "login.failed",
            Some(username.to_owned()),
            client,
            json!({}),
        )
        .await?;
        return Err(AccountError::BadCredentials);
    };
    state.logins_per_user.reset(&user_key);
    let token = open_session(state, &user, client, "login", json!({})).await?;
    if state.store.user_has_pass_through_service(user.id).await? {
        keep_for_pass_through(state, &token, &kept).await?;
    }
    Ok((user, token))
}

/// Seals the password of a new session in the session's box (docs/protocol.md §6.8.2): a
/// fresh share of the key in the row, the other share the cookie's token.
async fn keep_for_pass_through(
    state: &AppState,
    token: &str,
    password: &SecretString,
) -> Result<(), AccountError> {
    if password.expose().len() > credential::MAX_SECRET_LEN {
        tracing::info!("password longer than a credential box holds: not kept for pass-through");
        return Ok(());
    }
    let share = Zeroizing::new(portcullis_proto::random::array::<32>()?);
    let key = CredentialKey::for_session(&share, token.as_bytes())?;
    let session = TokenHash::of(token.as_bytes());
    let sealed = key.seal(session.as_bytes(), password.expose().as_bytes())?;
    state
        .store
        .set_session_credential(
            &session,
            &SessionCredential {
                share: *share,
                sealed,
            },
        )
        .await?;
    Ok(())
}

/// The pass-through password of the session `token`, sealed to the new client ticket
/// (docs/protocol.md §6.8.2); `None` when the session holds none (an OpenID Connect user,
/// a sign-in before the service was set to pass-through).
async fn reseal_for_ticket(
    state: &AppState,
    token: &str,
    ticket: &TicketId,
    scrambler: &Scrambler,
) -> Result<Option<TicketCredential>, AccountError> {
    let session = TokenHash::of(token.as_bytes());
    let Some(kept) = state
        .store
        .session_credential(&session, state.now())
        .await?
    else {
        return Ok(None);
    };
    let key = CredentialKey::for_session(&kept.share, token.as_bytes())?;
    let password = match key.open(session.as_bytes(), &kept.sealed) {
        Ok(password) => password,
        Err(error) => {
            tracing::warn!(%error, "a session's pass-through box does not open: no password");
            return Ok(None);
        }
    };
    let sealed = CredentialKey::for_ticket(ticket, scrambler)?
        .seal(ticket_hash(ticket).as_bytes(), password.expose())?;
    Ok(Some(TicketCredential { sealed, session }))
}

/// Opens a login session for `user`, who just signed in (with a password, or through an
/// OpenID Connect provider), and audits it as `kind` with `detail`.
pub async fn open_session(
    state: &AppState,
    user: &User,
    client: &ClientAddr,
    kind: &str,
    detail: serde_json::Value,
) -> Result<SessionToken, AccountError> {
    let bytes = Zeroizing::new(portcullis_proto::random::array::<32>()?);
    // Standard base64 has '+', '/' and '=', which are valid in a cookie value.
    let token = b64::encode(bytes.as_slice());
    let ttl_ms = i64::try_from(state.config.session.cookie_ttl_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    let now_ms = state.now();
    state
        .store
        .create_login_session(
            &TokenHash::of(token.as_bytes()),
            user.id,
            now_ms,
            now_ms.saturating_add(ttl_ms),
        )
        .await?;
    audit(state, kind, Some(user.username.clone()), client, detail).await?;
    Ok(token)
}

/// Whether `user` is an administrator: a member of one of `[admin] groups`, not disabled.
pub async fn is_admin(state: &AppState, user: &User) -> Result<bool, StoreError> {
    let admins = &state.config.admin.groups;
    if admins.is_empty() || user.disabled_at.is_some() {
        return Ok(false);
    }
    let groups = state.store.groups_of_user(user.id).await?;
    Ok(groups.iter().any(|group| admins.contains(group)))
}

/// Ends the login session of `token`, if there is one, with its pass-through password:
/// the boxes of its unused client tickets first, then its row (docs/protocol.md §6.8.2).
pub async fn close_session(state: &AppState, token: &str) -> Result<(), AccountError> {
    let session = TokenHash::of(token.as_bytes());
    state
        .store
        .erase_session_ticket_credentials(&session)
        .await?;
    state.store.delete_login_session(&session).await?;
    Ok(())
}

/// A client ticket just issued.
pub struct IssuedTicket {
    /// The `udssv2://` link that starts the launcher; it holds the ticket (a secret).
    pub url: LaunchUrl,
    /// The connection's public id, to follow it.
    pub status_id: String,
}

/// Issues a client ticket for `user` and `service_id` (which the user must be allowed to
/// use: otherwise [`AccountError::NotFound`]) and audits it. `user_agent` tells the
/// launcher's operating system when the request came from the user's own browser;
/// `session` is the request's session token, whose pass-through password (if any) a
/// `pass-through` service's ticket carries, sealed to the ticket.
pub async fn issue_ticket(
    state: &AppState,
    user: &User,
    client: &ClientAddr,
    user_agent: Option<&str>,
    service_id: ServiceId,
    session: Option<&str>,
) -> Result<IssuedTicket, AccountError> {
    let service = state
        .store
        .service_by_id(service_id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if !state
        .store
        .user_may_use_service(user.id, service_id)
        .await?
    {
        return Err(AccountError::NotFound);
    }
    let ticket = TicketId::generate()?;
    let scrambler = Scrambler::generate()?;
    let pass_through = state
        .store
        .service_credentials(service_id)
        .await?
        .is_some_and(|credentials| credentials.mode == CredentialMode::PassThrough);
    let credential = match (pass_through, session) {
        (true, Some(token)) => reseal_for_ticket(state, token, &ticket, &scrambler).await?,
        _ => None,
    };
    let status_id = portcullis_proto::hex::encode(&portcullis_proto::random::array::<16>()?);
    let now = state.now();
    let ttl_ms = i64::try_from(
        state
            .config
            .tickets
            .client_ticket_ttl_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX);
    state
        .store
        .insert_client_ticket(NewClientTicket {
            id_hash: ticket_hash(&ticket),
            status_id: status_id.clone(),
            user_id: user.id,
            service_id,
            scrambler: scrambler.as_str().to_owned(),
            client_os: user_agent
                .and_then(Os::from_user_agent)
                .map(|os| os.as_str().to_owned()),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
            credential,
        })
        .await?;
    state.metrics.tickets_issued.inc();
    // The service in its column too, so that the audit log filtered by service shows the
    // Connect.
    audit_about(
        state,
        "ticket.issued",
        Some(user.username.clone()),
        Some(service.name.clone()),
        client,
        json!({ "service": service.name }),
    )
    .await?;
    let url = LaunchUrl::new(state.config.public_url().launch_host(), ticket, scrambler)?;
    Ok(IssuedTicket { url, status_id })
}

/// Appends an event about a request of `client` to the audit log.
pub async fn audit(
    state: &AppState,
    kind: &str,
    username: Option<String>,
    client: &ClientAddr,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    audit_about(state, kind, username, None, client, detail).await
}

/// [`audit`] for an event that concerns `service` too.
async fn audit_about(
    state: &AppState,
    kind: &str,
    username: Option<String>,
    service: Option<String>,
    client: &ClientAddr,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    state
        .store
        .audit(AuditEvent {
            actor: None,
            at: state.now(),
            kind: kind.to_owned(),
            username,
            service,
            source_ip: Some(client.describe()),
            detail: detail.to_string(),
        })
        .await?;
    Ok(())
}
