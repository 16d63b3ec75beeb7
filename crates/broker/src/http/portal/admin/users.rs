//! Users and groups: add a user, disable or enable, set a password, set the groups,
//! remove; add and remove groups. Disabling, removing and taking groups away end what the
//! user may no longer use at once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Admin, Message, Section, admin, admin_page, admin_post, csrf_field, encode, internal, refusal,
    revoked_words, see_other,
};
use crate::admin as actions;
use crate::http::portal::format::utc_minute;
use crate::http::portal::headers::respond;
use crate::http::{BodyRefusal, LimitedBody};
use crate::password::hash_password;
use crate::state::AppState;
use crate::store::{Group, Revoked, StoreError, User};

/// What the page says after an action (`?done=…&name=…`), from a fixed set.
#[derive(Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    name: Option<String>,
    sessions: Option<u64>,
    tickets: Option<u64>,
}

impl Done {
    fn message(&self) -> Option<Message> {
        let name = self.name.as_deref().unwrap_or("");
        let revoked = Revoked {
            client_tickets: self.tickets.unwrap_or(0),
            tunnel_tickets: 0,
            sessions: self.sessions.unwrap_or(0),
        };
        let text = match self.done.as_deref()? {
            "added" => format!("Added the user {name}."),
            "disabled" => format!(
                "Disabled {name}: signed out everywhere, {}.",
                revoked_words(revoked)
            ),
            "enabled" => format!("Enabled {name}."),
            "password" => format!("Set the password of {name}; they were signed out."),
            "groups" => format!("Set the groups of {name}: {}.", revoked_words(revoked)),
            "removed" => format!("Removed {name}: {}.", revoked_words(revoked)),
            "group-added" => format!("Added the group {name}."),
            "group-removed" => format!("Removed the group {name}: {}.", revoked_words(revoked)),
            _ => return None,
        };
        Some(Message::Done(text))
    }
}

/// Where to go after an action on `name` that revoked `revoked`.
fn done(code: &str, name: &str, revoked: Revoked) -> Response {
    see_other(&format!(
        "/admin/users?done={code}&name={}&sessions={}&tickets={}",
        encode(name),
        revoked.sessions,
        revoked.client_tickets + revoked.tunnel_tickets
    ))
}

/// One user and their groups.
struct Row {
    user: User,
    groups: Vec<String>,
}

/// What the page shows.
struct View {
    rows: Vec<Row>,
    groups: Vec<Group>,
    members: HashMap<String, Vec<String>>,
}

async fn view(state: &AppState) -> Result<View, StoreError> {
    let mut rows = Vec::new();
    for user in state.store.list_users().await? {
        let groups = state.store.groups_of_user(user.id).await?;
        rows.push(Row { user, groups });
    }
    let groups = state.store.list_groups().await?;
    let mut members = HashMap::new();
    for group in &groups {
        members.insert(
            group.name.clone(),
            state.store.members_of_group(&group.name).await?,
        );
    }
    Ok(View {
        rows,
        groups,
        members,
    })
}

/// The page with `message`, answered with `status`.
async fn render(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    message: Option<Message>,
) -> Response {
    match view(state).await {
        Ok(view) => respond(
            status,
            admin_page(
                admin,
                Section::Users,
                message.as_ref(),
                body(admin, &view, &state.config.admin.groups),
            ),
        ),
        Err(error) => internal(&error),
    }
}

/// Group checkboxes named `group`, those in `checked` ticked.
fn group_boxes(groups: &[Group], checked: &[String], id_prefix: &str) -> Markup {
    html! {
        @for group in groups {
            @let id = format!("{id_prefix}-{}", group.id);
            label.check for=(id) {
                input type="checkbox" id=(id) name="group" value=(group.name)
                    checked[checked.contains(&group.name)];
                " " (group.name)
            }
        }
    }
}

