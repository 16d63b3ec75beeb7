//! What an administrator does, whether from the admin pages or `portcullis admin`: each
//! change made in the database, audited with the administrator's name ([`Actor`]), and
//! what a user may no longer use revoked at once — their unredeemed tickets cancelled and
//! their live sessions asked to end (docs/protocol.md §7.8).
//!
//! Audit events are named `admin.<what>.<done>` (docs/broker.md lists them); their detail
//! never holds a password or a token. A caller with a running broker wakes its held control
//! requests afterwards (`state.control.wake_all()`); other brokers, and every broker after
//! a `portcullis admin` command, notice the ends within a quarter of a second.

use serde_json::{Value, json};

use crate::store::{
    AuditEvent, EndingSession, NewService, NewTunnelServer, Revoked, ServiceCredentials, ServiceId,
    Store, StoreError, TokenHash, UserId,
};
use crate::tickets::crypto::TicketHash;

/// Who did it: a portal administrator's user name, or `cli:<system user>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Actor(String);

impl Actor {
    /// The portal user `username`, an administrator.
    pub fn portal(username: &str) -> Self {
        Self(username.to_owned())
    }

    /// `portcullis admin` run by the system user `user` (`cli:<user>`).
    pub fn cli(user: &str) -> Self {
        Self(format!("cli:{user}"))
    }

    /// The name audited.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The counts of a revocation, as audited.
fn revoked_detail(revoked: Revoked) -> Value {
    json!({
        "client_tickets_cancelled": revoked.client_tickets,
        "tunnel_tickets_cancelled": revoked.tunnel_tickets,
        "sessions_ended": revoked.sessions,
    })
}

/// `detail` with `extra`'s members added.
fn merged(mut detail: Value, extra: Value) -> Value {
    if let (Some(target), Value::Object(extra)) = (detail.as_object_mut(), extra) {
        target.extend(extra);
    }
    detail
}

/// The audit event of an administrator's action.
struct Audit<'a> {
    actor: &'a Actor,
    now: i64,
    kind: &'static str,
    username: Option<String>,
    service: Option<String>,
    detail: Value,
}

impl<'a> Audit<'a> {
    /// An event of `kind` by `actor` at `now`, about no user or service, with `detail`.
    fn new(actor: &'a Actor, now: i64, kind: &'static str, detail: Value) -> Self {
        Self {
            actor,
            now,
            kind,
            username: None,
            service: None,
            detail,
        }
    }

    /// The event is about the user `name`.
    fn about_user(mut self, name: impl Into<String>) -> Self {
        self.username = Some(name.into());
        self
    }

    /// The event is about the service `name`.
    fn about_service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    async fn write(self, store: &Store) -> Result<(), StoreError> {
        store
            .audit(AuditEvent {
                at: self.now,
                kind: self.kind.to_owned(),
                username: self.username,
                service: self.service,
                source_ip: None,
                actor: Some(self.actor.name().to_owned()),
                detail: self.detail.to_string(),
            })
            .await
            .map(drop)
    }
}

/// Adds a user with an Argon2id `password_hash` and `groups` (existing ones).
pub async fn add_user(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
    password_hash: &str,
    groups: &[String],
) -> Result<UserId, StoreError> {
    let id = store.add_user(username, password_hash, now).await?;
    let (missing, _) = store.set_user_groups(id, groups, now).await?;
    if let Some(group) = missing.first() {
        // Nothing half-made: the user goes again.
        store.remove_user(username, now).await?;
        return Err(StoreError::Invalid(format!("there is no group {group:?}")));
    }
    Audit::new(actor, now, "admin.user.added", json!({ "groups": groups }))
        .about_user(username)
        .write(store)
        .await?;
    Ok(id)
}

/// Disables a user: their sign-ins are refused, and their sessions, unredeemed tickets and
/// live connections end at once.
pub async fn disable_user(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
) -> Result<Revoked, StoreError> {
    let revoked = store
        .set_user_disabled(username, Some(now), Some(actor.name()))
        .await?;
    Audit::new(actor, now, "admin.user.disabled", revoked_detail(revoked))
        .about_user(username)
        .write(store)
        .await?;
    Ok(revoked)
}

/// Enables a disabled user again.
pub async fn enable_user(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
) -> Result<(), StoreError> {
    store.set_user_disabled(username, None, None).await?;
    Audit::new(actor, now, "admin.user.enabled", json!({}))
        .about_user(username)
        .write(store)
        .await
}

/// Removes a user; their live connections end.
pub async fn remove_user(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
) -> Result<Revoked, StoreError> {
    let revoked = store.remove_user(username, now).await?;
    Audit::new(actor, now, "admin.user.removed", revoked_detail(revoked))
        .about_user(username)
        .write(store)
        .await?;
    Ok(revoked)
}

