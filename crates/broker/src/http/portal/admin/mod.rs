//! The admin pages under `/admin`, for members of `[admin] groups`: users and groups,
//! services, tunnel servers, the signing key, live connections (ended from here), and the
//! audit log.
//!
//! Same rules as every portal page: maud templates (everything escaped), the strict
//! Content-Security-Policy, a CSRF token in every form that changes something, checked
//! before anything is done. Anyone who is not an administrator gets the 404 page on every
//! admin route (a signed-in user) or the sign-in page with 401 (nobody signed in), so the
//! pages reveal nothing to others. What the pages do is [`crate::admin`]'s code, audited
//! with the administrator's name; a change that may end sessions wakes this broker's held
//! control requests at once.

use std::sync::Arc;

use axum::Router;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use zeroize::Zeroizing;

use super::headers::{respond, security_headers};
use super::layout::page;
use super::{Visitor, csrf, pages, visitor};
use crate::accounts;
use crate::admin::Actor;
use crate::http::{BodyRefusal, LimitedBody};
use crate::state::AppState;
use crate::store::{Revoked, StoreError, User};

/// Runs a form's action for an administrator (the form's CSRF token checked first), wakes
/// the held control requests (the action may have ended sessions), and answers: the
/// action's response, or the calling page module's page (its `render`) saying why the
/// action was refused (400), or the error page for a failure the administrator cannot fix.
macro_rules! action {
    ($state:ident, $headers:ident, $body:ident, |$admin:ident, $form:ident| $run:expr) => {{
        let ($admin, $form) = match admin_post(&$state, &$headers, $body).await {
            Ok(posted) => posted,
            Err(response) => return response,
        };
        let outcome: Result<Response, StoreError> = $run.await;
        $state.control.wake_all();
        match outcome {
            Ok(response) => response,
            Err(error) => match refusal(&error) {
                Some(text) => {
                    let refused = Some(Message::Failed(text));
                    render(&$state, &$admin, StatusCode::BAD_REQUEST, refused).await
                }
                None => internal(&error),
            },
        }
    }};
}

mod audit;
mod connections;
mod key;
mod services;
mod tunnels;
mod users;

/// The admin routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/users", get(users::page).post(users::add))
        .route("/admin/users/disable", post(users::disable))
        .route("/admin/users/enable", post(users::enable))
        .route("/admin/users/password", post(users::password))
        .route("/admin/users/groups", post(users::groups))
        .route("/admin/users/remove", post(users::remove))
        .route("/admin/groups", post(users::add_group))
        .route("/admin/groups/remove", post(users::remove_group))
        .route("/admin/services", get(services::page).post(services::add))
        .route(
            "/admin/services/{id}",
            get(services::edit_page).post(services::save),
        )
        .route("/admin/services/{id}/remove", post(services::remove))
        .route(
            "/admin/services/{id}/credentials",
            post(services::credentials),
        )
        .route("/admin/tunnels", get(tunnels::page).post(tunnels::add))
        .route("/admin/tunnels/rotate", post(tunnels::rotate))
        .route("/admin/tunnels/remove", post(tunnels::remove))
        .route("/admin/key", get(key::page))
        .route("/admin/connections", get(connections::page))
        .route("/admin/connections.json", get(connections::json))
        .route("/admin/connections/end", post(connections::end))
        .route("/admin/audit", get(audit::page))
}

/// A signed-in administrator.
struct Admin {
    user: User,
    /// The session token (a secret: the cookie's value), which keys the CSRF token.
    session: Zeroizing<String>,
    /// The session's CSRF token for the page's forms.
    csrf: String,
}

impl Admin {
    fn actor(&self) -> Actor {
        Actor::portal(&self.user.username)
    }
}

/// The request's administrator, or the answer for anyone else: the sign-in page (401)
/// without a session, the 404 page for a user who is not an administrator.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Admin, Response> {
    match visitor(state, headers).await {
        Ok(Visitor::SignedIn(user, token)) => match accounts::is_admin(state, &user).await {
            Ok(true) => Ok(Admin {
                user,
                csrf: csrf::session_token(&token),
                session: Zeroizing::new(token),
            }),
            Ok(false) => {
                tracing::info!(user = %user.username, "admin page refused: not an administrator");
                Err(pages::not_found())
            }
            Err(error) => Err(internal(&error)),
        },
        Ok(Visitor::Ended | Visitor::Anonymous) => Err(super::session_ended(
            state,
            StatusCode::UNAUTHORIZED,
            headers,
        )),
        Err(error) => Err(super::failure(error)),
    }
}

/// The administrator of a form post whose CSRF token is right, and the form.
async fn admin_post(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Result<(Admin, AdminForm), Response> {
    let admin = admin(state, headers).await?;
    let form = match body {
        Ok(LimitedBody(body)) => AdminForm::parse(&body),
        Err(refusal) => return Err(refusal.into_response()),
    };
    if !csrf::session_token_matches(&admin.session, form.get(csrf::FIELD)) {
        return Err(pages::form_expired());
    }
    Ok((admin, form))
}

/// An admin form's fields (`application/x-www-form-urlencoded`), values zeroized on drop
/// (some are passwords). Repeated fields (checkboxes) keep every value.
struct AdminForm(Vec<(String, Zeroizing<String>)>);

impl AdminForm {
    fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), Zeroizing::new(value.into_owned())))
                .collect(),
        )
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of `name`, trimmed; `""` when absent.
    fn text(&self, name: &str) -> &str {
        self.get(name).map_or("", str::trim)
    }

    /// Every value of `name`, trimmed and without empty ones.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(field, _)| field == name)
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .collect()
    }
}

