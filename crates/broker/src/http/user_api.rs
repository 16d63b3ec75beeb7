//! The user API behind the portal (and usable from scripts): sign in with a password, list
//! one's services, start a connection and follow it. Routes only: what they do is
//! [`crate::accounts`] and the store.
//!
//! Sessions are an opaque random token in the `portcullis_session` cookie (HttpOnly,
//! SameSite=Strict, Secure); the database keeps only its hash, so several brokers
//! on one PostgreSQL share sessions. State-changing routes take JSON bodies, which a
//! cross-site form cannot send, SameSite=Strict keeps the cookie off cross-site requests,
//! and a request whose `Origin` or `Sec-Fetch-Site` names another site (a sibling
//! subdomain too) is refused before it gets here (`http::same_origin`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{BodyRefusal, ClientAddr, LimitedBody, UserApiError};
use crate::accounts;
use crate::scripts::SecretString;
use crate::state::AppState;
use crate::store::{Connection, ConnectionState, ServiceId, TokenHash, User};

/// Where connections are followed: `GET /api/connections[/{status_id}]`.
pub const CONNECTIONS_PATH: &str = "/api/connections";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "portcullis_session";

/// The body of `POST /api/login`.
#[derive(Deserialize)]
pub struct LoginRequest {
    /// The user name.
    pub username: String,
    /// The password (zeroized on drop, redacted in `Debug`).
    pub password: SecretString,
}

/// One service in `GET /api/services`.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    /// The service id, for `POST /api/services/{id}/connect`.
    pub id: i64,
    /// The display name.
    pub name: String,
    /// `rdp`, `ssh`, `vnc` or `tcp`.
    pub protocol: &'static str,
    /// `direct` or `tunneled`.
    pub transport: &'static str,
}

/// The answer of `POST /api/services/{id}/connect`.
#[derive(Debug, Serialize)]
pub struct ConnectAnswer {
    /// The `udssv2://` link that starts the launcher (it holds the client ticket).
    pub url: String,
    /// Where to poll the connection's progress.
    pub status_url: String,
    /// The connection's public id (the last segment of `status_url`).
    pub status_id: String,
}

/// The signed-in user of a request, from the session cookie.
#[derive(Debug)]
pub struct SignedIn(pub User);

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = UserApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, UserApiError> {
        let token = session_token(&parts.headers).ok_or(UserApiError::Unauthenticated)?;
        state
            .store
            .login_session_user(&TokenHash::of(token.as_bytes()), state.now())
            .await?
            .map(SignedIn)
            .ok_or(UserApiError::Unauthenticated)
    }
}

/// `POST /api/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Result<Response, UserApiError> {
    // A cross-site HTML form cannot send `application/json` without a CORS preflight, so
    // requiring it keeps other sites from signing a browser in to an account of theirs.
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return Err(UserApiError::BadRequest(
            "send the credentials as JSON (Content-Type: application/json)".into(),
        ));
    }
    let LimitedBody(body) = body.map_err(|refusal| match refusal {
        BodyRefusal::TooLarge => UserApiError::TooLarge,
        BodyRefusal::Unreadable => UserApiError::BadRequest(refusal.to_string()),
    })?;
    let request: LoginRequest = serde_json::from_slice(&body)
        .map_err(|_| UserApiError::BadRequest("expected {\"username\", \"password\"}".into()))?;
    let (user, token) =
        accounts::sign_in(&state, &client, &request.username, request.password).await?;
    let cookie = session_cookie(&token, state.config.session.cookie_ttl_secs)?;
    Ok((
        [(SET_COOKIE, cookie)],
        Json(json!({ "username": user.username })),
    )
        .into_response())
}

/// `POST /api/logout`.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, UserApiError> {
    let cookie = sign_out(&state, &headers).await?;
    Ok(([(SET_COOKIE, cookie)], Json(json!({}))).into_response())
}

