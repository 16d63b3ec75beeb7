//! Services: add one, change one (its name, target, protocol, transport, tunnel group,
//! readiness check, longest session and the groups granted it), remove one. Taking a grant
//! away, or the service, ends its users' live connections to it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Admin, AdminForm, Message, Section, admin, admin_page, admin_post, csrf_field, encode,
    internal, refusal, revoked_words, see_other,
};
use crate::admin as actions;
use crate::credentials::{seal_stored, ssh_ca::render_principal};
use crate::http::portal::format::duration;
use crate::http::portal::headers::respond;
use crate::http::{BodyRefusal, LimitedBody};
use crate::model::CredentialMode;
use crate::model::{Protocol, Readiness, Transport};
use crate::state::AppState;
use crate::store::{
    Group, NewService, Revoked, Service, ServiceCredentials, ServiceId, StoreError,
};

/// What the page says after an action (`?done=…&name=…`), from a fixed set.
#[derive(Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    name: Option<String>,
    sessions: Option<u64>,
}

impl Done {
    fn message(&self) -> Option<Message> {
        let name = self.name.as_deref().unwrap_or("");
        let revoked = Revoked {
            sessions: self.sessions.unwrap_or(0),
            ..Revoked::default()
        };
        let text = match self.done.as_deref()? {
            "added" => format!("Added the service {name}."),
            "saved" => format!("Saved the service {name}: {}.", revoked_words(revoked)),
            "removed" => format!("Removed the service {name}: {}.", revoked_words(revoked)),
            "credentials" => format!("Saved how {name} signs its users in."),
            _ => return None,
        };
        Some(Message::Done(text))
    }
}

fn done(code: &str, name: &str, revoked: Revoked) -> Response {
    see_other(&format!(
        "/admin/services?done={code}&name={}&sessions={}",
        encode(name),
        revoked.sessions
    ))
}

/// The default longest session of a new service, in minutes (8 hours).
const DEFAULT_MAX_MINUTES: u32 = 8 * 60;

/// The service form, filled with `service` (a new one when `None`).
fn service_form(admin: &Admin, groups: &[Group], service: Option<&Service>) -> Markup {
    let (action, id, button) = match service {
        Some(service) => (
            format!("/admin/services/{}", service.id),
            format!("s{}", service.id),
            "Save service",
        ),
        None => (
            "/admin/services".to_owned(),
            "new".to_owned(),
            "Add service",
        ),
    };
    let field = |name: &str| format!("{id}-{name}");
    let protocol = service.map_or(Protocol::Rdp, |service| service.protocol);
    let transport = service.map_or(Transport::Direct, |service| service.transport);
    let readiness = service.map_or(Readiness::Tcp, |service| service.readiness);
    let minutes = service.map_or(DEFAULT_MAX_MINUTES, |service| {
        service.max_session_secs.div_ceil(60)
    });
    let granted: &[String] = service.map_or(&[], |service| &service.allowed_groups);
    html! {
        form .admin-form #(format!("{id}-service-form")) method="post" action=(action) {
            (csrf_field(admin))
            label for=(field("name")) { "Name (what users see)" }
            input type="text" id=(field("name")) name="name" required maxlength="128"
                value=[service.map(|service| service.name.as_str())];
            label for=(field("host")) { "Target host (as the broker and the tunnel servers reach it)" }
            input type="text" id=(field("host")) name="host" required maxlength="253"
                value=[service.map(|service| service.host.as_str())];
            label for=(field("port")) { "Target port" }
            input type="number" id=(field("port")) name="port" required min="1" max="65535"
                value=[service.map(|service| service.port)];
            label for=(field("protocol")) { "Protocol" }
            select id=(field("protocol")) name="protocol" {
                @for option in Protocol::ALL {
                    option value=(option.as_str()) selected[option == protocol] {
                        (option.as_str().to_uppercase())
                    }
                }
            }
            label for=(field("transport")) { "Transport" }
            p.hint id=(field("transport-hint")) {
                "direct: the launcher connects to the target; tunneled: through a tunnel \
                 server of the tunnel group."
            }
            select id=(field("transport")) name="transport"
                aria-describedby=(field("transport-hint")) {
                @for option in Transport::ALL {
                    option value=(option.as_str()) selected[option == transport] {
                        (option.as_str())
                    }
                }
            }
            label for=(field("tunnel-group")) { "Tunnel group (tunneled services)" }
            input type="text" id=(field("tunnel-group")) name="tunnel_group" maxlength="128"
                value=[service.and_then(|service| service.tunnel_group.as_deref())];
            label for=(field("readiness")) { "Readiness check" }
            p.hint id=(field("readiness-hint")) {
                "tcp: the broker waits until the target accepts a connection; off: no check \
                 (when the broker cannot reach the target)."
            }
            select id=(field("readiness")) name="readiness"
                aria-describedby=(field("readiness-hint")) {
                option value="tcp" selected[readiness == Readiness::Tcp] { "tcp" }
                option value="off" selected[readiness == Readiness::Off] { "off" }
            }
            label for=(field("max")) { "Longest session (minutes)" }
            input type="number" id=(field("max")) name="max_session_minutes" required min="1"
                max="71582788" value=(minutes);
            fieldset {
                legend { "Groups that may use it" }
                @for group in groups {
                    @let box_id = format!("{id}-group-{}", group.id);
                    label.check for=(box_id) {
                        input type="checkbox" id=(box_id) name="group" value=(group.name)
                            checked[granted.contains(&group.name)];
                        " " (group.name)
                    }
                }
            }
            button type="submit" #(format!("{id}-save")) { (button) }
        }
    }
}