/// Sets a password user's password (an Argon2id hash) and ends their portal sessions.
pub async fn set_password(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    let user = store
        .user_by_name(username)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    if let Some(link) = &user.oidc {
        return Err(StoreError::Invalid(format!(
            "{username} signs in through the OpenID Connect provider {} and has no password",
            link.provider
        )));
    }
    store.set_password_hash(user.id, password_hash).await?;
    let sessions = store.delete_login_sessions_of(user.id).await?;
    Audit::new(
        actor,
        now,
        "admin.user.password_set",
        json!({ "portal_sessions_ended": sessions }),
    )
    .about_user(username)
    .write(store)
    .await
}

/// Makes a user a member of exactly `groups` (existing ones); what they may no longer use
/// is revoked.
pub async fn set_user_groups(
    store: &Store,
    now: i64,
    actor: &Actor,
    username: &str,
    groups: &[String],
) -> Result<Revoked, StoreError> {
    let user = store
        .user_by_name(username)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    let before = store.groups_of_user(user.id).await?;
    let (missing, revoked) = store.set_user_groups(user.id, groups, now).await?;
    let after = store.groups_of_user(user.id).await?;
    Audit::new(
        actor,
        now,
        "admin.user.groups_set",
        merged(
            json!({ "before": before, "after": after, "missing": missing }),
            revoked_detail(revoked),
        ),
    )
    .about_user(username)
    .write(store)
    .await?;
    Ok(revoked)
}

/// Adds `username` to `group`.
pub async fn add_member(
    store: &Store,
    now: i64,
    actor: &Actor,
    group: &str,
    username: &str,
) -> Result<(), StoreError> {
    store.add_member(group, username).await?;
    Audit::new(
        actor,
        now,
        "admin.group.member_added",
        json!({ "group": group }),
    )
    .about_user(username)
    .write(store)
    .await
}

/// Takes `username` out of `group`; what they may no longer use is revoked.
pub async fn remove_member(
    store: &Store,
    now: i64,
    actor: &Actor,
    group: &str,
    username: &str,
) -> Result<Revoked, StoreError> {
    let revoked = store.remove_member(group, username, now).await?;
    Audit::new(
        actor,
        now,
        "admin.group.member_removed",
        merged(json!({ "group": group }), revoked_detail(revoked)),
    )
    .about_user(username)
    .write(store)
    .await?;
    Ok(revoked)
}

/// Adds a group.
pub async fn add_group(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
) -> Result<(), StoreError> {
    store.add_group(name).await?;
    Audit::new(actor, now, "admin.group.added", json!({ "group": name }))
        .write(store)
        .await
}

/// Removes a group; what its members may no longer use is revoked.
pub async fn remove_group(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
) -> Result<Revoked, StoreError> {
    let revoked = store.remove_group(name, now).await?;
    Audit::new(
        actor,
        now,
        "admin.group.removed",
        merged(json!({ "group": name }), revoked_detail(revoked)),
    )
    .write(store)
    .await?;
    Ok(revoked)
}

/// What a service's audit events say of it.
fn service_detail(service: &NewService) -> Value {
    json!({
        "host": service.host,
        "port": service.port,
        "protocol": service.protocol.as_str(),
        "transport": service.transport.as_str(),
        "tunnel_group": service.tunnel_group,
        "max_session_secs": service.max_session_secs,
        "readiness": service.readiness.as_str(),
        "groups": service.allowed_groups,
    })
}

/// Adds a service.
pub async fn add_service(
    store: &Store,
    now: i64,
    actor: &Actor,
    service: NewService,
) -> Result<ServiceId, StoreError> {
    let detail = service_detail(&service);
    let name = service.name.clone();
    let id = store.add_service(service, now).await?;
    Audit::new(actor, now, "admin.service.added", detail)
        .about_service(name)
        .write(store)
        .await?;
    Ok(id)
}

/// Changes a service's settings; users who lose it lose their live connections to it.
pub async fn update_service(
    store: &Store,
    now: i64,
    actor: &Actor,
    id: ServiceId,
    service: NewService,
) -> Result<Revoked, StoreError> {
    let before = store
        .service_by_id(id)
        .await?
        .ok_or(StoreError::NotFound("service"))?;
    if let Some(credentials) = store.service_credentials(id).await? {
        if !credentials.mode.suits(service.protocol) {
            return Err(StoreError::Invalid(format!(
                "{} signs its users in with the {} mode, which a {} service cannot use: \
                 change its credentials first",
                before.name, credentials.mode, service.protocol
            )));
        }
    }
    let detail = merged(
        service_detail(&service),
        json!({ "renamed_from": before.name }),
    );
    let name = service.name.clone();
    let revoked = store.update_service(id, service, now).await?;
    Audit::new(
        actor,
        now,
        "admin.service.changed",
        merged(detail, revoked_detail(revoked)),
    )
    .about_service(name)
    .write(store)
    .await?;
    Ok(revoked)
}

