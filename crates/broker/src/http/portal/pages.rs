//! The portal's pages, as maud templates: every value spliced in with `(…)` is escaped by
//! maud unless it is already `Markup`, and nothing here makes `Markup` from a string. The
//! ids and `data-` attributes are the stable hooks of the browser tests (docs/broker.md,
//! "Web portal").

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::csrf;
use super::format::{bytes, duration, utc_iso, utc_minute};
use super::headers::respond;
use super::layout::page;
use crate::http::user_api::ServiceView;
use crate::store::{Connection, ConnectionState};

/// What the sign-in page shows besides the form.
#[derive(Default)]
pub(super) struct SignIn<'a> {
    /// A notice above the form (say, the session ended).
    pub(super) notice: Option<&'a str>,
    /// The error of the last attempt, announced by screen readers (`role="alert"`).
    pub(super) error: Option<&'a str>,
    /// The user name to fill in again.
    pub(super) username: &'a str,
}

/// The sign-in page with its double-submit `login_token`, and `providers` (the "Sign in
/// with …" buttons of the OpenID Connect providers) after the form.
pub(super) fn sign_in(login_token: &str, view: &SignIn<'_>, providers: Markup) -> Markup {
    let refill = !view.username.is_empty();
    let body = html! {
        h1 { "Sign in" }
        @if let Some(notice) = view.notice {
            p.notice { (notice) }
        }
        form id="login-form" class="sign-in" method="post" action="/login" {
            input type="hidden" name=(csrf::FIELD) value=(login_token);
            p id="login-error" class="error" role="alert" { (view.error.unwrap_or_default()) }
            label for="username" { "User name" }
            input type="text" #username name="username" autocomplete="username" required
                maxlength="128" value=(view.username) autofocus[!refill];
            label for="password" { "Password" }
            input type="password" #password name="password" autocomplete="current-password"
                required autofocus[refill];
            button type="submit" #sign-in { "Sign in" }
        }
        (providers)
    };
    page("Sign in", None, body)
}

/// A connection just started, shown in the panel of the services page.
pub(super) struct Started<'a> {
    /// The service's name.
    pub(super) service: &'a str,
    /// The `udssv2://` link (holds the client ticket).
    pub(super) launch_url: &'a str,
    /// Where the script polls the state.
    pub(super) status_url: &'a str,
}

/// Everything on the services page.
pub(super) struct Services<'a> {
    /// The signed-in user's name.
    pub(super) username: &'a str,
    /// Whether they are an administrator (the header links the admin pages).
    pub(super) is_admin: bool,
    /// The session's CSRF token for the forms.
    pub(super) csrf: &'a str,
    /// The user's services.
    pub(super) services: &'a [ServiceView],
    /// The connection just started, if any.
    pub(super) started: Option<Started<'a>>,
    /// The user's latest connections.
    pub(super) recent: &'a [Connection],
}

/// The header's right side for a signed-in user: the name, the admin pages' link for an
/// administrator, and the sign-out form.
fn user_header(username: &str, is_admin: bool, csrf_token: &str) -> Markup {
    html! {
        div.user {
            @if is_admin { a #admin-link href="/admin" { "Administration" } }
            span { "Signed in as " strong { (username) } }
            form.inline method="post" action="/logout" {
                input type="hidden" name=(csrf::FIELD) value=(csrf_token);
                button type="submit" id="sign-out" class="secondary" { "Sign out" }
            }
        }
    }
}

/// The services page.
pub(super) fn services(view: &Services<'_>) -> Markup {
    let body = html! {
        h1 { "Your services" }
        @if view.services.is_empty() {
            p {
                "No services are assigned to you yet. Ask your administrator to add you to a \
                 group that may use one."
            }
        }
        ul id="services" class="services" {
            @for service in view.services {
                li data-service-name=(service.name) {
                    div {
                        span.service-name { (service.name) }
                        " "
                        span.meta {
                            (service.protocol.to_uppercase()) " · " (service.transport)
                        }
                    }
                    form.inline method="post" action={ "/services/" (service.id) "/connect" } {
                        input type="hidden" name=(csrf::FIELD) value=(view.csrf);
                        button type="submit" .connect aria-label={ "Connect to " (service.name) } {
                            "Connect"
                        }
                    }
                }
            }
        }
        @if let Some(started) = &view.started {
            (panel(started))
        }
        (recent(view.recent))
    };
    page(
        "Your services",
        Some(user_header(view.username, view.is_admin, view.csrf)),
        body,
    )
}

/// The connection panel, in its first state (waiting); the script takes it from there.
fn panel(started: &Started<'_>) -> Markup {
    html! {
        section #connection data-state="waiting" data-open="true"
            data-status-url=(started.status_url) aria-labelledby="connection-title" {
            h2 #connection-title { "Connection to " (started.service) }
            p #connection-message role="status" aria-live="polite" {
                "Waiting for the launcher to start…"
            }
            progress #progress max="100" value="0" hidden { "preparing" }
            p #launch {
                "The launcher should open now. If it does not, "
                a #launch-link href=(started.launch_url) { "Open the launcher" }
                "."
            }
            dl id="figures" class="figures" hidden {
                dt { "Sent to you" }
                dd #bytes-sent data-value="0" { "—" }
                dt { "Received from you" }
                dd #bytes-received data-value="0" { "—" }
                dt { "Duration" }
                dd #duration data-value="0" { "—" }
            }
            div #launcher-help hidden {
                p {
                    "The Portcullis launcher did not answer. It must be installed on this \
                     computer and registered to open "
                    code { "udssv2://" }
                    " links: "
                    a href="/download" { "how to install and register portcullis-launcher" }
                    ". Then click Connect again."
                }
            }
        }
    }
}