fn body(admin: &Admin, view: &View, admin_groups: &[String]) -> Markup {
    html! {
        section aria-labelledby="add-user-title" {
            h2 #add-user-title { "Add a user" }
            form #add-user-form .admin-form method="post" action="/admin/users" {
                (csrf_field(admin))
                label for="new-username" { "User name" }
                input type="text" #new-username name="username" required maxlength="128"
                    autocomplete="off";
                label for="new-password" { "Password" }
                input type="password" #new-password name="password" required
                    autocomplete="new-password";
                fieldset {
                    legend { "Groups" }
                    (group_boxes(&view.groups, &[], "new-group"))
                }
                button type="submit" #add-user { "Add user" }
            }
        }
        h2 #users-title { "Users" }
        div.table-scroll {
            table #users .admin-table aria-labelledby="users-title" {
                thead { tr {
                    th scope="col" { "User" }
                    th scope="col" { "Signs in with" }
                    th scope="col" { "Groups" }
                    th scope="col" { "State" }
                    th scope="col" { "Added" }
                    th scope="col" { "Manage" }
                } }
                tbody {
                    @for row in &view.rows {
                        (user_row(admin, view, row, admin_groups))
                    }
                }
            }
        }
        h2 #groups-title { "Groups" }
        p.meta {
            "Services are granted to groups. Members of "
            @if admin_groups.is_empty() { "no group (set " code { "[admin] groups" } ")" }
            @else { (admin_groups.join(", ")) }
            " are administrators."
        }
        div.table-scroll {
            table #groups .admin-table aria-labelledby="groups-title" {
                thead { tr {
                    th scope="col" { "Group" }
                    th scope="col" { "Members" }
                    th scope="col" { "Remove" }
                } }
                tbody {
                    @for group in &view.groups {
                        tr data-group=(group.name) {
                            td data-label="Group" { (group.name) }
                            td data-label="Members" {
                                (view.members.get(&group.name).map(|m| m.join(", ")).unwrap_or_default())
                            }
                            td data-label="Remove" {
                                form.inline method="post" action="/admin/groups/remove" {
                                    (csrf_field(admin))
                                    input type="hidden" name="group" value=(group.name);
                                    button type="submit" .secondary
                                        aria-label={ "Remove the group " (group.name) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        form #add-group-form .admin-form method="post" action="/admin/groups" {
            (csrf_field(admin))
            label for="new-group" { "New group" }
            input type="text" #new-group name="group" required maxlength="128";
            button type="submit" #add-group { "Add group" }
        }
    }
}

fn user_row(admin: &Admin, view: &View, row: &Row, admin_groups: &[String]) -> Markup {
    let user = &row.user;
    let name = &user.username;
    let source = match &user.oidc {
        Some(link) => format!("OpenID Connect: {}", link.provider),
        None => "password".to_owned(),
    };
    let is_admin = row.groups.iter().any(|group| admin_groups.contains(group));
    html! {
        tr data-user=(name) data-disabled=(user.disabled_at.is_some()) {
            td data-label="User" {
                (name)
                @if is_admin { " " span.badge { "administrator" } }
            }
            td data-label="Signs in with" { (source) }
            td data-label="Groups" { (row.groups.join(", ")) }
            td data-label="State" {
                @if user.disabled_at.is_some() { strong { "disabled" } } @else { "active" }
            }
            td data-label="Added" { (utc_minute(user.created_at)) }
            td data-label="Manage" {
                details.manage {
                    summary { "Manage " span.visually-hidden { (name) } }
                    form.admin-form method="post" action="/admin/users/groups" {
                        (csrf_field(admin))
                        input type="hidden" name="user" value=(name);
                        fieldset {
                            legend { "Groups of " (name) }
                            (group_boxes(&view.groups, &row.groups, &format!("u{}-group", user.id)))
                        }
                        button type="submit" { "Save groups" }
                    }
                    @if user.oidc.is_none() {
                        form.admin-form method="post" action="/admin/users/password" {
                            (csrf_field(admin))
                            input type="hidden" name="user" value=(name);
                            label for={ "u" (user.id) "-password" } { "New password for " (name) }
                            input type="password" id={ "u" (user.id) "-password" } name="password"
                                required autocomplete="new-password";
                            button type="submit" { "Set password" }
                        }
                    }
                    @let (action, label) = if user.disabled_at.is_some() {
                        ("/admin/users/enable", "Enable")
                    } else {
                        ("/admin/users/disable", "Disable")
                    };
                    form.inline method="post" action=(action) {
                        (csrf_field(admin))
                        input type="hidden" name="user" value=(name);
                        button type="submit" .secondary data-action=(label.to_lowercase())
                            aria-label={ (label) " " (name) } { (label) }
                    }
                    " "
                    form.inline method="post" action="/admin/users/remove" {
                        (csrf_field(admin))
                        input type="hidden" name="user" value=(name);
                        button type="submit" .secondary .danger
                            aria-label={ "Remove " (name) } { "Remove" }
                    }
                }
            }
        }
    }
}

/// `GET /admin/users`.
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

/// The page again with the failure of an action (nothing was changed), or the error page.
/// `POST /admin/users`: a new password user.
pub(super) async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("username").to_owned();
        let password = form.get("password").unwrap_or_default();
        if password.is_empty() {
            return Err(StoreError::Invalid(
                "a new user needs a password".to_owned(),
            ));
        }
        let password = zeroize::Zeroizing::new(password.to_owned());
        // Argon2id takes a CPU for a moment: off the async workers.
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|error| StoreError::Invalid(format!("hashing failed: {error}")))?
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        actions::add_user(
            &state.store,
            state.now(),
            &admin.actor(),
            &name,
            &hash,
            &form.all("group"),
        )
        .await?;
        Ok(done("added", &name, Revoked::default()))
    })
}