/// Removes a service; its live connections end.
pub async fn remove_service(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
) -> Result<Revoked, StoreError> {
    let revoked = store.remove_service(name, now).await?;
    Audit::new(actor, now, "admin.service.removed", revoked_detail(revoked))
        .about_service(name)
        .write(store)
        .await?;
    Ok(revoked)
}

/// Sets how the service `name` signs its users in (docs/protocol.md §6.8), audited as
/// `admin.service.credentials` with the mode and the account's names, never a password.
pub async fn set_service_credentials(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
    credentials: &ServiceCredentials,
) -> Result<(), StoreError> {
    store.set_service_credentials(name, credentials).await?;
    Audit::new(
        actor,
        now,
        "admin.service.credentials",
        json!({
            "mode": credentials.mode.as_str(),
            "account": credentials.username,
            "domain": credentials.domain,
            "password_stored": credentials.secret.is_some(),
            "ssh_principal": credentials.ssh_principal,
            "ssh_source_address": credentials.ssh_source_address,
        }),
    )
    .about_service(name)
    .write(store)
    .await
}

/// Audits a rotation of the credential key that re-sealed `resealed` stored passwords.
pub async fn credential_key_rotated(
    store: &Store,
    now: i64,
    actor: &Actor,
    resealed: usize,
) -> Result<(), StoreError> {
    Audit::new(
        actor,
        now,
        "admin.credential_key.rotated",
        json!({ "resealed": resealed }),
    )
    .write(store)
    .await
}

/// A new tunnel-server token: `sk-` and 43 characters of base64url (256 random bits).
pub fn new_tunnel_token() -> Result<String, portcullis_proto::Error> {
    let bytes = portcullis_proto::random::array::<32>()?;
    let text: String = portcullis_proto::b64::encode(&bytes)
        .chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    Ok(format!("sk-{text}"))
}

/// Registers a tunnel server; its token (shown once, stored only hashed) comes back.
pub async fn add_tunnel_server(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
    public_address: &str,
    group: &str,
    legacy: bool,
) -> Result<String, StoreError> {
    let token = new_tunnel_token().map_err(|error| StoreError::Invalid(error.to_string()))?;
    store
        .add_tunnel_server(
            NewTunnelServer {
                name: name.to_owned(),
                public_address: public_address.to_owned(),
                token_hash: TokenHash::of(token.as_bytes()),
                legacy,
                group: group.to_owned(),
            },
            now,
        )
        .await?;
    Audit::new(
        actor,
        now,
        "admin.tunnel_server.added",
        json!({
            "tunnel_server": name, "address": public_address, "group": group, "legacy": legacy,
        }),
    )
    .write(store)
    .await?;
    Ok(token)
}

/// Gives a tunnel server a new token (returned, shown once); the old one stops working.
pub async fn rotate_tunnel_token(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
) -> Result<String, StoreError> {
    let token = new_tunnel_token().map_err(|error| StoreError::Invalid(error.to_string()))?;
    store
        .set_tunnel_server_token(name, &TokenHash::of(token.as_bytes()))
        .await?;
    Audit::new(
        actor,
        now,
        "admin.tunnel_server.token_rotated",
        json!({ "tunnel_server": name }),
    )
    .write(store)
    .await?;
    Ok(token)
}

/// Unregisters a tunnel server; its token stops working.
pub async fn remove_tunnel_server(
    store: &Store,
    now: i64,
    actor: &Actor,
    name: &str,
) -> Result<(), StoreError> {
    store.remove_tunnel_server(name).await?;
    Audit::new(
        actor,
        now,
        "admin.tunnel_server.removed",
        json!({ "tunnel_server": name }),
    )
    .write(store)
    .await
}

/// Asks for the end of the live session `reference`; `None` when it is not live (ended,
/// or its end asked for already).
pub async fn end_connection(
    store: &Store,
    now: i64,
    actor: &Actor,
    reference: &TicketHash,
) -> Result<Option<EndingSession>, StoreError> {
    let Some(ending) = store
        .request_session_end(reference, now, actor.name())
        .await?
    else {
        return Ok(None);
    };
    let username = store.user_by_id(ending.user_id).await?.map(|u| u.username);
    let service = store
        .service_by_id(ending.service_id)
        .await?
        .map(|service| service.name);
    let server = store
        .list_tunnel_servers()
        .await?
        .into_iter()
        .find(|server| server.id == ending.tunnel_server_id)
        .map(|server| server.name);
    Audit {
        actor,
        now,
        kind: "admin.connection.ended",
        username,
        service,
        // The first 8 hex digits name the session in the audit log, as ticket ids are
        // shortened in logs.
        detail: json!({
            "tunnel_server": server,
            "session": portcullis_proto::hex::encode(&reference.as_bytes()[..4]),
        }),
    }
    .write(store)
    .await?;
    Ok(Some(ending))
}
