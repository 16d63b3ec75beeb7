//! The portal's pages as HTML text. Everything from outside (names, messages, links) is
//! escaped here; the ids and `data-` attributes are the stable hooks of the browser tests
//! (docs/broker.md, "Web portal").

use axum::http::StatusCode;
use axum::response::Response;

use super::csrf;
use super::format::{bytes, duration, utc_iso, utc_minute};
use super::html::{escape, page, respond};
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

/// The sign-in page with its double-submit `login_token`, and `providers` (HTML: the
/// "Sign in with …" buttons of the OpenID Connect providers) after the form.
pub(super) fn sign_in(login_token: &str, view: &SignIn<'_>, providers: &str) -> String {
    let notice = view
        .notice
        .map(|text| format!("<p class=\"notice\">{}</p>\n", escape(text)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>\n{notice}\
         <form id=\"login-form\" class=\"sign-in\" method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"{field}\" value=\"{token}\">\n\
         <p id=\"login-error\" class=\"error\" role=\"alert\">{error}</p>\n\
         <label for=\"username\">User name</label>\n\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" \
         required maxlength=\"128\" value=\"{username}\"{focus_user}>\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required{focus_password}>\n\
         <button type=\"submit\" id=\"sign-in\">Sign in</button>\n</form>\n{providers}",
        field = csrf::FIELD,
        token = escape(login_token),
        error = escape(view.error.unwrap_or_default()),
        username = escape(view.username),
        focus_user = if view.username.is_empty() {
            " autofocus"
        } else {
            ""
        },
        focus_password = if view.username.is_empty() {
            ""
        } else {
            " autofocus"
        },
    );
    page("Sign in", "", &body)
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
    /// The session's CSRF token for the forms.
    pub(super) csrf: &'a str,
    /// The user's services.
    pub(super) services: &'a [ServiceView],
    /// The connection just started, if any.
    pub(super) started: Option<Started<'a>>,
    /// The user's latest connections.
    pub(super) recent: &'a [Connection],
}

/// The header's right side for a signed-in user: the name and the sign-out form.
fn user_header(username: &str, csrf_token: &str) -> String {
    format!(
        "<div class=\"user\"><span>Signed in as <strong>{}</strong></span>\
         <form class=\"inline\" method=\"post\" action=\"/logout\">\
         <input type=\"hidden\" name=\"{}\" value=\"{}\">\
         <button type=\"submit\" id=\"sign-out\" class=\"secondary\">Sign out</button>\
         </form></div>",
        escape(username),
        csrf::FIELD,
        escape(csrf_token)
    )
}

/// The services page.
pub(super) fn services(view: &Services<'_>) -> String {
    let mut body = String::from("<h1>Your services</h1>\n");
    if view.services.is_empty() {
        body.push_str(
            "<p>No services are assigned to you yet. Ask your administrator to add you to \
             a group that may use one.</p>\n",
        );
    }
    body.push_str("<ul id=\"services\" class=\"services\">\n");
    for service in view.services {
        let name = escape(&service.name);
        body.push_str(&format!(
            "<li data-service-name=\"{name}\"><div><span class=\"service-name\">{name}</span> \
             <span class=\"meta\">{protocol} · {transport}</span></div>\
             <form class=\"inline\" method=\"post\" action=\"/services/{id}/connect\">\
             <input type=\"hidden\" name=\"{field}\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"connect\" aria-label=\"Connect to {name}\">\
             Connect</button></form></li>\n",
            protocol = service.protocol.to_uppercase(),
            transport = service.transport,
            id = service.id,
            field = csrf::FIELD,
            csrf = escape(view.csrf),
        ));
    }
    body.push_str("</ul>\n");
    if let Some(started) = &view.started {
        body.push_str(&panel(started));
    }
    body.push_str(&recent(view.recent));
    page(
        "Your services",
        &user_header(view.username, view.csrf),
        &body,
    )
}

/// The connection panel, in its first state (waiting); the script takes it from there.
fn panel(started: &Started<'_>) -> String {
    format!(
        "<section id=\"connection\" data-state=\"waiting\" data-open=\"true\" \
         data-status-url=\"{status_url}\" aria-labelledby=\"connection-title\">\n\
         <h2 id=\"connection-title\">Connection to {service}</h2>\n\
         <p id=\"connection-message\" role=\"status\" aria-live=\"polite\">\
         Waiting for the launcher to start…</p>\n\
         <progress id=\"progress\" max=\"100\" value=\"0\" hidden>preparing</progress>\n\
         <p id=\"launch\">The launcher should open now. If it does not, \
         <a id=\"launch-link\" href=\"{launch_url}\">Open the launcher</a>.</p>\n\
         <dl id=\"figures\" class=\"figures\" hidden>\
         <dt>Sent to you</dt><dd id=\"bytes-sent\" data-value=\"0\">—</dd>\
         <dt>Received from you</dt><dd id=\"bytes-received\" data-value=\"0\">—</dd>\
         <dt>Duration</dt><dd id=\"duration\" data-value=\"0\">—</dd></dl>\n\
         <div id=\"launcher-help\" hidden><p>The Portcullis launcher did not answer. It \
         must be installed on this computer and registered to open <code>udssv2://</code> \
         links: <a href=\"/download\">how to install and register portcullis-launcher</a>. \
         Then click Connect again.</p></div>\n</section>\n",
        status_url = escape(started.status_url),
        service = escape(started.service),
        launch_url = escape(started.launch_url),
    )
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
fn recent(connections: &[Connection]) -> String {
    let mut html = String::from(
        "<h2 id=\"recent-title\">Recent connections</h2>\n\
         <table id=\"recent\" aria-labelledby=\"recent-title\">\n<thead><tr>\
         <th scope=\"col\">Service</th><th scope=\"col\">Started</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Sent to you</th>\
         <th scope=\"col\">Received from you</th><th scope=\"col\">Duration</th>\
         </tr></thead>\n<tbody>\n",
    );
    for connection in connections {
        let (state, sent, recv, took) = state_cells(&connection.state);
        html.push_str(&format!(
            "<tr data-state=\"{state}\"><td>{service}</td>\
             <td><time datetime=\"{iso}\">{when}</time></td><td>{state}</td>\
             <td class=\"number\">{sent}</td><td class=\"number\">{recv}</td>\
             <td class=\"number\">{took}</td></tr>\n",
            service = escape(connection.service.as_deref().unwrap_or("(removed service)")),
            iso = utc_iso(connection.created_at),
            when = utc_minute(connection.created_at),
        ));
    }
    html.push_str("</tbody>\n</table>\n");
    html.push_str(&format!(
        "<p id=\"recent-empty\"{}>No connections yet.</p>\n",
        if connections.is_empty() {
            ""
        } else {
            " hidden"
        }
    ));
    html
}

/// The launcher's download and set-up page.
pub(super) fn download(client_link: Option<&str>, host: &str, fingerprint: &str) -> String {
    let get = match client_link {
        Some(link) => format!(
            "<p><a href=\"{}\">Download portcullis-launcher</a> and install it.</p>\n",
            escape(link)
        ),
        None => "<p>This broker does not host launcher builds: ask your administrator for \
                 <code>portcullis-launcher</code>, or build it from the Portcullis sources \
                 with <code>cargo build --release -p portcullis-launcher</code>.</p>\n"
            .to_owned(),
    };
    let body = format!(
        "<h1>Install the Portcullis launcher</h1>\n\
         <p>Connect opens a <code>udssv2://</code> link. The Portcullis launcher on your \
         computer answers it: it fetches the connection from this broker, checks its \
         signature and starts your client through the post-quantum tunnel.</p>\n\
         <h2>1. Get it</h2>\n{get}\
         <h2>2. Register it for <code>udssv2://</code> links</h2>\n\
         <p>On Linux run <code>portcullis-launcher register</code> (it installs a desktop \
         entry and makes it the handler of <code>udssv2://</code>). On Windows and macOS \
         the installer registers it.</p>\n\
         <h2>3. Trust this broker</h2>\n\
         <p>The first time the launcher contacts <code>{host}</code> it asks you to confirm \
         the broker's key. Its fingerprint is:</p>\n<pre id=\"fingerprint\">{fingerprint}</pre>\n\
         <p>You can also trust it ahead of a link:</p>\n\
         <pre>portcullis-launcher --trust-fingerprint {fingerprint} 'udssv2://…'</pre>\n\
         <p><a href=\"/\">Back to your services</a></p>\n\
         <p class=\"meta\">Administrators: the download link is <code>client.client_link</code> \
         in the broker's configuration.</p>\n",
        host = escape(host),
        fingerprint = escape(fingerprint),
    );
    page("Install the launcher", "", &body)
}

/// An error page: a heading, an explanation, and the way back.
fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/\">Go to the start page</a></p>\n",
        escape(title),
        escape(text)
    );
    respond(status, page(title, "", &body))
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