/// A connection's state as one word, and its figures once ended.
fn state_cells(state: &ConnectionState) -> (&'static str, String, String, String) {
    let none = || "—".to_owned();
    match state {
        ConnectionState::Waiting => ("waiting", none(), none(), none()),
        ConnectionState::Preparing { .. } => ("preparing", none(), none(), none()),
        ConnectionState::Connected { .. } => ("connected", none(), none(), none()),
        ConnectionState::Ended {
            started_at,
            ended_at,
            sent,
            recv,
        } => (
            "ended",
            bytes(*sent),
            bytes(*recv),
            duration(ended_at.saturating_sub(*started_at) / 1000),
        ),
        ConnectionState::Expired => ("expired", none(), none(), none()),
        ConnectionState::Failed => ("failed", none(), none(), none()),
    }
}

/// The recent-connections table.
fn recent(connections: &[Connection]) -> Markup {
    html! {
        h2 #recent-title { "Recent connections" }
        table #recent aria-labelledby="recent-title" {
            thead {
                tr {
                    th scope="col" { "Service" }
                    th scope="col" { "Started" }
                    th scope="col" { "State" }
                    th scope="col" { "Sent to you" }
                    th scope="col" { "Received from you" }
                    th scope="col" { "Duration" }
                }
            }
            tbody {
                @for connection in connections {
                    @let (state, sent, recv, took) = state_cells(&connection.state);
                    tr data-state=(state) {
                        td { (connection.service.as_deref().unwrap_or("(removed service)")) }
                        td {
                            time datetime=(utc_iso(connection.created_at)) {
                                (utc_minute(connection.created_at))
                            }
                        }
                        td { (state) }
                        td.number { (sent) }
                        td.number { (recv) }
                        td.number { (took) }
                    }
                }
            }
        }
        p #recent-empty hidden[!connections.is_empty()] { "No connections yet." }
    }
}

/// The launcher's download and set-up page.
pub(super) fn download(client_link: Option<&str>, host: &str, fingerprint: &str) -> Markup {
    let body = html! {
        h1 { "Install the Portcullis launcher" }
        p {
            "Connect opens a " code { "udssv2://" } " link. The Portcullis launcher on your \
             computer answers it: it fetches the connection from this broker, checks its \
             signature and starts your client through the post-quantum tunnel."
        }
        h2 { "1. Get it" }
        @match client_link {
            Some(link) => p {
                a href=(link) { "Download portcullis-launcher" } " and install it."
            },
            None => p {
                "This broker does not host launcher builds: ask your administrator for "
                code { "portcullis-launcher" }
                ", or build it from the Portcullis sources with "
                code { "cargo build --release -p portcullis-launcher" } "."
            },
        }
        h2 { "2. Register it for " code { "udssv2://" } " links" }
        p {
            "On Linux run " code { "portcullis-launcher register" } " (it installs a desktop \
             entry and makes it the handler of " code { "udssv2://" } "). On Windows and \
             macOS the installer registers it."
        }
        h2 { "3. Trust this broker" }
        p {
            "The first time the launcher contacts " code { (host) } " it asks you to confirm \
             the broker's key. Its fingerprint is:"
        }
        pre #fingerprint { (fingerprint) }
        p { "You can also trust it ahead of a link:" }
        pre { "portcullis-launcher --trust-fingerprint " (fingerprint) " 'udssv2://…'" }
        p { a href="/" { "Back to your services" } }
        p.meta {
            "Administrators: the download link is " code { "client.client_link" }
            " in the broker's configuration."
        }
    };
    page("Install the launcher", None, body)
}

