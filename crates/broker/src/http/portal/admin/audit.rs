//! The audit log, newest first, 50 events a page, filtered by user, service, event,
//! administrator and time.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Section, admin, admin_page, encode, internal};
use crate::clock::{parse_time, rfc3339};
use crate::http::portal::headers::respond;
use crate::state::AppState;
use crate::store::{AUDIT_KINDS, AuditFilter, StoredAuditEvent};

/// Events a page.
const PAGE: u32 = 50;

/// The page's query: the filters and where the page starts.
#[derive(Deserialize, Default, Clone)]
pub(super) struct AuditQuery {
    user: Option<String>,
    service: Option<String>,
    event: Option<String>,
    actor: Option<String>,
    /// A date (`2026-12-01`, UTC), an RFC 3339 time or Unix milliseconds.
    from: Option<String>,
    /// The same; events before it (a date: up to the end of that day).
    to: Option<String>,
    /// Events with an id below this one (the next page).
    before: Option<i64>,
}

fn given(value: Option<&String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, String> {
        let time = |value: Option<&String>, end_of_day: bool| -> Result<Option<i64>, String> {
            let Some(text) = given(value) else {
                return Ok(None);
            };
            let at = parse_time(&text).ok_or_else(|| {
                format!("{text:?} is not a date (2026-12-01) or a time (2026-12-01T10:00:00Z)")
            })?;
            // A bare date in "to" includes that whole day.
            let day = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
            Ok(Some(if end_of_day && day {
                at + 86_400_000
            } else {
                at
            }))
        };
        Ok(AuditFilter {
            username: given(self.user.as_ref()),
            service: given(self.service.as_ref()),
            kind: given(self.event.as_ref()),
            actor: given(self.actor.as_ref()),
            from: time(self.from.as_ref(), false)?,
            to: time(self.to.as_ref(), true)?,
        })
    }

    /// This query's filters with `before`, as a query string.
    fn link(&self, before: Option<i64>) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("user", &self.user),
            ("service", &self.service),
            ("event", &self.event),
            ("actor", &self.actor),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(value) = given(value.as_ref()) {
                parts.push(format!("{name}={}", encode(&value)));
            }
        }
        if let Some(before) = before {
            parts.push(format!("before={before}"));
        }
        format!("/admin/audit?{}", parts.join("&"))
    }
}

fn filters(query: &AuditQuery) -> Markup {
    let value = |field: &Option<String>| given(field.as_ref()).unwrap_or_default();
    let event = value(&query.event);
    html! {
        form #audit-filter .admin-form .filters method="get" action="/admin/audit" role="search" {
            div {
                label for="filter-user" { "User" }
                input type="text" #filter-user name="user" value=(value(&query.user));
            }
            div {
                label for="filter-service" { "Service" }
                input type="text" #filter-service name="service" value=(value(&query.service));
            }
            div {
                label for="filter-event" { "Event" }
                select #filter-event name="event" {
                    option value="" selected[event.is_empty()] { "any" }
                    @for kind in AUDIT_KINDS {
                        option value=(kind) selected[event == *kind] { (kind) }
                    }
                }
            }
            div {
                label for="filter-actor" { "Administrator" }
                input type="text" #filter-actor name="actor" value=(value(&query.actor));
            }
            div {
                label for="filter-from" { "From (UTC)" }
                input type="text" #filter-from name="from" placeholder="2026-12-01"
                    value=(value(&query.from));
            }
            div {
                label for="filter-to" { "Up to (UTC)" }
                input type="text" #filter-to name="to" placeholder="2026-12-01T18:00:00Z"
                    value=(value(&query.to));
            }
            div {
                button type="submit" #filter { "Show" }
                " "
                a href="/admin/audit" { "Clear" }
            }
        }
    }
}

fn table(events: &[StoredAuditEvent]) -> Markup {
    html! {
        div.table-scroll {
            table #audit .admin-table aria-label="Audit events, newest first" {
                thead { tr {
                    th scope="col" { "Time (UTC)" }
                    th scope="col" { "Event" }
                    th scope="col" { "User" }
                    th scope="col" { "Service" }
                    th scope="col" { "Administrator" }
                    th scope="col" { "Address" }
                    th scope="col" { "Details" }
                } }
                tbody {
                    @for stored in events {
                        @let event = &stored.event;
                        tr data-id=(stored.id) data-kind=(event.kind) {
                            td data-label="Time" { time datetime=(rfc3339(event.at)) { (rfc3339(event.at)) } }
                            td data-label="Event" { (event.kind) }
                            td data-label="User" { (event.username.as_deref().unwrap_or("")) }
                            td data-label="Service" { (event.service.as_deref().unwrap_or("")) }
                            td data-label="Administrator" { (event.actor.as_deref().unwrap_or("")) }
                            td data-label="Address" { (event.source_ip.as_deref().unwrap_or("")) }
                            td data-label="Details" { code.detail { (event.detail) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /admin/audit`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let admin = match admin(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    // A query that does not parse (a `before` that is no number) shows the newest events.
    let query = query.map(|Query(query)| query).unwrap_or_default();
    let (filter, problem) = match query.filter() {
        Ok(filter) => (filter, None),
        Err(problem) => (AuditFilter::default(), Some(problem)),
    };
    let events = match state.store.audit_page(&filter, query.before, PAGE).await {
        Ok(events) => events,
        Err(error) => return internal(&error),
    };
    let older = (events.len() == PAGE as usize)
        .then(|| events.last().map(|event| event.id))
        .flatten();
    let message = problem.map(super::Message::Failed);
    let body = html! {
        (filters(&query))
        (table(&events))
        @if events.is_empty() { p #audit-empty { "No event matches." } }
        nav.pages aria-label="Pages of the audit log" {
            @if query.before.is_some() {
                a #newest href=(query.link(None)) { "Newest events" }
                " "
            }
            @if let Some(last) = older {
                a #older href=(query.link(Some(last))) { "Older events" }
            }
        }
    };
    let status = if message.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    respond(
        status,
        admin_page(&admin, Section::Audit, message.as_ref(), body),
    )
}