/// How the service signs its users in (docs/broker.md, "Credentials"): the mode and its
/// fields. A stored password is never shown; an empty password field keeps it.
fn credentials_form(admin: &Admin, service: &Service, credentials: &ServiceCredentials) -> Markup {
    let field = |name: &str| format!("credentials-{name}");
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let modes: Vec<CredentialMode> = CredentialMode::ALL
        .into_iter()
        .filter(|mode| mode.suits(service.protocol))
        .collect();
    html! {
        h2 #credentials-title { "How " (service.name) " signs its users in" }
        form #credentials-form .admin-form method="post"
            action={ "/admin/services/" (service.id) "/credentials" } {
            (csrf_field(admin))
            label for=(field("mode")) { "Mode" }
            ul.hint id=(field("mode-hint")) {
                @for mode in &modes {
                    li {
                        (mode.as_str()) ": "
                        (match mode {
                            CredentialMode::None => "the client program asks the user",
                            CredentialMode::PassThrough => "the portal user's own name and password",
                            CredentialMode::Stored => "a service account",
                            CredentialMode::SshCertificate => "a short-lived certificate from the broker's SSH CA",
                        })
                    }
                }
            }
            select id=(field("mode")) name="mode" aria-describedby=(field("mode-hint")) {
                @for mode in &modes {
                    option value=(mode.as_str()) selected[*mode == credentials.mode] {
                        (mode.as_str())
                    }
                }
            }
            @if matches!(service.protocol, crate::model::Protocol::Rdp | crate::model::Protocol::Vnc) {
                label for=(field("username")) { "Account (stored)" }
                input type="text" id=(field("username")) name="username" maxlength="256"
                    value=(text(&credentials.username)) autocomplete="off";
                label for=(field("password")) {
                    "Account password (stored; empty keeps the one stored)"
                }
                input type="password" id=(field("password")) name="password"
                    autocomplete="new-password";
                label for=(field("domain")) { "Domain (pass-through, stored)" }
                input type="text" id=(field("domain")) name="domain" maxlength="256"
                    value=(text(&credentials.domain));
            }
            @if service.protocol == crate::model::Protocol::Ssh {
                label for=(field("principal")) { "Principal ({username} is the portal user's name)" }
                input type="text" id=(field("principal")) name="ssh_principal" maxlength="256"
                    value=(credentials.ssh_principal.clone().unwrap_or_else(|| "{username}".to_owned()));
                label for=(field("source")) {
                    "Source addresses (client, none, or addresses and networks)"
                }
                input type="text" id=(field("source")) name="ssh_source_address" maxlength="256"
                    value=(text(&credentials.ssh_source_address));
            }
            button type="submit" #save-credentials { "Save sign-in" }
        }
    }
}

