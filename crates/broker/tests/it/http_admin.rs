//! The admin pages over real HTTPS: nobody but an administrator reaches any of them (404
//! for a signed-in user, 401 and the sign-in page for nobody), every form needs the
//! session's CSRF token, every action is audited with the administrator's name, and
//! disabling a user or taking a grant away ends their live connections through the control
//! channel.

use std::time::Duration;

use portcullis_broker::store::{AuditFilter, StoredAuditEvent};
use portcullis_proto::TicketId;
use portcullis_proto::api::SessionRef;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http_portal::{assert_page, form, hidden};
use crate::support::broker::{Launcher, PASSWORD, Session, TestBroker, World, proof_for};

/// A broker whose administrators are the group `admins` (bob, in the test world).
async fn broker_with_admins() -> (TestBroker, World) {
    let broker = TestBroker::builder()
        .config(|config| config.admin.groups = vec!["admins".to_owned()])
        .start()
        .await;
    let world = broker.world().await;
    (broker, world)
}

/// The CSRF token of `session` (from a page it can see).
async fn csrf(broker: &TestBroker, session: &Session) -> String {
    hidden(&broker.get("/", Some(session)).await.body, "csrf")
}

/// The newest audit events, newest first.
async fn audit(broker: &TestBroker, kind: &str) -> Vec<StoredAuditEvent> {
    broker
        .store()
        .audit_page(
            &AuditFilter {
                kind: Some(kind.to_owned()),
                ..AuditFilter::default()
            },
            None,
            50,
        )
        .await
        .unwrap()
}

fn detail(event: &StoredAuditEvent) -> Value {
    serde_json::from_str(&event.event.detail).unwrap()
}

/// An admin route: method, path, and the form fields of a plausible action.
type Route = (&'static str, String, Vec<(&'static str, String)>);

