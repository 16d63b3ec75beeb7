//! Nothing the broker logs, at any level, holds a secret: this test captures every log
//! line of the process at TRACE level (the broker's `tracing` events from every task and
//! thread, and `log` records through the `log` bridge, as `portcullis`'s own logging
//! set-up installs it), runs a whole flow with refusals over real HTTPS, and searches the
//! capture for every secret the flow handled.
//!
//! Alone in its binary: it installs the process-wide subscriber.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use crate::support::broker::{
    Launcher, PASSWORD, TestBroker, assert_access_denied, direct_service, proof_for, wrong_proof,
};
use portcullis_broker::credentials::seal_stored;
use portcullis_broker::model::{CredentialMode, Protocol};
use portcullis_broker::store::{NewService, ServiceCredentials, ServiceId};
use portcullis_proto::api::ErrorBody;
use portcullis_proto::{SharedSecret, TicketId, b64};
use reqwest::StatusCode;
use serde_json::json;
use tracing::Level;

/// The wrong password the flow tries.
const WRONG_PASSWORD: &str = "Guess-Passw0rd!wrong-battery";

/// Everything logged in this process.
fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        // `try_init` sets the global default and installs the `log` bridge, like
        // `portcullis`'s logging set-up (crates/cli/src/logging.rs).
        tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init()
            .expect("the only subscriber of this process");
        buffer
    })
}

/// A writer into the capture.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Adds a whole ticket id to the secrets.
fn ticket(label: &str, ticket: &TicketId, secrets: &mut Vec<(String, String)>) {
    secrets.push((label.to_owned(), ticket.expose().to_owned()));
}