/// `POST /admin/services/{id}/credentials`.
pub(super) async fn credentials(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let id = ServiceId(
            id.parse::<i64>()
                .map_err(|_| StoreError::NotFound("service"))?,
        );
        let service = state
            .store
            .service_by_id(id)
            .await?
            .ok_or(StoreError::NotFound("service"))?;
        let current = state
            .store
            .service_credentials(id)
            .await?
            .unwrap_or_default();
        let mode: CredentialMode = form
            .text("mode")
            .parse()
            .map_err(|_| StoreError::Invalid("choose a mode".to_owned()))?;
        let given = |name: &str| Some(form.text(name).to_owned()).filter(|text| !text.is_empty());
        let credentials = match mode {
            CredentialMode::None => ServiceCredentials::default(),
            CredentialMode::PassThrough => ServiceCredentials {
                domain: given("domain"),
                ..ServiceCredentials::mode(mode)
            },
            CredentialMode::Stored => {
                let username = given("username").ok_or_else(|| {
                    StoreError::Invalid("the stored mode needs an account".to_owned())
                })?;
                let password = form.get("password").unwrap_or_default();
                let secret = if password.is_empty() {
                    current
                        .secret
                        .clone()
                        .filter(|_| current.mode == CredentialMode::Stored)
                        .ok_or_else(|| {
                            StoreError::Invalid(
                                "the stored mode needs the account's password".to_owned(),
                            )
                        })?
                } else {
                    seal_stored(&state.credentials.key, id, password)
                        .map_err(|error| StoreError::Invalid(error.to_string()))?
                };
                ServiceCredentials {
                    username: Some(username),
                    domain: given("domain"),
                    secret: Some(secret),
                    ..ServiceCredentials::mode(mode)
                }
            }
            CredentialMode::SshCertificate => {
                let template = given("ssh_principal").unwrap_or_else(|| "{username}".to_owned());
                if render_principal(&template, "user").is_none() {
                    return Err(StoreError::Invalid(
                        "the principal must give a name without spaces or commas".to_owned(),
                    ));
                }
                ServiceCredentials {
                    ssh_principal: Some(template),
                    ssh_source_address: given("ssh_source_address"),
                    ..ServiceCredentials::mode(mode)
                }
            }
        };
        actions::set_service_credentials(
            &state.store,
            state.now(),
            &admin.actor(),
            &service.name,
            &credentials,
        )
        .await?;
        Ok(done("credentials", &service.name, Revoked::default()))
    })
}

/// A service from the form's fields.
fn new_service(form: &AdminForm) -> Result<NewService, StoreError> {
    let invalid = |text: &str| StoreError::Invalid(text.to_owned());
    let port = form
        .text("port")
        .parse::<u16>()
        .map_err(|_| invalid("the port must be a number from 1 to 65535"))?;
    let protocol: Protocol = form
        .text("protocol")
        .parse()
        .map_err(|_| invalid("choose a protocol"))?;
    let transport: Transport = form
        .text("transport")
        .parse()
        .map_err(|_| invalid("choose a transport"))?;
    let readiness: Readiness = form
        .text("readiness")
        .parse()
        .map_err(|_| invalid("choose a readiness check"))?;
    let minutes = form
        .text("max_session_minutes")
        .parse::<u32>()
        .ok()
        .filter(|minutes| *minutes > 0 && *minutes <= u32::MAX / 60)
        .ok_or_else(|| invalid("the longest session must be a number of minutes above 0"))?;
    let tunnel_group = Some(form.text("tunnel_group").to_owned()).filter(|group| !group.is_empty());
    let tunnel_group = match transport {
        Transport::Tunneled if tunnel_group.is_none() => {
            return Err(invalid("a tunneled service needs a tunnel group"));
        }
        Transport::Tunneled => tunnel_group,
        Transport::Direct => None,
    };
    Ok(NewService {
        name: form.text("name").to_owned(),
        host: form.text("host").to_owned(),
        port,
        protocol,
        transport,
        tunnel_group,
        max_session_secs: minutes * 60,
        readiness,
        allowed_groups: form.all("group"),
    })
}