/// What a page says above its content after an action.
enum Message {
    /// It worked.
    Done(String),
    /// It did not; nothing was changed.
    Failed(String),
}

impl Message {
    fn render(&self) -> Markup {
        match self {
            Self::Done(text) => html! { p #notice .notice role="status" { (text) } },
            Self::Failed(text) => html! { p #admin-error .error role="alert" { (text) } },
        }
    }
}

/// The words for what a revocation did.
fn revoked_words(revoked: Revoked) -> String {
    let tickets = revoked.client_tickets + revoked.tunnel_tickets;
    format!(
        "{} live connection{} ending, {} unused ticket{} cancelled",
        revoked.sessions,
        if revoked.sessions == 1 { "" } else { "s" },
        tickets,
        if tickets == 1 { "" } else { "s" }
    )
}

/// What a failed action tells the administrator; `None` for a failure they cannot fix
/// (logged, answered with the error page).
fn refusal(error: &StoreError) -> Option<String> {
    match error {
        StoreError::NotFound(what) => Some(format!("There is no such {what}.")),
        StoreError::Conflict(reason) | StoreError::Invalid(reason) => {
            let mut text = reason.clone();
            if let Some(first) = text.get(..1) {
                let upper = first.to_uppercase();
                text.replace_range(..1, &upper);
            }
            text.push('.');
            Some(text)
        }
        _ => None,
    }
}

/// The 500 page, the details logged.
fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "admin page failed");
    pages::internal_error()
}

/// A redirect to `path` after a form post (`303 See Other`).
fn see_other(path: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(path) {
        headers.insert(LOCATION, location);
    }
    security_headers(headers);
    response
}

/// A query string value, percent-encoded.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The admin sections, in the order of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Overview,
    Connections,
    Users,
    Services,
    Tunnels,
    Key,
    Audit,
}

impl Section {
    const ALL: [Self; 7] = [
        Self::Overview,
        Self::Connections,
        Self::Users,
        Self::Services,
        Self::Tunnels,
        Self::Key,
        Self::Audit,
    ];

    fn path(self) -> &'static str {
        match self {
            Self::Overview => "/admin",
            Self::Connections => "/admin/connections",
            Self::Users => "/admin/users",
            Self::Services => "/admin/services",
            Self::Tunnels => "/admin/tunnels",
            Self::Key => "/admin/key",
            Self::Audit => "/admin/audit",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Overview => "Administration",
            Self::Connections => "Live connections",
            Self::Users => "Users and groups",
            Self::Services => "Services",
            Self::Tunnels => "Tunnel servers",
            Self::Key => "Signing key",
            Self::Audit => "Audit log",
        }
    }
}

/// An admin page: the header (the administrator, the way back, sign out), the section
/// navigation, an optional message, and `body`.
fn admin_page(admin: &Admin, section: Section, message: Option<&Message>, body: Markup) -> Markup {
    let header = html! {
        div.user {
            a href="/" { "Your services" }
            span { "Administrator " strong { (admin.user.username) } }
            form.inline method="post" action="/logout" {
                input type="hidden" name=(csrf::FIELD) value=(admin.csrf);
                button type="submit" id="sign-out" class="secondary" { "Sign out" }
            }
        }
    };
    let body = html! {
        nav.admin aria-label="Administration" {
            ul {
                @for item in Section::ALL {
                    li {
                        a href=(item.path())
                            aria-current=[(item == section).then_some("page")] { (item.title()) }
                    }
                }
            }
        }
        h1 { (section.title()) }
        @if let Some(message) = message { (message.render()) }
        (body)
    };
    page(section.title(), Some(header), body)
}

/// A hidden CSRF field.
fn csrf_field(admin: &Admin) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(admin.csrf); }
}

/// `GET /admin`: what there is, with links.
async fn overview(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let admin = match admin(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let counts = async {
        let users = state.store.list_users().await?.len();
        let services = state.store.list_services().await?.len();
        let servers = state.store.list_tunnel_servers().await?.len();
        let live = state.store.live_sessions(state.now(), 10_000).await?.len();
        Ok::<_, StoreError>((users, services, servers, live))
    };
    let (users, services, servers, live) = match counts.await {
        Ok(counts) => counts,
        Err(error) => return internal(&error),
    };
    let body = html! {
        ul #overview .overview {
            li { a href="/admin/connections" { (live) " live connections" } }
            li { a href="/admin/users" { (users) " users" } }
            li { a href="/admin/services" { (services) " services" } }
            li { a href="/admin/tunnels" { (servers) " tunnel servers" } }
            li { a href="/admin/key" { "The signing key" } }
            li { a href="/admin/audit" { "The audit log" } }
        }
    };
    respond(
        StatusCode::OK,
        admin_page(&admin, Section::Overview, None, body),
    )
}