/// Every form in which a shared secret could be written out.
fn secret_forms(secret: &SharedSecret) -> Vec<String> {
    let hex = secret.to_hex().to_string();
    // Without the padding, which catches the padded and the unpadded form alike.
    let standard = b64::encode(secret.expose())
        .trim_end_matches('=')
        .to_owned();
    let url_safe = standard.replace('+', "-").replace('/', "_");
    vec![hex.to_uppercase(), hex, standard, url_safe]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let log = capture();
    // (label, secret) pairs the log must not contain.
    let mut secrets: Vec<(String, String)> = vec![
        ("password".into(), PASSWORD.into()),
        ("wrong password".into(), WRONG_PASSWORD.into()),
    ];

    let broker = TestBroker::builder().ssh_ca().start().await;
    let world = broker.world().await;
    // Credentials: the portal password passed through to an RDP service, a stored one, and
    // SSH certificates (the CA's private key must not be logged either).
    let stored_password = "Stored-Svc-Passw0rd!paperclip";
    secrets.push(("stored password".into(), stored_password.into()));
    let ca_file = std::fs::read_to_string(broker.data_dir().join("ssh-ca")).unwrap();
    for line in ca_file.lines().filter(|line| !line.starts_with("-----")) {
        secrets.push(("SSH CA private key".into(), line.to_owned()));
    }
    let (rdp, stored_rdp, ssh) =
        credential_services(&broker, world.target.port, stored_password).await;
    secrets.push(("dc1 token".into(), world.dc1.token.clone()));
    secrets.push(("legacy token".into(), world.legacy.token.clone()));
    secrets.push(("dc2 token".into(), world.dc2.token.clone()));

    // The portal: a failed and a successful sign-in.
    let reply = broker.try_login("alice", WRONG_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let alice = broker.login("alice", PASSWORD).await;
    secrets.push(("session cookie".into(), alice.token.clone()));

    // A direct service: refusals first (they leave the ticket valid), then the exchange.
    let launcher = Launcher::portcullis();
    let direct = broker.connect(&alice, world.desk).await;
    ticket("direct client ticket", direct.ticket(), &mut secrets);
    let mut wrong = launcher.request(&direct.url);
    wrong.scrambler = "WrongScrambler".into();
    launcher
        .send(&broker, direct.ticket(), &wrong)
        .await
        .err()
        .unwrap();
    let mut old = launcher.request(&direct.url);
    old.version = "4.0.0".into();
    launcher
        .send(&broker, direct.ticket(), &old)
        .await
        .err()
        .unwrap();
    let refusal = broker
        .refusal(direct.ticket().expose(), b"{not json".to_vec())
        .await;
    assert!(!refusal.is_retryable);
    let opened = launcher.exchange_verified(&broker, &direct.url).await;
    secrets.extend(
        secret_forms(&opened.secret)
            .into_iter()
            .map(|form| ("direct shared secret".to_owned(), form)),
    );
    launcher.exchange(&broker, &direct.url).await.err().unwrap();

    // Credentials of every mode reach the launcher (and only the launcher).
    for (service, expected) in [(rdp, PASSWORD), (stored_rdp, stored_password)] {
        let launch = broker.connect(&alice, service).await;
        ticket("credential client ticket", launch.ticket(), &mut secrets);
        let opened = launcher.exchange_verified(&broker, &launch.url).await;
        assert_eq!(opened.params()["password"], expected);
    }
    let key = ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]);
    let line = portcullis_proto::ssh::Ed25519PublicKey::from_bytes(key.public.0).to_openssh();
    let launch = broker.connect(&alice, ssh).await;
    let opened = Launcher::with_ssh_key(&line)
        .exchange_verified(&broker, &launch.url)
        .await;
    let certificate = opened.params()["ssh_certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push((
        "SSH certificate".into(),
        certificate.split(' ').nth(1).unwrap().to_owned(),
    ));

    // A tunneled service: exchange, a wrong proof, the right one, stop, a second stop.
    let tunneled = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    ticket(
        "tunneled client ticket",
        tunneled.launch.ticket(),
        &mut secrets,
    );
    ticket("tunnel ticket", &tunneled.ticket, &mut secrets);
    secrets.extend(
        secret_forms(&tunneled.secret)
            .into_iter()
            .map(|form| ("tunnel secret".to_owned(), form)),
    );
    secrets.extend(
        secret_forms(&tunneled.kem_secret)
            .into_iter()
            .map(|form| ("tunneled KEM shared secret".to_owned(), form)),
    );
    assert_access_denied(
        &world
            .dc1
            .start(
                &broker,
                &tunneled.ticket,
                Some(&wrong_proof(&tunneled.ticket)),
            )
            .await,
    );
    assert_access_denied(&world.dc1.start(&broker, &tunneled.ticket, None).await);
    let proof = proof_for(&tunneled.secret, &tunneled.ticket);
    let start = world
        .dc1
        .redeem(&broker, &tunneled.ticket, Some(&proof))
        .await;
    ticket("notify ticket", &start.notify, &mut secrets);
    assert_access_denied(
        &world
            .dc1
            .start(&broker, &tunneled.ticket, Some(&proof))
            .await,
    );
    assert_eq!(
        world
            .dc1
            .stop(&broker, &start.notify, 100, 200)
            .await
            .json(),
        json!({})
    );
    assert_access_denied(&world.dc1.stop(&broker, &start.notify, 100, 200).await);

    // The tunnel-server API's other refusals.
    let body = world.dc1.start_body(&tunneled.ticket, Some(&proof));
    assert_access_denied(&world.dc2.post(&broker, body.clone()).await);
    assert_access_denied(&broker.tunnel_api(Some("Bearer sk-unknown"), body).await);
    assert_access_denied(&world.dc1.post(&broker, b"{\"ticket\": 1}".to_vec()).await);

    // An OpenUDS 5 launcher through the legacy tunnel server.
    let legacy_launch = broker.connect(&alice, world.old_app).await;
    ticket("legacy client ticket", legacy_launch.ticket(), &mut secrets);
    let openuds5 = Launcher::openuds5();
    let legacy = openuds5
        .exchange_verified(&broker, &legacy_launch.url)
        .await;
    let legacy_ticket = legacy.tunnel_ticket();
    ticket("legacy tunnel ticket", &legacy_ticket, &mut secrets);
    secrets.extend(
        secret_forms(&legacy.secret)
            .into_iter()
            .map(|form| ("legacy shared secret".to_owned(), form)),
    );
    let legacy_start = world.legacy.redeem(&broker, &legacy_ticket, None).await;
    ticket("legacy notify ticket", &legacy_start.notify, &mut secrets);

    // Sign out, and an internal error: the database goes away under a request.
    let reply = broker
        .post_json("/api/logout", &json!({}), Some(&alice))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let last = broker.login("alice", PASSWORD).await;
    secrets.push(("second session cookie".into(), last.token.clone()));
    let doomed = broker.connect(&last, world.desk).await;
    ticket("doomed client ticket", doomed.ticket(), &mut secrets);
    broker.store().close().await;
    let refusal = launcher.exchange(&broker, &doomed.url).await.err().unwrap();
    assert_eq!(
        refusal,
        ErrorBody::fatal("The broker could not complete the request; try again")
    );
    broker.shutdown().await;

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    // The capture holds the broker's own events, from the request handlers' tasks too.
    for expected in [
        "broker listening",
        "ticket exchange refused",
        "tunnel API request refused",
        "ticket exchange failed",
        "route=/uds/rest/client/{ticket}/ticket",
    ] {
        assert!(text.contains(expected), "{expected:?} was not logged");
    }
    let mut leaks = Vec::new();
    for (label, secret) in &secrets {
        if let Some(at) = text.find(secret.as_str()) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            leaks.push(format!(
                "{label}: {}",
                text[line_start..line_end].replace(secret.as_str(), "<SECRET>")
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the log ({} bytes captured):\n{}",
        text.len(),
        leaks.join("\n")
    );
}

/// An RDP service passing the portal password through, one with a stored password, and
/// an SSH service signing certificates, all granted to `staff`.
async fn credential_services(
    broker: &TestBroker,
    port: u16,
    stored_password: &str,
) -> (ServiceId, ServiceId, ServiceId) {
    let rdp = |name: &str, protocol| NewService {
        protocol,
        ..direct_service(name, port, &["staff"])
    };
    let pass_through = broker.add_service(rdp("rdp-pass", Protocol::Rdp)).await;
    let stored = broker.add_service(rdp("rdp-stored", Protocol::Rdp)).await;
    let ssh = broker.add_service(rdp("ssh-cert", Protocol::Ssh)).await;
    let store = broker.store();
    store
        .set_service_credentials(
            "rdp-pass",
            &ServiceCredentials::mode(CredentialMode::PassThrough),
        )
        .await
        .unwrap();
    let sealed = seal_stored(&broker.state().credentials.key, stored, stored_password).unwrap();
    store
        .set_service_credentials(
            "rdp-stored",
            &ServiceCredentials {
                username: Some("svc".into()),
                secret: Some(sealed),
                ..ServiceCredentials::mode(CredentialMode::Stored)
            },
        )
        .await
        .unwrap();
    store
        .set_service_credentials(
            "ssh-cert",
            &ServiceCredentials::mode(CredentialMode::SshCertificate),
        )
        .await
        .unwrap();
    (pass_through, stored, ssh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_tunnel_requests_is_not_a_log_line_each() {
    let log = capture();
    let broker = TestBroker::start().await;
    let lines = |from: usize| {
        let text = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&text[from..])
            .lines()
            .filter(|line| line.contains("tunnel API request"))
            .count()
    };
    let start = log
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .len();
    for _ in 0..1_000 {
        let reply = broker
            .tunnel_api(Some("Bearer sk-not-a-tunnel-server"), b"{}".to_vec())
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    // Other tests of this process may log refusals meanwhile; a line per refusal would be
    // a thousand.
    let logged = lines(start);
    assert!(logged < 50, "{logged} log lines for 1,000 refusals");
}
