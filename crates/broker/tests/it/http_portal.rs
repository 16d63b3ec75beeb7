//! The web portal over real HTTPS: its pages for signed-in and signed-out visitors, the
//! security headers, CSRF refusals that change nothing, the sign-in form, sign-out, the
//! escaping of hostile names on every page, the embedded assets, and a tunneled connection followed through the
//! user API to the tunnel server's stop report.

use std::time::Duration;

use crate::support::broker::{Launcher, PASSWORD, Reply, Session, TestBroker, proof_for, send};
use portcullis_broker::store::{NewService, Protocol, Readiness, Transport};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";
const LOGIN_COOKIE: &str = "__Host-portcullis_login_csrf";

/// Checks the headers every portal response carries.
#[track_caller]
fn assert_portal_headers(reply: &Reply) {
    assert_eq!(reply.header("content-security-policy"), Some(CSP));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
}

/// Checks a page: HTML, never cached, with the portal's headers and no inline script or style.
#[track_caller]
pub(crate) fn assert_page(reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_portal_headers(reply);
    assert!(
        reply
            .body
            .to_ascii_lowercase()
            .starts_with("<!doctype html>"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("<script>"), "inline script");
    assert!(!reply.body.contains("style="), "inline style");
    assert!(!reply.body.contains("<style"), "inline style");
}

/// The value of the first `name="NAME" value="…"` in a page.
pub(crate) fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).expect("the field") + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

/// The value of a `Set-Cookie` of the reply, and the whole header.
fn set_cookie(reply: &Reply, name: &str) -> Option<(String, String)> {
    reply
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|header| {
            let value = header.split(';').next().unwrap()[name.len() + 1..].to_owned();
            (value, header.to_owned())
        })
}