/// An error page: a heading, an explanation, and the way back.
fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p { (text) }
        p { a href="/" { "Go to the start page" } }
    };
    respond(status, page(title, None, body))
}

/// 404 for every path the broker does not serve.
pub(crate) fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address. It may have been mistyped, or the link is out of date.",
    )
}

/// 403 for a form without its CSRF token, or with the wrong one. Nothing was done.
pub(super) fn form_expired() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "Nothing was done: the form was sent without the token of your current session, \
         for example from an old tab or another site. Go back to the start page and try again.",
    )
}

/// 403 for a state-changing request from another site (`http::same_origin`).
pub(crate) fn cross_site() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "Nothing was done: the request came from another web site. Use the portal's own pages.",
    )
}

/// 500 (the details are logged, never shown).
pub(super) fn internal_error() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The broker could not handle this request. Try again in a moment; if it keeps \
         happening, tell your administrator.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value that breaks out of text and of either kind of quoted attribute if a page
    /// forgets to escape it.
    const HOSTILE: &str = "<script>alert(\"x\")</script>&' onmouseover='y";
    /// How maud writes it: `&`, `<`, `>` and `"` escaped (attributes are double-quoted).
    const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;' onmouseover='y";

    #[track_caller]
    fn assert_escaped(page: &Markup, times: usize) {
        let html = &page.0;
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("\"x\""), "{html}");
        assert_eq!(html.matches(ESCAPED).count(), times, "{html}");
    }

    fn started() -> Started<'static> {
        Started {
            service: HOSTILE,
            launch_url: HOSTILE,
            status_url: HOSTILE,
        }
    }

    #[test]
    fn the_sign_in_page_escapes_the_name_the_notice_and_the_error() {
        let view = SignIn {
            notice: Some(HOSTILE),
            error: Some(HOSTILE),
            username: HOSTILE,
        };
        let page = sign_in(HOSTILE, &view, html! { p { (HOSTILE) } });
        // Token, notice, error, user name, and the providers' markup (escaped by its maker).
        assert_escaped(&page, 5);
    }

    #[test]
    fn the_services_page_escapes_names_in_the_list_the_header_the_panel_and_the_table() {
        let list = [ServiceView {
            id: 7,
            name: HOSTILE.to_owned(),
            protocol: "ssh",
            transport: "tunneled",
        }];
        let recent = [Connection {
            status_id: "s".to_owned(),
            service: Some(HOSTILE.to_owned()),
            created_at: 0,
            state: ConnectionState::Ended {
                started_at: 0,
                ended_at: 65_000,
                sent: 1536,
                recv: 0,
            },
        }];
        let page = services(&Services {
            username: HOSTILE,
            is_admin: false,
            csrf: HOSTILE,
            services: &list,
            started: Some(started()),
            recent: &recent,
        });
        // The list: data-service-name, the name, aria-label (as "Connect to …"), the form's
        // token; the header: the user name, the sign-out token; the panel: the status URL,
        // the service, the launch link; the table: the service.
        assert_escaped(&page, 10);
        assert!(page.0.contains("<td>&lt;script&gt;"), "{}", page.0);
        assert!(page.0.contains("<td class=\"number\">1.5 KiB</td>"));
        assert!(page.0.contains("<time datetime=\"1970-01-01T00:00:00Z\">"));
    }

    #[test]
    fn the_download_page_escapes_the_link_the_host_and_the_fingerprint() {
        assert_escaped(&download(Some(HOSTILE), HOSTILE, HOSTILE), 4);
    }

    #[test]
    fn pages_keep_the_hooks_of_the_browser_tests() {
        let page = sign_in("t", &SignIn::default(), html! {});
        for hook in [
            "<!DOCTYPE html><html lang=\"en\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"t\">",
            "<p id=\"login-error\" class=\"error\" role=\"alert\"></p>",
            "maxlength=\"128\" value=\"\" autofocus>",
        ] {
            assert!(page.0.contains(hook), "{hook}: {}", page.0);
        }
        let page = services(&Services {
            username: "u",
            is_admin: false,
            csrf: "c",
            services: &[],
            started: Some(Started {
                service: "s",
                launch_url: "udssv2://x",
                status_url: "/api/connections/x",
            }),
            recent: &[],
        });
        for hook in [
            "<section id=\"connection\" data-state=\"waiting\" data-open=\"true\" \
             data-status-url=\"/api/connections/x\"",
            "<a id=\"launch-link\" href=\"udssv2://x\">",
            "<dd id=\"bytes-sent\" data-value=\"0\">",
            "<p id=\"recent-empty\">",
        ] {
            assert!(page.0.contains(hook), "{hook}: {}", page.0);
        }
    }
}