fn list(admin: &Admin, services: &[(Service, CredentialMode)], groups: &[Group]) -> Markup {
    html! {
        div.table-scroll {
            table #services .admin-table aria-label="Services" {
                thead { tr {
                    th scope="col" { "Service" }
                    th scope="col" { "Target" }
                    th scope="col" { "Protocol" }
                    th scope="col" { "Transport" }
                    th scope="col" { "Readiness" }
                    th scope="col" { "Longest session" }
                    th scope="col" { "Groups" }
                    th scope="col" { "Sign-in" }
                    th scope="col" { "Change" }
                } }
                tbody {
                    @for (service, mode) in services {
                        tr data-service=(service.name) {
                            td data-label="Service" { (service.name) }
                            td data-label="Target" { (service.host) ":" (service.port) }
                            td data-label="Protocol" { (service.protocol.as_str().to_uppercase()) }
                            td data-label="Transport" {
                                (service.transport.as_str())
                                @if let Some(group) = &service.tunnel_group { " (" (group) ")" }
                            }
                            td data-label="Readiness" { (service.readiness.as_str()) }
                            td data-label="Longest session" {
                                (duration(i64::from(service.max_session_secs)))
                            }
                            td data-label="Groups" { (service.allowed_groups.join(", ")) }
                            td data-label="Sign-in" { (mode.as_str()) }
                            td data-label="Change" {
                                a href={ "/admin/services/" (service.id) }
                                    aria-label={ "Change " (service.name) } { "Change" }
                            }
                        }
                    }
                }
            }
        }
        @if services.is_empty() { p { "No services yet." } }
        section aria-labelledby="add-service-title" {
            h2 #add-service-title { "Add a service" }
            (service_form(admin, groups, None))
        }
    }
}

async fn render(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    message: Option<Message>,
) -> Response {
    let view = async {
        let mut services = Vec::new();
        for service in state.store.list_services().await? {
            let mode = state
                .store
                .service_credentials(service.id)
                .await?
                .map(|credentials| credentials.mode)
                .unwrap_or_default();
            services.push((service, mode));
        }
        Ok::<_, StoreError>((services, state.store.list_groups().await?))
    };
    match view.await {
        Ok((services, groups)) => respond(
            status,
            admin_page(
                admin,
                Section::Services,
                message.as_ref(),
                list(admin, &services, &groups),
            ),
        ),
        Err(error) => internal(&error),
    }
}

/// The list again with the failure of an action (nothing was changed), or the error page.
/// `GET /admin/services`.
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

/// `GET /admin/services/{id}`: the service's form and its removal.
pub(super) async fn edit_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let admin = match admin(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let Ok(id) = id.parse::<i64>() else {
        return crate::http::portal::pages::not_found();
    };
    let found = async {
        Ok::<_, StoreError>((
            state.store.service_by_id(ServiceId(id)).await?,
            state.store.list_groups().await?,
        ))
    };
    let (service, groups) = match found.await {
        Ok((Some(service), groups)) => (service, groups),
        Ok((None, _)) => return crate::http::portal::pages::not_found(),
        Err(error) => return internal(&error),
    };
    let credentials = match state.store.service_credentials(service.id).await {
        Ok(credentials) => credentials.unwrap_or_default(),
        Err(error) => return internal(&error),
    };
    let body = html! {
        h2 { "Change " (service.name) }
        p.meta {
            "Live connections keep their target; users who lose the service lose their \
             live connections to it at once."
        }
        (service_form(&admin, &groups, Some(&service)))
        (credentials_form(&admin, &service, &credentials))
        h2 { "Remove " (service.name) }
        form.admin-form method="post" action={ "/admin/services/" (service.id) "/remove" } {
            (csrf_field(&admin))
            p { "Its users lose it, and their live connections to it end." }
            button type="submit" #remove-service .secondary .danger { "Remove service" }
        }
        p { a href="/admin/services" { "Back to the services" } }
    };
    respond(
        StatusCode::OK,
        admin_page(&admin, Section::Services, None, body),
    )
}

/// `POST /admin/services`.
pub(super) async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let service = new_service(&form)?;
        let name = service.name.clone();
        actions::add_service(&state.store, state.now(), &admin.actor(), service).await?;
        Ok(done("added", &name, Revoked::default()))
    })
}

/// `POST /admin/services/{id}`.
pub(super) async fn save(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let id = id
            .parse::<i64>()
            .map_err(|_| StoreError::NotFound("service"))?;
        let service = new_service(&form)?;
        let name = service.name.clone();
        let revoked = actions::update_service(
            &state.store,
            state.now(),
            &admin.actor(),
            ServiceId(id),
            service,
        )
        .await?;
        Ok(done("saved", &name, revoked))
    })
}

/// `POST /admin/services/{id}/remove`.
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let _ = &form;
        let id = id
            .parse::<i64>()
            .map_err(|_| StoreError::NotFound("service"))?;
        let service = state
            .store
            .service_by_id(ServiceId(id))
            .await?
            .ok_or(StoreError::NotFound("service"))?;
        let revoked =
            actions::remove_service(&state.store, state.now(), &admin.actor(), &service.name)
                .await?;
        Ok(done("removed", &service.name, revoked))
    })
}
