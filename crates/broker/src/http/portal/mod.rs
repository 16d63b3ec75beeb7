//! The web portal at `/`: sign in, the user's services, Connect and the connection's live
//! state, recent connections, sign out; the launcher's set-up page at `/download`.
//!
//! Pages are maud templates ([`pages`], in the frame of [`layout`]), so every value is
//! escaped unless it is itself a template; a small script ([`assets`]) opens the
//! launcher after Connect and polls the user API for the connection's state. Every
//! response carries a strict Content-Security-Policy (no inline script or style), and every
//! form that changes something carries a CSRF token checked before anything is done
//! ([`csrf`]). What the portal does (sign in, issue tickets) is the user API's own code.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use headers::{respond, security_headers};

use super::user_api::{self, ConnectAnswer};
use super::{BodyRefusal, ClientAddr, LimitedBody, UserApiError};
use crate::accounts;
use crate::scripts::SecretString;
use crate::state::AppState;
use crate::store::{ServiceId, TokenHash, User};

mod admin;
mod assets;
mod csrf;
mod format;
mod headers;
mod layout;
mod oidc;
mod pages;

pub(crate) use pages::{cross_site, not_found};

/// The portal's routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/login/oidc/{slug}", get(oidc::begin))
        .route("/login/oidc/{slug}/callback", get(oidc::callback))
        .route("/services/{id}/connect", post(connect))
        .route("/download", get(download))
        .route("/assets/{name}", get(asset))
        .route("/favicon.ico", get(assets::favicon))
        .merge(admin::routes())
}

/// Who is asking, from the session cookie.
enum Visitor {
    /// A live session: its user and token (which keys the CSRF token).
    SignedIn(User, String),
    /// A session cookie whose session ended (expired, or signed out elsewhere).
    Ended,
    /// No session cookie.
    Anonymous,
}

async fn visitor(state: &AppState, headers: &HeaderMap) -> Result<Visitor, UserApiError> {
    let Some(token) = user_api::session_token(headers) else {
        return Ok(Visitor::Anonymous);
    };
    Ok(
        match state
            .store
            .login_session_user(&TokenHash::of(token.as_bytes()), state.now())
            .await?
        {
            Some(user) => Visitor::SignedIn(user, token),
            None => Visitor::Ended,
        },
    )
}

/// The fields of a portal form (`application/x-www-form-urlencoded`); unknown ones are
/// ignored, and of a repeated one the first counts.
#[derive(Default)]
struct Form {
    csrf: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
}

impl Form {
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            match name.as_ref() {
                csrf::FIELD if form.csrf.is_none() => form.csrf = Some(value.into_owned()),
                "username" if form.username.is_none() => {
                    form.username = Some(value.into_owned());
                }
                "password" if form.password.is_none() => {
                    form.password = Some(SecretString::new(value.into_owned()));
                }
                _ => {}
            }
        }
        form
    }

    /// The fields of a form post's body, if the body was read.
    fn read(body: Result<LimitedBody, BodyRefusal>) -> Result<Self, BodyRefusal> {
        body.map(|LimitedBody(body)| Self::parse(&body))
    }
}

/// Answers a failure of the user API's code as a page.
fn failure(error: UserApiError) -> Response {
    match error {
        UserApiError::NotFound => pages::not_found(),
        UserApiError::CrossSite => pages::cross_site(),
        UserApiError::Internal(detail) => {
            tracing::error!(%detail, "portal request failed");
            pages::internal_error()
        }
        other => {
            tracing::info!(error = %other, "portal request refused");
            pages::internal_error()
        }
    }
}

/// The sign-in page, with a double-submit token (the visitor's, or a fresh one).
fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    headers: &HeaderMap,
    view: &pages::SignIn<'_>,
    extra: Option<HeaderValue>,
) -> Response {
    let token = match csrf::login_cookie(headers) {
        Some(token) => token,
        None => match csrf::new_login_token() {
            Ok(token) => token,
            Err(error) => return failure(UserApiError::Internal(error.to_string())),
        },
    };
    let buttons = oidc::buttons(&state.oidc);
    let mut response = respond(status, pages::sign_in(&token, view, buttons));
    let response_headers = response.headers_mut();
    if let Some(cookie) = csrf::login_cookie_header(&token, 3600) {
        response_headers.append(SET_COOKIE, cookie);
    }
    if let Some(extra) = extra {
        response_headers.append(SET_COOKIE, extra);
    }
    response
}

/// The sign-in page after a session ended, clearing its cookie.
fn session_ended(state: &AppState, status: StatusCode, headers: &HeaderMap) -> Response {
    let view = pages::SignIn {
        notice: Some("Your session has ended. Sign in again."),
        ..pages::SignIn::default()
    };
    sign_in_page(
        state,
        status,
        headers,
        &view,
        user_api::session_cookie("", 0).ok(),
    )
}

/// The services page of `user`, with the connection just `started`.
async fn services_page(
    state: &AppState,
    user: &User,
    token: &str,
    started: Option<pages::Started<'_>>,
) -> Result<Response, UserApiError> {
    let services = user_api::service_views(state, user).await?;
    let recent = state.store.recent_connections(user.id, state.now()).await?;
    let csrf = csrf::session_token(token);
    let is_admin = accounts::is_admin(state, user).await?;
    let page = pages::services(&pages::Services {
        username: &user.username,
        is_admin,
        csrf: &csrf,
        services: &services,
        started,
        recent: &recent,
    });
    Ok(respond(StatusCode::OK, page))
}

