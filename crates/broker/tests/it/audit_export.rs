//! The audit export (`[audit] export`): every event of a full run — sign-ins, a wrong
//! password, a connection through a tunnel server with its control channel and its end by
//! an administrator, the administrator's changes — exported as JSON lines, complete, each
//! in the documented schema, and none holding a secret; and the same events as RFC 5424
//! messages with structured data, parsed by a real rsyslog over UDP and over a datagram
//! socket.

use std::path::Path;
use std::time::Duration;

use portcullis_broker::config::AuditExport;
use portcullis_broker::store::AUDIT_KINDS;
use portcullis_proto::api::SessionRef;
use portcullis_testkit::Rsyslog;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http_portal::{form, hidden};
use crate::support::broker::{Launcher, PASSWORD, TestBroker, proof_for};

/// Waits until `condition` holds of rsyslog's output (at most 20 s).
async fn wait_for(rsyslog: &Rsyslog, what: &str, condition: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = rsyslog.messages();
        if condition(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rsyslog never got {what}; it has:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_rsyslog_parses_the_events_over_udp_and_its_socket() {
    let rsyslog = tokio::task::spawn_blocking(Rsyslog::start).await.unwrap();
    let udp = rsyslog.udp_addr();
    let broker = TestBroker::builder()
        .config(move |config| config.audit.export = Some(AuditExport::SyslogUdp(udp)))
        .start()
        .await;
    broker.world().await;
    broker.login("alice", PASSWORD).await;
    let text = wait_for(&rsyslog, "the login", |text| {
        text.contains("[portcullis@32473 event=\"login\"")
    })
    .await;
    let line = text
        .lines()
        .find(|line| line.contains("event=\"login\""))
        .unwrap();
    // facility.severity hostname app-name procid msgid structured-data message
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    assert_eq!(fields[0], "authpriv.notice", "{line}");
    assert_eq!(fields[2], "portcullis", "{line}");
    assert_eq!(fields[3], std::process::id().to_string(), "{line}");
    assert_eq!(fields[4], "audit", "{line}");
    assert!(fields[5].contains(" user=\"alice\" "), "{line}");
    let json_start = line.find("{\"schema\"").unwrap();
    let event: Value = serde_json::from_str(&line[json_start..]).unwrap();
    assert_eq!(event["event"], "login");
    assert_eq!(event["user"], "alice");

    // A datagram socket of the machine's syslog (here rsyslog's own, in place of /dev/log).
    let socket = rsyslog.socket_path().to_owned();
    let other = TestBroker::builder()
        .config(move |config| config.audit.export = Some(AuditExport::SyslogUnix(socket)))
        .start()
        .await;
    other.world().await;
    let refused = other.try_login("alice", "not-the-password").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let text = wait_for(&rsyslog, "the failed login", |text| {
        text.contains("event=\"login.failed\"")
    })
    .await;
    let line = text
        .lines()
        .find(|line| line.contains("event=\"login.failed\""))
        .unwrap();
    assert!(line.starts_with("authpriv.warning "), "{line}");
    assert!(!text.contains("not-the-password"), "{text}");
}

/// Every value of a run that must never reach the audit log.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: impl Into<String>) {
        let value = value.into();
        assert!(value.len() >= 8, "{what} is too short to look for");
        self.0.push((what.to_owned(), value));
    }

    #[track_caller]
    fn assert_absent(&self, text: &str, source: &str) {
        for (what, value) in &self.0 {
            assert!(!text.contains(value.as_str()), "{source} holds {what}");
        }
    }
}