/// Ends the request's login session, if any: the `Set-Cookie` value that clears it.
pub(crate) async fn sign_out(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<HeaderValue, UserApiError> {
    if let Some(token) = session_token(headers) {
        accounts::close_session(state, &token).await?;
    }
    session_cookie("", 0)
}

/// `GET /api/services`: the services the signed-in user may use.
pub async fn services(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
) -> Result<Json<Vec<ServiceView>>, UserApiError> {
    Ok(Json(service_views(&state, &user).await?))
}

/// The services `user` may use.
pub(crate) async fn service_views(
    state: &AppState,
    user: &User,
) -> Result<Vec<ServiceView>, UserApiError> {
    let services = state.store.services_for_user(user.id).await?;
    Ok(services
        .into_iter()
        .map(|service| ServiceView {
            id: service.id.0,
            name: service.name,
            protocol: service.protocol.as_str(),
            transport: service.transport.as_str(),
        })
        .collect())
}

/// `POST /api/services/{id}/connect`: issues a client ticket and its launch URL.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    client: ClientAddr,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<ConnectAnswer>, UserApiError> {
    Ok(Json(
        issue_ticket(&state, &user, &client, &headers, ServiceId(id)).await?,
    ))
}

/// Issues a client ticket (`accounts::issue_ticket`) and the answer that carries it.
pub(crate) async fn issue_ticket(
    state: &AppState,
    user: &User,
    client: &ClientAddr,
    headers: &HeaderMap,
    service_id: ServiceId,
) -> Result<ConnectAnswer, UserApiError> {
    let user_agent = headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let session = session_token(headers);
    let issued = accounts::issue_ticket(
        state,
        user,
        client,
        user_agent,
        service_id,
        session.as_deref(),
    )
    .await?;
    Ok(ConnectAnswer {
        url: issued.url.expose().to_string(),
        status_url: format!("{CONNECTIONS_PATH}/{}", issued.status_id),
        status_id: issued.status_id,
    })
}

/// `GET /api/connections/{status_id}`: how far one connection got.
pub async fn connection_status(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    Path(status_id): Path<String>,
) -> Result<Json<serde_json::Value>, UserApiError> {
    let connection = state
        .store
        .connection(&status_id, user.id, state.now())
        .await?
        .ok_or(UserApiError::NotFound)?;
    Ok(Json(state_json(&connection.state)))
}

/// `GET /api/connections`: the user's latest connections, newest first.
pub async fn recent_connections(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
) -> Result<Json<Vec<serde_json::Value>>, UserApiError> {
    let connections = state.store.recent_connections(user.id, state.now()).await?;
    Ok(Json(connections.iter().map(connection_json).collect()))
}

/// A connection's state as the user API shows it (docs/broker.md, "User API").
fn state_json(state: &ConnectionState) -> serde_json::Value {
    match state {
        ConnectionState::Waiting => json!({ "state": "waiting" }),
        ConnectionState::Preparing { percent, message } => {
            json!({ "state": "preparing", "percent": percent, "message": message })
        }
        ConnectionState::Connected { since } => {
            json!({ "state": "connected", "started_at": since })
        }
        ConnectionState::Ended {
            started_at,
            ended_at,
            sent,
            recv,
        } => json!({
            "state": "ended",
            "started_at": started_at,
            "ended_at": ended_at,
            "bytes_sent": sent,
            "bytes_received": recv,
            "duration_secs": ended_at.saturating_sub(*started_at).max(0) / 1000,
        }),
        ConnectionState::Expired => json!({ "state": "expired" }),
        ConnectionState::Failed => json!({ "state": "failed" }),
    }
}

/// A connection in `GET /api/connections`: its state, and which connection it is.
fn connection_json(connection: &Connection) -> serde_json::Value {
    let mut value = state_json(&connection.state);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("status_id".into(), json!(connection.status_id));
        fields.insert("service".into(), json!(connection.service));
        fields.insert("created_at".into(), json!(connection.created_at));
    }
    value
}

/// The session token of the request's cookie, if any.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    super::cookies::value(headers, SESSION_COOKIE)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The `Set-Cookie` value of a session cookie (`max_age` 0 clears it).
pub(crate) fn session_cookie(token: &str, max_age: u64) -> Result<HeaderValue, UserApiError> {
    // Always `Secure`: browsers reach the broker at its https:// public URL, directly or
    // through a TLS-terminating proxy.
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure"
    ))
    .map_err(|error| UserApiError::Internal(error.to_string()))
}