/// `GET /`: the services page, or the sign-in page.
async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match visitor(&state, &headers).await {
        Ok(Visitor::SignedIn(user, token)) => services_page(&state, &user, &token, None)
            .await
            .unwrap_or_else(failure),
        Ok(Visitor::Ended) => session_ended(&state, StatusCode::OK, &headers),
        Ok(Visitor::Anonymous) => sign_in_page(
            &state,
            StatusCode::OK,
            &headers,
            &pages::SignIn::default(),
            None,
        ),
        Err(error) => failure(error),
    }
}

/// A redirect to the start page (after a form post), setting `cookies`.
fn to_start(cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/"));
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    security_headers(headers);
    response
}

/// `POST /login`: the sign-in form.
async fn login(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    let form = match Form::read(body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let username = form.username.unwrap_or_default();
    let again = |status, error: &str| {
        let view = pages::SignIn {
            error: Some(error),
            username: &username,
            ..pages::SignIn::default()
        };
        sign_in_page(&state, status, &headers, &view, None)
    };
    if !csrf::login_token_matches(&headers, form.csrf.as_deref()) {
        return again(
            StatusCode::FORBIDDEN,
            "The sign-in form had expired. Please sign in again.",
        );
    }
    let password = form
        .password
        .unwrap_or_else(|| SecretString::new(String::new()));
    match accounts::sign_in(&state, &client, &username, password)
        .await
        .map_err(UserApiError::from)
    {
        Ok((_, token)) => {
            let session = user_api::session_cookie(&token, state.config.session.cookie_ttl_secs);
            match session {
                Ok(session) => to_start(
                    [Some(session), csrf::login_cookie_header("", 0)]
                        .into_iter()
                        .flatten(),
                ),
                Err(error) => failure(error),
            }
        }
        // 200, not 401: the page is the answer the person needs, and a browser logs
        // error statuses of a page load as console errors.
        Err(UserApiError::BadCredentials) => again(StatusCode::OK, "Wrong user name or password."),
        Err(UserApiError::RateLimited(seconds)) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many sign-in attempts. Try again in {seconds} seconds."),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Err(UserApiError::BadRequest(_)) => again(
            StatusCode::BAD_REQUEST,
            "Enter a user name of at most 128 bytes and a password.",
        ),
        Err(UserApiError::Busy) => again(
            StatusCode::SERVICE_UNAVAILABLE,
            "The broker is busy. Try again in a moment.",
        ),
        Err(error) => failure(error),
    }
}

/// `POST /logout`: the sign-out form.
async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    let form = match Form::read(body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    match visitor(&state, &headers).await {
        Ok(Visitor::SignedIn(_, token)) => {
            if !csrf::session_token_matches(&token, form.csrf.as_deref()) {
                return pages::form_expired();
            }
            match user_api::sign_out(&state, &headers).await {
                Ok(cookie) => to_start([cookie]),
                Err(error) => failure(error),
            }
        }
        // Nothing to end: on to the sign-in page.
        Ok(Visitor::Ended | Visitor::Anonymous) => to_start(user_api::session_cookie("", 0).ok()),
        Err(error) => failure(error),
    }
}

/// `POST /services/{id}/connect`: a client ticket, and the services page with the
/// connection's panel (whose script opens the launch link).
async fn connect(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    let form = match Form::read(body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let (user, token) = match visitor(&state, &headers).await {
        Ok(Visitor::SignedIn(user, token)) => (user, token),
        Ok(Visitor::Ended | Visitor::Anonymous) => {
            return session_ended(&state, StatusCode::UNAUTHORIZED, &headers);
        }
        Err(error) => return failure(error),
    };
    if !csrf::session_token_matches(&token, form.csrf.as_deref()) {
        return pages::form_expired();
    }
    let Ok(id) = id.parse::<i64>() else {
        return pages::not_found();
    };
    let service_id = ServiceId(id);
    let result = async {
        let ConnectAnswer {
            url, status_url, ..
        } = user_api::issue_ticket(&state, &user, &client, &headers, service_id).await?;
        let service = state
            .store
            .service_by_id(service_id)
            .await?
            .map(|service| service.name)
            .unwrap_or_default();
        let started = pages::Started {
            service: &service,
            launch_url: &url,
            status_url: &status_url,
        };
        services_page(&state, &user, &token, Some(started)).await
    };
    result.await.unwrap_or_else(failure)
}

/// `GET /download`: how to install, register and trust the launcher (the default
/// `client.client_link`, which launchers show when they are too old).
async fn download(State(state): State<Arc<AppState>>) -> Response {
    let page = pages::download(
        state.config.client.client_link.as_deref(),
        state.config.public_url().launch_host(),
        &state.signing_key.verifying_key().fingerprint(),
    );
    respond(StatusCode::OK, page)
}

/// `GET /assets/{name}`: an embedded file, or the 404 page.
async fn asset(Path(name): Path<String>) -> Response {
    match assets::named(&name) {
        Some(asset) => asset.respond_versioned(),
        None => pages::not_found(),
    }
}