/// The value of `<pre id="new-token">` of a page.
fn new_token(body: &str) -> String {
    body.split("<pre id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_exports_every_event_as_json_lines_and_none_holds_a_secret() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("audit.jsonl");
    let path = file.clone();
    let broker = TestBroker::builder()
        .config(move |config| {
            config.audit.export = Some(AuditExport::Jsonl(path));
            config.admin.groups = vec!["admins".to_owned()];
        })
        .start()
        .await;
    let world = broker.world().await;
    let mut secrets = Secrets(Vec::new());
    secrets.add("the test users' password", PASSWORD);
    for server in [&world.dc1, &world.dc2, &world.legacy] {
        secrets.add("a tunnel server's token", server.token.clone());
    }

    // A wrong password, a sign-in, a tunneled connection to its tunnel server.
    broker.try_login("alice", "Wr0ng-guess-password").await;
    secrets.add("a wrong password", "Wr0ng-guess-password");
    let alice = broker.login("alice", PASSWORD).await;
    secrets.add("alice's session token", alice.token.clone());
    let launcher = Launcher::portcullis();
    let launch = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    secrets.add("the client ticket", launch.launch.ticket().expose());
    secrets.add("the scrambler", launch.launch.url.scrambler().as_str());
    secrets.add("the tunnel ticket", launch.ticket.expose());
    secrets.add("the tunnel secret", launch.secret.to_hex().as_str());
    secrets.add("the KEM secret", launch.kem_secret.to_hex().as_str());
    let start = world
        .dc1
        .redeem(
            &broker,
            &launch.ticket,
            Some(&proof_for(&launch.secret, &launch.ticket)),
        )
        .await;
    secrets.add("the notify ticket", start.notify.expose());
    let report = json!({ "wait_ms": 0, "sessions": [
        { "session": SessionRef::of(&start.notify).to_hex(), "sent": 100, "recv": 200 }
    ]});
    world.dc1.control(&broker, &report).await;

    // The administrator: a user with a password, a tunnel server with its token (then a
    // new one), a stored service password, the connection ended, alice disabled.
    let bob = broker.login("bob", PASSWORD).await;
    secrets.add("bob's session token", bob.token.clone());
    let csrf = hidden(&broker.get("/admin/users", Some(&bob)).await.body, "csrf");
    secrets.add("bob's CSRF token", csrf.clone());
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let (cookie, csrf, broker) = (bob.cookie(), csrf.clone(), &broker);
        async move {
            let mut all: Vec<(&str, &str)> = fields
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            all.push(("csrf", &csrf));
            form(broker, path, &cookie, &all).await
        }
    };
    post(
        "/admin/users",
        vec![
            ("username", "carol".into()),
            ("password", "Carol-first-passw0rd".into()),
            ("group", "staff".into()),
        ],
    )
    .await;
    secrets.add("carol's password", "Carol-first-passw0rd");
    post(
        "/admin/users/password",
        vec![
            ("user", "carol".into()),
            ("password", "Carol-second-passw0rd".into()),
        ],
    )
    .await;
    secrets.add("carol's new password", "Carol-second-passw0rd");
    let added = post(
        "/admin/tunnels",
        vec![
            ("name", "dc7".into()),
            ("address", "tunnel7.example:7443".into()),
            ("group", "dc7".into()),
        ],
    )
    .await;
    secrets.add("a new tunnel token", new_token(&added.body));
    let rotated = post("/admin/tunnels/rotate", vec![("server", "dc7".into())]).await;
    secrets.add("a rotated tunnel token", new_token(&rotated.body));
    let mut desktop = crate::support::broker::tunneled_service("desk-rdp", 3389, "dc1", &["staff"]);
    desktop.protocol = portcullis_broker::model::Protocol::Rdp;
    let desk = broker.add_service(desktop).await;
    form(
        &broker,
        &format!("/admin/services/{desk}/credentials"),
        &bob.cookie(),
        &[
            ("csrf", &csrf),
            ("mode", "stored"),
            ("username", "svc-account"),
            ("password", "Stored-service-passw0rd"),
        ],
    )
    .await;
    secrets.add("a stored service password", "Stored-service-passw0rd");
    post(
        "/admin/connections/end",
        vec![("session", SessionRef::of(&start.notify).to_hex())],
    )
    .await;
    world.dc1.control(&broker, &report).await;
    world.dc1.stop(&broker, &start.notify, 150, 250).await;
    post("/admin/users/disable", vec![("user", "alice".into())]).await;

    let stored = broker.store().audit_since(0, 0, 10_000).await.unwrap();
    broker.shutdown().await;
    let exported = std::fs::read_to_string(&file).unwrap();
    check_private(&file);

    // Complete: every committed event, once, in order, in the documented schema.
    let lines: Vec<Value> = exported
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<i64> = lines
        .iter()
        .map(|line| line["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = stored.iter().map(|event| event.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, expected,
        "the export has exactly the database's events"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for line in &lines {
        assert_eq!(line["schema"], "portcullis.audit.v1");
        let kind = line["event"].as_str().unwrap();
        assert!(
            AUDIT_KINDS.contains(&kind),
            "{kind} is not in the documented list"
        );
        assert!(line["detail"].is_object(), "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        kinds.insert(kind.to_owned());
    }
    for kind in [
        "login",
        "login.failed",
        "ticket.issued",
        "ticket.exchanged",
        "tunnel.started",
        "tunnel.stopped",
        "admin.user.added",
        "admin.user.password_set",
        "admin.tunnel_server.added",
        "admin.tunnel_server.token_rotated",
        "admin.service.credentials",
        "admin.connection.ended",
        "admin.user.disabled",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the run: {kinds:?}");
    }
    // Nothing secret, in the export or in the database's own rows.
    secrets.assert_absent(&exported, "the jsonl export");
    secrets.assert_absent(&serde_json::to_string(&stored).unwrap(), "the audit table");
}

fn check_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export file is private");
}