/// `POST path` as an HTML form with `cookie`.
pub(crate) async fn form(
    broker: &TestBroker,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = broker
        .http
        .post(broker.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if !cookie.is_empty() {
        request = request.header(COOKIE, cookie);
    }
    send(request).await
}

/// The sign-in page's double-submit token (from its cookie, checked against the form).
async fn sign_in_token(broker: &TestBroker) -> String {
    let page = broker.get("/", None).await;
    let (token, _) = set_cookie(&page, LOGIN_COOKIE).expect("a sign-in token cookie");
    assert_eq!(hidden(&page.body, "csrf"), token);
    token
}

/// Signs in through the form; the session.
async fn form_login(broker: &TestBroker, username: &str) -> Session {
    let token = sign_in_token(broker).await;
    let reply = form(
        broker,
        "/login",
        &format!("{LOGIN_COOKIE}={token}"),
        &[
            ("csrf", &token),
            ("username", username),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/"));
    // The sign-in token is spent.
    let (cleared, _) = set_cookie(&reply, LOGIN_COOKIE).unwrap();
    assert_eq!(cleared, "");
    Session::from_reply(&reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_gets_the_sign_in_page_and_assets_with_strict_headers() {
    let broker = TestBroker::start().await;
    let page = broker.get("/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page(&page);
    for hook in [
        "id=\"login-form\"",
        "<label for=\"username\">",
        "id=\"username\"",
        "<label for=\"password\">",
        "id=\"password\"",
        "id=\"sign-in\"",
        "id=\"login-error\" class=\"error\" role=\"alert\"></p>",
    ] {
        assert!(page.body.contains(hook), "{hook}: {}", page.body);
    }
    let (token, cookie) = set_cookie(&page, LOGIN_COOKIE).unwrap();
    assert_eq!(token.len(), 32);
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    // The page's assets: linked with a version, served with their types, cached.
    for (name, content_type) in [
        ("portal.js", "text/javascript; charset=utf-8"),
        ("portal.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let marker = format!("/assets/{name}?v=");
        let start = page.body.find(&marker).expect("the asset's link");
        let url = page.body[start..].split('"').next().unwrap();
        let asset = broker.get(url, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert_eq!(asset.header("content-type"), Some(content_type));
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_portal_headers(&asset);
    }
    let icon = broker.get("/favicon.ico", None).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));

    // Unknown pages: a page a person understands; unknown API routes stay JSON.
    let missing = broker.get("/no/such/page", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_page(&missing);
    assert!(missing.body.contains("Page not found"));
    assert_eq!(
        broker.get("/assets/nothing.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    let api = broker.get("/api/nothing", None).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json(), json!({ "error": "not found" }));

    // The launcher's set-up page names the broker's key.
    let download = broker.get("/download", None).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_page(&download);
    assert!(
        download
            .body
            .contains(&broker.verifying_key().fingerprint())
    );
    assert!(download.body.contains("portcullis-launcher register"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_signs_in_only_with_its_token_and_the_right_password() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let token = sign_in_token(&broker).await;
    let cookie = format!("{LOGIN_COOKIE}={token}");

    // A wrong password: the form again, with the error announced and the name kept.
    let wrong = form(
        &broker,
        "/login",
        &cookie,
        &[
            ("csrf", &token),
            ("username", "alice"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert_page(&wrong);
    assert!(
        wrong.body.contains(
            "id=\"login-error\" class=\"error\" role=\"alert\">Wrong user name or password.</p>"
        ),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("value=\"alice\""));
    assert!(set_cookie(&wrong, "portcullis_session").is_none());

    // Without the token, or with one that is not the cookie's: 403 and no session.
    for (cookie, fields) in [
        (
            cookie.as_str(),
            vec![("username", "alice"), ("password", PASSWORD)],
        ),
        (
            "",
            vec![
                ("csrf", token.as_str()),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        ),
        (
            cookie.as_str(),
            vec![
                ("csrf", "00000000000000000000000000000000"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        ),
    ] {
        let refused = form(&broker, "/login", cookie, &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert_page(&refused);
        assert!(refused.body.contains("id=\"login-form\""));
        assert!(set_cookie(&refused, "portcullis_session").is_none());
    }
    // From another site: refused before the form is read.
    let token_field = [
        ("csrf", token.as_str()),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&token_field)
        .finish();
    let cross = send(
        broker
            .http
            .post(broker.url("/login"))
            .header(COOKIE, &cookie)
            .header("origin", "https://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_page(&cross);
    assert!(set_cookie(&cross, "portcullis_session").is_none());
    let failed = broker.store().audit_tail(10).await.unwrap();
    assert_eq!(
        failed
            .iter()
            .filter(|event| event.event.kind == "login")
            .count(),
        0
    );

    // The right password: a strict session cookie, then the services page.
    let alice = form_login(&broker, "alice").await;
    let mut attributes = alice.attributes();
    attributes.sort();
    assert_eq!(
        attributes,
        [
            "HttpOnly",
            "Max-Age=28800",
            "Path=/",
            "SameSite=Strict",
            "Secure"
        ]
    );
    let page = broker.get("/", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page(&page);
    for hook in [
        "id=\"services\"",
        "data-service-name=\"desk\"",
        "data-service-name=\"shell\"",
        "class=\"connect\"",
        "id=\"sign-out\"",
        "id=\"recent\"",
        "Signed in as <strong>alice</strong>",
        "SSH · tunneled",
    ] {
        assert!(page.body.contains(hook), "{hook}: {}", page.body);
    }
    // Not bob's service.
    assert!(!page.body.contains("data-service-name=\"vault\""));
    assert!(!page.body.contains("id=\"connection\""));
    assert!(
        page.body
            .contains(&format!("action=\"/services/{}/connect\"", world.desk.0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_session_token_change_nothing() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let page = broker.get("/", Some(&alice)).await;
    let csrf = hidden(&page.body, "csrf");
    assert_eq!(csrf.len(), 64);
    // Another session's token is not this one's.
    let other = broker.login("alice", PASSWORD).await;
    let other_csrf = hidden(&broker.get("/", Some(&other)).await.body, "csrf");
    assert_ne!(csrf, other_csrf);

    let connect = format!("/services/{}/connect", world.desk.0);
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", other_csrf.as_str())],
    ] {
        let reply = form(&broker, &connect, &alice.cookie(), &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert_page(&reply);
        assert!(reply.body.contains("This form has expired"));
        let reply = form(&broker, "/logout", &alice.cookie(), &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(set_cookie(&reply, "portcullis_session").is_none());
    }
    assert_eq!(broker.state().metrics.tickets_issued.get(), 0);
    assert!(broker.services(&alice).await.len() == 3, "still signed in");

    // With the token: the connection panel, holding the launch link.
    let reply = form(&broker, &connect, &alice.cookie(), &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_page(&reply);
    assert_eq!(broker.state().metrics.tickets_issued.get(), 1);
    for hook in [
        "id=\"connection\" data-state=\"waiting\"",
        "data-status-url=\"/api/connections/",
        "id=\"launch-link\" href=\"udssv2://",
        "id=\"bytes-sent\" data-value=\"0\"",
        "id=\"bytes-received\" data-value=\"0\"",
        "id=\"duration\" data-value=\"0\"",
        "aria-live=\"polite\"",
        "<a href=\"/download\">",
        "Connection to desk",
    ] {
        assert!(reply.body.contains(hook), "{hook}: {}", reply.body);
    }
    // Someone else's service, or none: the 404 page.
    for id in [
        world.vault.0.to_string(),
        "9999".to_owned(),
        "desk".to_owned(),
    ] {
        let reply = form(
            &broker,
            &format!("/services/{id}/connect"),
            &alice.cookie(),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id}");
        assert_page(&reply);
    }

    // Sign-out with the token ends this session only.
    let reply = form(&broker, "/logout", &alice.cookie(), &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), Some("/"));
    let (cleared, header) = set_cookie(&reply, "portcullis_session").unwrap();
    assert_eq!(cleared, "");
    assert!(header.contains("Max-Age=0"));
    assert_eq!(
        broker.get("/api/services", Some(&alice)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(broker.services(&other).await.len(), 3);
    // The old cookie now meets the sign-in page, saying why.
    let page = broker.get("/", Some(&alice)).await;
    assert!(page.body.contains("Your session has ended. Sign in again."));
    assert!(page.body.contains("id=\"login-form\""));
    // A Connect with it: the same, and no ticket.
    let reply = form(&broker, &connect, &alice.cookie(), &[("csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply
            .body
            .contains("Your session has ended. Sign in again.")
    );
    assert_eq!(broker.state().metrics.tickets_issued.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_meets_the_sign_in_page() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    broker.clock.advance(Duration::from_secs(8 * 3600));
    let page = broker.get("/", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page(&page);
    assert!(page.body.contains("Your session has ended. Sign in again."));
    assert!(page.body.contains("id=\"login-form\""));
    let (cleared, _) = set_cookie(&page, "portcullis_session").unwrap();
    assert_eq!(cleared, "");
}

/// A user and a service named to break out of HTML text and attributes: on every page that
/// shows them (the services list, the top bar, the connection panel, the recent
/// connections, the sign-in form filled in again) they come back escaped, and no page holds
/// the raw value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_escaped_on_every_page() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let evil = "<script>alert(\"x\")</script>&' onmouseover='y";
    // maud escapes `&`, `<`, `>` and `"`; its attribute values are always double-quoted.
    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;' onmouseover='y";
    let user = format!("{evil} (user)");
    let service = format!("{evil} (service)");
    broker.add_user(&user, &["staff"]).await;
    let id = broker
        .add_service(NewService {
            name: service.clone(),
            host: "127.0.0.1".to_owned(),
            port: world.target.port,
            protocol: Protocol::Tcp,
            transport: Transport::Direct,
            tunnel_group: None,
            max_session_secs: 60,
            readiness: Readiness::Off,
            allowed_groups: vec!["staff".to_owned()],
        })
        .await;
    #[track_caller]
    fn assert_escaped(body: &str, hooks: &[String]) {
        assert!(!body.contains("<script>"), "{body}");
        assert!(!body.contains("\"x\""), "{body}");
        for hook in hooks {
            assert!(body.contains(hook.as_str()), "{hook}: {body}");
        }
    }

    let session = form_login(&broker, &user).await;
    let page = broker.get("/", Some(&session)).await;
    assert_page(&page);
    assert_escaped(
        &page.body,
        &[
            format!("Signed in as <strong>{escaped} (user)</strong>"),
            format!("data-service-name=\"{escaped} (service)\""),
            format!("aria-label=\"Connect to {escaped} (service)\""),
        ],
    );

    let csrf = hidden(&page.body, "csrf");
    let reply = form(
        &broker,
        &format!("/services/{}/connect", id.0),
        &session.cookie(),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_page(&reply);
    assert_escaped(
        &reply.body,
        &[
            format!("Connection to {escaped} (service)"),
            format!("<td>{escaped} (service)</td>"),
            format!("Signed in as <strong>{escaped} (user)</strong>"),
        ],
    );
    let page = broker.get("/", Some(&session)).await;
    assert_escaped(&page.body, &[format!("<td>{escaped} (service)</td>")]);

    // A user name comes back escaped in the sign-in form.
    let token = sign_in_token(&broker).await;
    let wrong = form(
        &broker,
        "/login",
        &format!("{LOGIN_COOKIE}={token}"),
        &[("csrf", &token), ("username", &user), ("password", "p")],
    )
    .await;
    assert_page(&wrong);
    assert_escaped(&wrong.body, &[format!("value=\"{escaped} (user)\"")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunneled_connection_reports_its_end_with_bytes() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();
    let launched = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    let launch = &launched.launch;

    // Exchanged, tunnel not open yet.
    assert_eq!(
        broker.connection_state(&alice, launch).await,
        json!({ "state": "preparing", "percent": 100, "message": null })
    );
    let opened_at = broker.clock.now();
    let start = world
        .dc1
        .redeem(
            &broker,
            &launched.ticket,
            Some(&proof_for(&launched.secret, &launched.ticket)),
        )
        .await;
    assert_eq!(
        broker.connection_state(&alice, launch).await,
        json!({ "state": "connected", "started_at": opened_at })
    );

    // The tunnel server reports the end: bytes each way and the duration.
    broker.clock.advance(Duration::from_millis(65_400));
    let stop = world
        .dc1
        .stop(&broker, &start.notify, 4096, 1_000_000)
        .await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.body);
    assert_eq!(
        broker.connection_state(&alice, launch).await,
        json!({
            "state": "ended",
            "started_at": opened_at,
            "ended_at": opened_at + 65_400,
            "bytes_sent": 4096,
            "bytes_received": 1_000_000,
            "duration_secs": 65,
        })
    );

    // A tunnel ticket nobody redeems: failed once it expires.
    let stranded = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    broker.clock.advance(Duration::from_secs(121));
    assert_eq!(
        broker.connection_state(&alice, &stranded.launch).await,
        json!({ "state": "failed" })
    );

    // The recent list: newest first, with its service.
    let recent = broker.get("/api/connections", Some(&alice)).await;
    assert_eq!(recent.status, StatusCode::OK);
    let recent = recent.json();
    let recent = recent.as_array().unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["state"], "failed");
    assert_eq!(recent[1]["service"], "shell");
    assert_eq!(recent[1]["bytes_received"], 1_000_000);
    assert_eq!(recent[1]["created_at"], opened_at);
    assert!(
        launch
            .status_url
            .ends_with(recent[1]["status_id"].as_str().unwrap())
    );
    assert_eq!(
        broker.get("/api/connections", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The portal's table shows it.
    let page = broker.get("/", Some(&alice)).await;
    assert!(
        page.body
            .contains("<tr data-state=\"ended\"><td>shell</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("976.6 KiB"), "{}", page.body);
    assert!(page.body.contains("1 min 5 s"));
}
