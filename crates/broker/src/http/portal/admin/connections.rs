//! Live connections: every tunnel session not yet stopped, with its bytes so far as its
//! tunnel server reported them (at least every 10 s, docs/protocol.md §7.8), and an *End*
//! button. The page's script refreshes the figures every 2 s from
//! `/admin/connections.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::tunnels::channel_up;
use super::{
    Admin, Message, Section, admin, admin_page, admin_post, csrf_field, encode, internal, refusal,
    see_other,
};
use crate::admin as actions;
use crate::clock::Millis;
use crate::http::portal::format::{bytes, duration, utc_minute};
use crate::http::portal::headers::respond;
use crate::http::{BodyRefusal, LimitedBody};
use crate::state::AppState;
use crate::store::{LiveSession, StoreError};
use crate::tickets::crypto::TicketHash;

/// The most sessions the page lists.
const MAX_LISTED: u32 = 1000;

#[derive(Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    name: Option<String>,
}

impl Done {
    fn message(&self) -> Option<Message> {
        let name = self.name.as_deref().unwrap_or("a user");
        match self.done.as_deref()? {
            "ended" => Some(Message::Done(format!(
                "Ending the connection of {name}: its tunnel server closes it now."
            ))),
            _ => None,
        }
    }
}

/// A session's state on the page.
fn state_of(session: &LiveSession, now: Millis) -> &'static str {
    if session.end.is_some() {
        "ending"
    } else if session.legacy || !channel_up(session.control_seen_at, now) {
        "unreachable"
    } else {
        "live"
    }
}

fn hex(reference: &TicketHash) -> String {
    portcullis_proto::hex::encode(reference.as_bytes())
}

fn figure(value: Option<u64>) -> (String, String) {
    match value {
        Some(value) => (value.to_string(), bytes(value)),
        None => (String::new(), "—".to_owned()),
    }
}

fn row(admin: &Admin, session: &LiveSession, now: Millis) -> Markup {
    let state = state_of(session, now);
    let (sent_value, sent) = figure(session.sent);
    let (recv_value, recv) = figure(session.recv);
    let took = now.saturating_sub(session.started_at).max(0) / 1000;
    let user = session.username.as_deref().unwrap_or("(removed user)");
    html! {
        tr data-session=(hex(&session.reference)) data-state=(state) {
            td data-label="User" { (user) }
            td data-label="Service" { (session.service.as_deref().unwrap_or("(removed service)")) }
            td data-label="Tunnel server" { (session.tunnel_server.as_deref().unwrap_or("(removed)")) }
            td data-label="Started" { (utc_minute(session.started_at)) }
            td data-label="Duration" .number .duration data-value=(took) data-started=(session.started_at) {
                (duration(took))
            }
            td data-label="Sent to the user" .number .sent data-value=(sent_value) { (sent) }
            td data-label="Received from the user" .number .recv data-value=(recv_value) { (recv) }
            td data-label="End" .end {
                @if session.legacy {
                    "Cannot be ended here: an OpenUDS 5 tunnel server has no control channel."
                } @else if let Some(end) = &session.end {
                    "Ending (asked " (utc_minute(end.at))
                    @if let Some(by) = &end.by { " by " (by) }
                    ")"
                } @else {
                    form.inline method="post" action="/admin/connections/end" {
                        (csrf_field(admin))
                        input type="hidden" name="session" value=(hex(&session.reference));
                        button type="submit" .end-connection .danger
                            aria-label={ "End the connection of " (user) " to "
                                (session.service.as_deref().unwrap_or("a removed service")) } {
                            "End"
                        }
                    }
                    @if !channel_up(session.control_seen_at, now) {
                        " " span.meta { "(its tunnel server's control channel is down: the end waits for it)" }
                    }
                }
            }
        }
    }
}

fn body(admin: &Admin, sessions: &[LiveSession], now: Millis) -> Markup {
    html! {
        p.meta {
            "Tunnel sessions running now. Bytes are what the tunnel server reported (every few \
             seconds); this page refreshes them. Direct connections do not pass through \
             Portcullis and are not listed (the audit log has their exchanges)."
        }
        div.table-scroll {
            table #live .admin-table aria-label="Live connections"
                data-refresh-url="/admin/connections.json" {
                thead { tr {
                    th scope="col" { "User" }
                    th scope="col" { "Service" }
                    th scope="col" { "Tunnel server" }
                    th scope="col" { "Started" }
                    th scope="col" { "Duration" }
                    th scope="col" { "Sent to the user" }
                    th scope="col" { "Received from the user" }
                    th scope="col" { "End" }
                } }
                tbody {
                    @for session in sessions { (row(admin, session, now)) }
                }
            }
        }
        p #live-empty hidden[!sessions.is_empty()] { "No live connection." }
    }
}

async fn render(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    message: Option<Message>,
) -> Response {
    let now = state.now();
    match state.store.live_sessions(now, MAX_LISTED).await {
        Ok(sessions) => respond(
            status,
            admin_page(
                admin,
                Section::Connections,
                message.as_ref(),
                body(admin, &sessions, now),
            ),
        ),
        Err(error) => internal(&error),
    }
}

/// `GET /admin/connections`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    done: Result<Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query that does not parse is no message.
    let done = done.map(|Query(done)| done).unwrap_or_default();
    match admin(&state, &headers).await {
        Ok(admin) => render(&state, &admin, StatusCode::OK, done.message()).await,
        Err(response) => response,
    }
}

/// One session in `/admin/connections.json`.
#[derive(Serialize)]
struct LiveView {
    session: String,
    state: &'static str,
    started_at: i64,
    sent: Option<u64>,
    recv: Option<u64>,
    reported_at: Option<i64>,
}

/// `GET /admin/connections.json`: the live sessions' figures, for the page's script.
pub(super) async fn json(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(response) = admin(&state, &headers).await {
        return response;
    }
    let now = state.now();
    match state.store.live_sessions(now, MAX_LISTED).await {
        Ok(sessions) => {
            let views: Vec<LiveView> = sessions
                .iter()
                .map(|session| LiveView {
                    session: hex(&session.reference),
                    state: state_of(session, now),
                    started_at: session.started_at,
                    sent: session.sent,
                    recv: session.recv,
                    reported_at: session.reported_at,
                })
                .collect();
            let mut response = Json(views).into_response();
            crate::http::portal::headers::security_headers(response.headers_mut());
            response
        }
        Err(error) => internal(&error),
    }
}

/// `POST /admin/connections/end`: asks the session's tunnel server to end it now.
pub(super) async fn end(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let reference = portcullis_proto::api::SessionRef::from_hex(form.text("session"))
            .map_err(|_| StoreError::NotFound("connection"))?;
        let reference = TicketHash::from_bytes(*reference.as_bytes());
        let ending = actions::end_connection(&state.store, state.now(), &admin.actor(), &reference)
            .await?
            .ok_or_else(|| {
                StoreError::Invalid("that connection has ended already, or is ending".to_owned())
            })?;
        // This broker's held control request of that server answers now.
        state.control.wake(ending.tunnel_server_id);
        let user = state
            .store
            .user_by_id(ending.user_id)
            .await?
            .map(|user| user.username);
        Ok(see_other(&format!(
            "/admin/connections?done=ended&name={}",
            encode(user.as_deref().unwrap_or("a user"))
        )))
    })
}