/// Every admin route.
fn routes() -> Vec<Route> {
    let get = |path: &str| ("GET", path.to_owned(), Vec::new());
    let post = |path: &str, fields: &[(&'static str, &str)]| {
        (
            "POST",
            path.to_owned(),
            fields
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
        )
    };
    vec![
        get("/admin"),
        get("/admin/users"),
        get("/admin/services"),
        get("/admin/services/1"),
        get("/admin/tunnels"),
        get("/admin/key"),
        get("/admin/connections"),
        get("/admin/connections.json"),
        get("/admin/audit"),
        post(
            "/admin/users",
            &[
                ("username", "mallory"),
                ("password", "p"),
                ("group", "admins"),
            ],
        ),
        post("/admin/users/disable", &[("user", "bob")]),
        post("/admin/users/enable", &[("user", "bob")]),
        post(
            "/admin/users/password",
            &[("user", "bob"), ("password", "x")],
        ),
        post(
            "/admin/users/groups",
            &[("user", "alice"), ("group", "admins")],
        ),
        post("/admin/users/remove", &[("user", "bob")]),
        post("/admin/groups", &[("group", "evil")]),
        post("/admin/groups/remove", &[("group", "staff")]),
        post(
            "/admin/services",
            &[
                ("name", "evil"),
                ("host", "127.0.0.1"),
                ("port", "22"),
                ("protocol", "ssh"),
                ("transport", "direct"),
                ("readiness", "off"),
                ("max_session_minutes", "60"),
            ],
        ),
        post("/admin/services/1", &[("name", "renamed")]),
        post("/admin/services/1/remove", &[]),
        post("/admin/services/1/credentials", &[("mode", "none")]),
        post(
            "/admin/tunnels",
            &[("name", "evil"), ("address", "x:1"), ("group", "dc1")],
        ),
        post("/admin/tunnels/rotate", &[("server", "tunnel-dc1")]),
        post("/admin/tunnels/remove", &[("server", "tunnel-dc1")]),
        post("/admin/connections/end", &[("session", "00")]),
    ]
}

/// What an administrator's action would have changed, as one value to compare.
async fn snapshot(broker: &TestBroker) -> Value {
    let store = broker.store();
    let users: Vec<Value> = store
        .list_users()
        .await
        .unwrap()
        .iter()
        .map(|user| json!([user.username, user.disabled_at, user.password_hash]))
        .collect();
    let groups: Vec<String> = store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|group| group.name)
        .collect();
    let services: Vec<Value> = store
        .list_services()
        .await
        .unwrap()
        .iter()
        .map(|service| json!([service.name, service.allowed_groups]))
        .collect();
    let servers: Vec<String> = store
        .list_tunnel_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|server| server.name)
        .collect();
    json!([
        users,
        groups,
        services,
        servers,
        store.audit_tail(1000).await.unwrap().len()
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_route_serves_anyone_but_an_administrator() {
    let (broker, _world) = broker_with_admins().await;
    let alice = broker.login("alice", PASSWORD).await;
    let alice_csrf = csrf(&broker, &alice).await;
    let before = snapshot(&broker).await;
    for (method, path, fields) in routes() {
        let mut fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        // With alice's own, valid CSRF token: the CSRF check is not what stops her.
        fields.push(("csrf", alice_csrf.as_str()));
        for (who, cookie, expected) in [
            (
                "alice, not an administrator",
                alice.cookie(),
                StatusCode::NOT_FOUND,
            ),
            ("nobody signed in", String::new(), StatusCode::UNAUTHORIZED),
        ] {
            let reply = if method == "GET" {
                let session = (!cookie.is_empty()).then_some(&alice);
                broker.get(&path, session).await
            } else {
                form(&broker, &path, &cookie, &fields).await
            };
            assert_eq!(
                reply.status, expected,
                "{method} {path} as {who}: {}",
                reply.body
            );
            assert_page(&reply);
            assert!(
                !reply.body.contains("Administrator "),
                "{method} {path} as {who}"
            );
            assert!(
                !reply.body.contains("nav class=\"admin\""),
                "{method} {path} as {who}"
            );
        }
    }
    assert_eq!(snapshot(&broker).await, before, "nothing changed");
    // Alice's services page has no link to the admin pages; bob's has.
    assert!(!broker.get("/", Some(&alice)).await.body.contains("/admin"));
    let bob = broker.login("bob", PASSWORD).await;
    assert!(
        broker
            .get("/", Some(&bob))
            .await
            .body
            .contains("id=\"admin-link\"")
    );
    // A disabled administrator is no administrator (and signed out anyway).
    broker
        .store()
        .set_user_disabled("bob", Some(broker.clock.now()), None)
        .await
        .unwrap();
    assert_eq!(
        broker.get("/admin", Some(&bob)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_forms_without_the_sessions_csrf_token_change_nothing() {
    let (broker, _world) = broker_with_admins().await;
    let bob = broker.login("bob", PASSWORD).await;
    let alice = broker.login("alice", PASSWORD).await;
    let forged = csrf(&broker, &alice).await;
    let before = snapshot(&broker).await;
    for (method, path, fields) in routes() {
        if method == "GET" {
            continue;
        }
        let plain: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        for token in [None, Some(""), Some(forged.as_str()), Some("00ff")] {
            let mut fields = plain.clone();
            if let Some(token) = token {
                fields.push(("csrf", token));
            }
            let reply = form(&broker, &path, &bob.cookie(), &fields).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert_page(&reply);
            assert!(
                reply.body.contains("Nothing was done"),
                "{path}: {}",
                reply.body
            );
        }
    }
    assert_eq!(snapshot(&broker).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_everything_and_each_action_is_audited_with_their_name() {
    let (broker, _world) = broker_with_admins().await;
    let bob = broker.login("bob", PASSWORD).await;
    let token = csrf(&broker, &bob).await;
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let cookie = bob.cookie();
        let token = token.clone();
        let broker = &broker;
        async move {
            let mut all: Vec<(&str, &str)> = fields
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            all.push(("csrf", &token));
            form(broker, path, &cookie, &all).await
        }
    };
    // Every page renders for an administrator, with the navigation.
    for path in [
        "/admin",
        "/admin/users",
        "/admin/services",
        "/admin/tunnels",
        "/admin/key",
        "/admin/connections",
        "/admin/audit",
    ] {
        let page = broker.get(path, Some(&bob)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert_page(&page);
        assert!(page.body.contains("aria-current=\"page\""), "{path}");
    }

    let reply = post("/admin/groups", vec![("group", "ops".into())]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let reply = post(
        "/admin/users",
        vec![
            ("username", "carol".into()),
            ("password", "carol-s3cret-password".into()),
            ("group", "ops".into()),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let location = reply.header("location").unwrap().to_owned();
    let page = broker.get(&location, Some(&bob)).await;
    assert!(page.body.contains("Added the user carol."), "{}", page.body);
    assert!(
        broker
            .try_login("carol", "carol-s3cret-password")
            .await
            .status
            .is_success()
    );

    // A duplicate is refused on the page, with the reason, and changes nothing.
    let reply = post(
        "/admin/users",
        vec![("username", "carol".into()), ("password", "x".into())],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("id=\"admin-error\""), "{}", reply.body);
    assert!(reply.body.contains("already exists"), "{}", reply.body);

    let reply = post(
        "/admin/services",
        vec![
            ("name", "ops-box".into()),
            ("host", "127.0.0.1".into()),
            ("port", "2222".into()),
            ("protocol", "ssh".into()),
            ("transport", "tunneled".into()),
            ("tunnel_group", "dc1".into()),
            ("readiness", "off".into()),
            ("max_session_minutes", "90".into()),
            ("group", "ops".into()),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let service = broker
        .store()
        .service_by_name("ops-box")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(service.max_session_secs, 5400);
    assert_eq!(service.allowed_groups, ["ops"]);
    let edit = broker
        .get(&format!("/admin/services/{}", service.id), Some(&bob))
        .await;
    assert_eq!(edit.status, StatusCode::OK);
    assert!(edit.body.contains("value=\"ops-box\""), "{}", edit.body);

    let reply = post(
        "/admin/tunnels",
        vec![
            ("name", "dc9".into()),
            ("address", "tunnel9.example:7443".into()),
            ("group", "dc9".into()),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let first_token = reply.body.split("<pre id=\"new-token\">").nth(1).unwrap();
    let first_token = first_token.split('<').next().unwrap().to_owned();
    assert!(first_token.starts_with("sk-"), "{first_token}");
    let reply = post("/admin/tunnels/rotate", vec![("server", "dc9".into())]).await;
    let second_token = reply.body.split("<pre id=\"new-token\">").nth(1).unwrap();
    let second_token = second_token.split('<').next().unwrap().to_owned();
    assert_ne!(first_token, second_token);
    let old = portcullis_broker::store::TokenHash::of(first_token.as_bytes());
    assert!(
        broker
            .store()
            .tunnel_server_by_token_hash(&old)
            .await
            .unwrap()
            .is_none()
    );

    let reply = post("/admin/users/disable", vec![("user", "carol".into())]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    // An administrator cannot disable or remove themselves.
    let reply = post("/admin/users/disable", vec![("user", "bob".into())]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    for kind in [
        "admin.group.added",
        "admin.user.added",
        "admin.service.added",
        "admin.tunnel_server.added",
        "admin.tunnel_server.token_rotated",
        "admin.user.disabled",
    ] {
        let events = audit(&broker, kind).await;
        assert_eq!(events.len(), 1, "{kind}");
        assert_eq!(events[0].event.actor.as_deref(), Some("bob"), "{kind}");
        // Neither password nor token in any event.
        let text = serde_json::to_string(&events[0]).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("sk-"), "{text}");
    }
    let disabled = &audit(&broker, "admin.user.disabled").await[0];
    assert_eq!(disabled.event.username.as_deref(), Some("carol"));

    // The audit page: newest first, filtered by administrator and event.
    let page = broker
        .get("/admin/audit?actor=bob&event=admin.user.added", Some(&bob))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.body.matches("data-kind=\"admin.user.added\"").count(),
        1
    );
    assert!(!page.body.contains("data-kind=\"admin.group.added\""));
    let all = broker.get("/admin/audit?actor=bob", Some(&bob)).await.body;
    let added = all.find("data-kind=\"admin.user.added\"").unwrap();
    let disabled = all.find("data-kind=\"admin.user.disabled\"").unwrap();
    assert!(disabled < added, "newest first");
    let bad = broker.get("/admin/audit?from=yesterday", Some(&bob)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not a date"), "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_is_paginated_newest_first() {
    let (broker, _world) = broker_with_admins().await;
    let bob = broker.login("bob", PASSWORD).await;
    for n in 0..120 {
        broker.clock.advance(Duration::from_millis(10));
        broker
            .store()
            .audit(portcullis_broker::store::AuditEvent {
                at: broker.clock.now(),
                kind: "login.failed".into(),
                username: Some(format!("guess-{n:03}")),
                service: None,
                source_ip: None,
                actor: None,
                detail: String::new(),
            })
            .await
            .unwrap();
    }
    let first = broker
        .get("/admin/audit?event=login.failed", Some(&bob))
        .await
        .body;
    assert_eq!(first.matches("data-kind=\"login.failed\"").count(), 50);
    assert!(first.contains("guess-119") && !first.contains("guess-069"));
    let older = hidden_link(&first, "older");
    let second = broker.get(&older, Some(&bob)).await.body;
    assert!(second.contains("guess-069") && second.contains("guess-020"));
    assert!(!second.contains("guess-070"));
    let third = broker
        .get(&hidden_link(&second, "older"), Some(&bob))
        .await
        .body;
    assert_eq!(third.matches("data-kind=\"login.failed\"").count(), 20);
    assert!(!third.contains("id=\"older\""));
    assert!(third.contains("id=\"newest\""));
}

/// The `href` of the link with `id` (its `&amp;` unescaped).
fn hidden_link(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\" href=\"");
    let start = body.find(&marker).unwrap_or_else(|| panic!("no #{id}")) + marker.len();
    body[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// A live session of alice on `shell`, started by dc1.
async fn live_session(broker: &TestBroker, world: &World) -> TicketId {
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;
    world
        .dc1
        .redeem(
            broker,
            &launch.ticket,
            Some(&proof_for(&launch.secret, &launch.ticket)),
        )
        .await
        .notify
}

/// The sessions a control request of dc1 is told to end now.
async fn ends(broker: &TestBroker, world: &World) -> Vec<String> {
    let reply = world
        .dc1
        .control(broker, &json!({ "wait_ms": 0, "sessions": [] }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["end"]
        .as_array()
        .unwrap()
        .iter()
        .map(|end| end["session"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_connection_disabling_a_user_or_taking_a_grant_away_ends_live_sessions() {
    let (broker, world) = broker_with_admins().await;
    let bob = broker.login("bob", PASSWORD).await;
    let token = csrf(&broker, &bob).await;

    // The End button.
    let notify = live_session(&broker, &world).await;
    let reference = SessionRef::of(&notify).to_hex();
    let page = broker.get("/admin/connections", Some(&bob)).await.body;
    assert!(
        page.contains(&format!("data-session=\"{reference}\" data-state=\"")),
        "{page}"
    );
    let json = broker
        .get("/admin/connections.json", Some(&bob))
        .await
        .json();
    assert_eq!(json[0]["session"], reference.as_str());
    let reply = form(
        &broker,
        "/admin/connections/end",
        &bob.cookie(),
        &[("csrf", &token), ("session", &reference)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        ends(&broker, &world).await,
        std::slice::from_ref(&reference)
    );
    let ended = &audit(&broker, "admin.connection.ended").await[0];
    assert_eq!(ended.event.actor.as_deref(), Some("bob"));
    assert_eq!(ended.event.username.as_deref(), Some("alice"));
    assert_eq!(detail(ended)["session"], &reference[..8]);
    // Twice: refused on the page.
    let again = form(
        &broker,
        "/admin/connections/end",
        &bob.cookie(),
        &[("csrf", &token), ("session", &reference)],
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    world.dc1.stop(&broker, &notify, 1, 1).await;

    // Taking the grant away: the service's live sessions end; the unredeemed tunnel ticket
    // of another launch is cancelled.
    let notify = live_session(&broker, &world).await;
    let alice = broker.login("alice", PASSWORD).await;
    let pending = broker
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;
    broker.clock.advance(Duration::from_secs(3));
    let shell = broker
        .store()
        .service_by_id(world.shell)
        .await
        .unwrap()
        .unwrap();
    let target_port = shell.port.to_string();
    let reply = form(
        &broker,
        &format!("/admin/services/{}", world.shell),
        &bob.cookie(),
        &[
            ("csrf", &token),
            ("name", "shell"),
            ("host", "127.0.0.1"),
            ("port", &target_port),
            ("protocol", "ssh"),
            ("transport", "tunneled"),
            ("tunnel_group", "dc1"),
            ("readiness", "tcp"),
            ("max_session_minutes", "60"),
            ("group", "admins"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(reply.header("location").unwrap().contains("sessions=1"));
    assert_eq!(
        ends(&broker, &world).await,
        [SessionRef::of(&notify).to_hex()]
    );
    let redeem = world
        .dc1
        .start(
            &broker,
            &pending.ticket,
            Some(&proof_for(&pending.secret, &pending.ticket)),
        )
        .await;
    assert_eq!(
        redeem.status,
        StatusCode::FORBIDDEN,
        "the tunnel ticket is cancelled"
    );
    world.dc1.stop(&broker, &notify, 1, 1).await;

    // Disabling: every live session of the user ends, and their tickets are cancelled.
    // (The service is the administrators' now: alice joins them to use it again.)
    broker.store().add_member("admins", "alice").await.unwrap();
    let notify = live_session(&broker, &world).await;
    let launch = broker.connect(&alice, world.shell).await;
    broker.clock.advance(Duration::from_secs(3));
    let reply = form(
        &broker,
        "/admin/users/disable",
        &bob.cookie(),
        &[("csrf", &token), ("user", "alice")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        ends(&broker, &world).await,
        [SessionRef::of(&notify).to_hex()]
    );
    let disabled = &audit(&broker, "admin.user.disabled").await[0];
    assert_eq!(detail(disabled)["sessions_ended"], 1);
    assert_eq!(detail(disabled)["client_tickets_cancelled"], 1);
    let refusal = broker
        .refusal(
            launch.ticket().expose(),
            serde_json::to_vec(&Launcher::portcullis().request(&launch.url)).unwrap(),
        )
        .await;
    assert!(
        refusal.message.contains("Ticket not found"),
        "{}",
        refusal.message
    );
}

/// Names made to break out of HTML, in every table of the admin pages and in the audit
/// log: always escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_escaped_on_every_admin_page() {
    let (broker, world) = broker_with_admins().await;
    let evil = "<script>alert(\"x\")</script>&' onmouseover='y";
    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;' onmouseover='y";
    broker.add_user(&format!("{evil} user"), &[evil]).await;
    let mut service = crate::support::broker::tunneled_service(
        &format!("{evil} service"),
        world.target.port,
        "dc1",
        &[evil],
    );
    service.host = "127.0.0.1".to_owned();
    broker.add_service(service).await;
    broker
        .store()
        .add_tunnel_server(
            portcullis_broker::store::NewTunnelServer {
                name: format!("{evil} server"),
                public_address: "tunnel.example:7443".to_owned(),
                token_hash: portcullis_broker::store::TokenHash::of(b"sk-evil"),
                legacy: true,
                group: evil.to_owned(),
            },
            broker.clock.now(),
        )
        .await
        .unwrap();
    broker
        .store()
        .audit(portcullis_broker::store::AuditEvent {
            at: broker.clock.now(),
            kind: "login.failed".into(),
            username: Some(evil.to_owned()),
            service: None,
            source_ip: None,
            actor: None,
            detail: json!({ "note": evil }).to_string(),
        })
        .await
        .unwrap();
    let bob = broker.login("bob", PASSWORD).await;
    let id = broker
        .store()
        .service_by_name(&format!("{evil} service"))
        .await
        .unwrap()
        .unwrap()
        .id;
    for path in [
        "/admin/users".to_owned(),
        "/admin/services".to_owned(),
        format!("/admin/services/{id}"),
        "/admin/tunnels".to_owned(),
        "/admin/audit".to_owned(),
        format!(
            "/admin/audit?user={}",
            url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        ),
    ] {
        let page = broker.get(&path, Some(&bob)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_page(&page);
        assert!(!page.body.contains("<script>"), "{path}: {}", page.body);
        assert!(!page.body.contains("\"x\""), "{path}");
        assert!(page.body.contains(escaped), "{path}: {}", page.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_sign_in_is_set_from_its_page_and_a_stored_password_never_shows() {
    let (broker, _world) = broker_with_admins().await;
    let bob = broker.login("bob", PASSWORD).await;
    let token = csrf(&broker, &bob).await;
    let mut desktop = crate::support::broker::tunneled_service("desktop", 3389, "dc1", &["staff"]);
    desktop.protocol = portcullis_broker::model::Protocol::Rdp;
    let id = broker.add_service(desktop).await;
    let path = format!("/admin/services/{id}/credentials");
    let reply = form(
        &broker,
        &path,
        &bob.cookie(),
        &[
            ("csrf", &token),
            ("mode", "stored"),
            ("username", "svc-desk"),
            ("password", "Desk-Passw0rd-stored"),
            ("domain", "CORP"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let stored = broker
        .store()
        .service_credentials(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.username.as_deref(), Some("svc-desk"));
    let sealed = stored.secret.clone().unwrap();
    // The page shows the account, never the password; an empty password keeps it.
    let page = broker
        .get(&format!("/admin/services/{id}"), Some(&bob))
        .await
        .body;
    assert!(page.contains("value=\"svc-desk\"") && !page.contains("Desk-Passw0rd"));
    let reply = form(
        &broker,
        &path,
        &bob.cookie(),
        &[
            ("csrf", &token),
            ("mode", "stored"),
            ("username", "svc-desk2"),
            ("password", ""),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let kept = broker
        .store()
        .service_credentials(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.secret, Some(sealed));
    // A mode the protocol cannot use is refused with the reason.
    let reply = form(
        &broker,
        &path,
        &bob.cookie(),
        &[("csrf", &token), ("mode", "ssh-certificate")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("cannot use"), "{}", reply.body);
    let events = audit(&broker, "admin.service.credentials").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.actor.as_deref(), Some("bob"));
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("Desk-Passw0rd")
    );
}