/// `POST /admin/users/disable`.
pub(super) async fn disable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("user");
        if name == admin.user.username {
            return Err(StoreError::Invalid(
                "you cannot disable yourself; another administrator can".to_owned(),
            ));
        }
        let revoked =
            actions::disable_user(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(done("disabled", name, revoked))
    })
}

/// `POST /admin/users/enable`.
pub(super) async fn enable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("user");
        actions::enable_user(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(done("enabled", name, Revoked::default()))
    })
}

/// `POST /admin/users/password`.
pub(super) async fn password(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("user").to_owned();
        let password = form.get("password").unwrap_or_default();
        if password.is_empty() {
            return Err(StoreError::Invalid("the new password is empty".to_owned()));
        }
        let password = zeroize::Zeroizing::new(password.to_owned());
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|error| StoreError::Invalid(format!("hashing failed: {error}")))?
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        actions::set_password(&state.store, state.now(), &admin.actor(), &name, &hash).await?;
        Ok(done("password", &name, Revoked::default()))
    })
}

/// `POST /admin/users/groups`: exactly the ticked groups.
pub(super) async fn groups(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("user");
        let groups = form.all("group");
        let admins = &state.config.admin.groups;
        if name == admin.user.username && !groups.iter().any(|group| admins.contains(group)) {
            return Err(StoreError::Invalid(
                "you cannot take yourself out of the administrators' groups; another \
                 administrator can"
                    .to_owned(),
            ));
        }
        let revoked =
            actions::set_user_groups(&state.store, state.now(), &admin.actor(), name, &groups)
                .await?;
        Ok(done("groups", name, revoked))
    })
}

/// `POST /admin/users/remove`.
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("user");
        if name == admin.user.username {
            return Err(StoreError::Invalid(
                "you cannot remove yourself; another administrator can".to_owned(),
            ));
        }
        let revoked = actions::remove_user(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(done("removed", name, revoked))
    })
}

/// `POST /admin/groups`.
pub(super) async fn add_group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("group");
        actions::add_group(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(done("group-added", name, Revoked::default()))
    })
}

/// `POST /admin/groups/remove`.
pub(super) async fn remove_group(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    action!(state, headers, body, |admin, form| async {
        let name = form.text("group");
        if state.config.admin.groups.iter().any(|group| group == name) {
            return Err(StoreError::Invalid(format!(
                "{name} is an administrators' group ([admin] groups); remove it from the \
                 configuration first"
            )));
        }
        let revoked =
            actions::remove_group(&state.store, state.now(), &admin.actor(), name).await?;
        Ok(done("group-removed", name, revoked))
    })
}
