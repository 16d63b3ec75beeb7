//! Tunnel servers: register one (its token shown once), give one a new token, remove one;
//! when each was last seen, whether its control channel is up, its live sessions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Admin, Message, Section, admin, admin_page, admin_post, csrf_field, encode, internal, refusal,
    see_other,
};
use crate::admin as actions;
use crate::clock::Millis;
use crate::http::portal::format::utc_minute;
use crate::http::portal::headers::respond;
use crate::http::{BodyRefusal, LimitedBody};
use crate::state::AppState;
use crate::store::{StoreError, TunnelServer, TunnelServerId};

/// A control request within this long counts as a channel that is up: a Portcullis tunnel
/// server sends one at least every 10 s (docs/protocol.md §7.8).
pub(super) const CONTROL_FRESH_MS: Millis = 30_000;

/// Whether `server`'s control channel was seen within [`CONTROL_FRESH_MS`] of `now`.
pub(super) fn channel_up(control_seen_at: Option<Millis>, now: Millis) -> bool {
    control_seen_at.is_some_and(|at| now.saturating_sub(at) < CONTROL_FRESH_MS)
}

/// What the page says after an action.
#[derive(Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    name: Option<String>,
}

impl Done {
    fn message(&self) -> Option<Message> {
        let name = self.name.as_deref().unwrap_or("");
        match self.done.as_deref()? {
            "removed" => Some(Message::Done(format!(
                "Removed the tunnel server {name}: its token no longer works."
            ))),
            _ => None,
        }
    }
}

fn table(
    admin: &Admin,
    servers: &[TunnelServer],
    live: &HashMap<TunnelServerId, i64>,
    now: Millis,
) -> Markup {
    html! {
        div.table-scroll {
            table #tunnel-servers .admin-table aria-label="Tunnel servers" {
                thead { tr {
                    th scope="col" { "Tunnel server" }
                    th scope="col" { "Address for launchers" }
                    th scope="col" { "Tunnel group" }
                    th scope="col" { "Last seen" }
                    th scope="col" { "Control channel" }
                    th scope="col" { "Live sessions" }
                    th scope="col" { "Token" }
                } }
                tbody {
                    @for server in servers {
                        tr data-tunnel-server=(server.name) {
                            td data-label="Tunnel server" {
                                (server.name)
                                @if server.legacy { " " span.badge { "OpenUDS 5" } }
                            }
                            td data-label="Address" { (server.public_address) }
                            td data-label="Tunnel group" { (server.group) }
                            td data-label="Last seen" {
                                @match server.last_seen_at {
                                    Some(at) => (utc_minute(at)),
                                    None => "never",
                                }
                            }
                            td data-label="Control channel" data-channel=(if channel_up(server.control_seen_at, now) { "up" } else { "down" }) {
                                @if server.legacy {
                                    "none: an OpenUDS 5 server's sessions cannot be ended from here"
                                } @else if channel_up(server.control_seen_at, now) {
                                    "up"
                                } @else {
                                    "down: ends wait until it connects"
                                }
                            }
                            td data-label="Live sessions" .number {
                                (live.get(&server.id).copied().unwrap_or(0))
                            }
                            td data-label="Token" {
                                form.inline method="post" action="/admin/tunnels/rotate" {
                                    (csrf_field(admin))
                                    input type="hidden" name="server" value=(server.name);
                                    button type="submit" .secondary
                                        aria-label={ "New token for " (server.name) } { "New token" }
                                }
                                " "
                                form.inline method="post" action="/admin/tunnels/remove" {
                                    (csrf_field(admin))
                                    input type="hidden" name="server" value=(server.name);
                                    button type="submit" .secondary .danger
                                        aria-label={ "Remove " (server.name) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if servers.is_empty() { p { "No tunnel server is registered." } }
        section aria-labelledby="add-tunnel-title" {
            h2 #add-tunnel-title { "Register a tunnel server" }
            form #add-tunnel-form .admin-form method="post" action="/admin/tunnels" {
                (csrf_field(admin))
                label for="tunnel-name" { "Name" }
                input type="text" #tunnel-name name="name" required maxlength="128";
                label for="tunnel-address" { "Address launchers connect to (host:port)" }
                input type="text" #tunnel-address name="address" required maxlength="260"
                    placeholder="tunnel.example.com:7443";
                label for="tunnel-group" { "Tunnel group" }
                input type="text" #tunnel-group name="group" required maxlength="128"
                    value="default";
                label.check for="tunnel-legacy" {
                    input type="checkbox" #tunnel-legacy name="legacy" value="yes";
                    " An OpenUDS 5 tunnel server (redeems tickets without the handshake proof)"
                }
                button type="submit" #add-tunnel { "Register" }
            }
        }
    }
}

async fn render(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    message: Option<Message>,
) -> Response {
    let now = state.now();
    let view = async {
        let servers = state.store.list_tunnel_servers().await?;
        let live: HashMap<_, _> = state
            .store
            .live_sessions_per_server(now)
            .await?
            .into_iter()
            .collect();
        Ok::<_, StoreError>((servers, live))
    };
    match view.await {
        Ok((servers, live)) => respond(
            status,
            admin_page(
                admin,
                Section::Tunnels,
                message.as_ref(),
                table(admin, &servers, &live, now),
            ),
        ),
        Err(error) => internal(&error),
    }
}

/// The page that shows a new token, once: it is stored only hashed.
fn token_page(admin: &Admin, name: &str, token: &str, new: bool) -> Response {
    let body = html! {
        @if new {
            p #notice .notice role="status" { "Registered the tunnel server " (name) "." }
        } @else {
            p #notice .notice role="status" {
                "The tunnel server " (name) " has a new token; the old one no longer works."
            }
        }
        h2 { "Its token, shown only now" }
        pre #new-token { (token) }
        p {
            "Put it in the file named by " code { "broker.token_file" } " of the tunnel \
             server's " code { "tunnel.toml" } " (mode 0600), or in " code { "PORTCULLIS_TUNNEL_TOKEN" }
            ", and restart the tunnel server. The broker keeps only its hash: if it is lost, \
             give the server a new one."
        }
        p { a href="/admin/tunnels" { "Back to the tunnel servers" } }
    };
    respond(
        StatusCode::OK,
        admin_page(admin, Section::Tunnels, None, body),
    )
}

/// `GET /admin/tunnels`.
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

/// `POST /admin/tunnels`: registers a tunnel server and shows its token.
pub(super) async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("name");
        let token = actions::add_tunnel_server(
            &state.store,
            state.now(),
            &admin.actor(),
            name,
            form.text("address"),
            form.text("group"),
            form.get("legacy").is_some(),
        )
        .await?;
        Ok(token_page(&admin, name, &token, true))
    })
}

/// `POST /admin/tunnels/rotate`: a new token, shown once.
pub(super) async fn rotate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("server");
        let token =
            actions::rotate_tunnel_token(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(token_page(&admin, name, &token, false))
    })
}

/// `POST /admin/tunnels/remove`.
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("server");
        actions::remove_tunnel_server(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(see_other(&format!(
            "/admin/tunnels?done=removed&name={}",
            encode(name)
        )))
    })
}
