//! Credentials per service (docs/protocol.md §6.8) over real HTTPS: pass-through from the
//! sign-in to the launcher's params and nowhere else in clear, stored passwords under the
//! credential key and its rotation, and SSH certificates for the launcher's own key.

use portcullis_broker::credentials::{self, KeySource, seal_stored};
use portcullis_broker::model::{CredentialMode, Protocol};
use portcullis_broker::store::{NewService, ServiceCredentials, ServiceId};
use portcullis_proto::ssh::Ed25519PublicKey;
use serde_json::Value;

use crate::support::broker::{
    Launcher, PASSWORD, Target, TestBroker, direct_service, tunneled_service,
};

/// A direct RDP service `name` on `port`, granted to `staff`.
fn rdp_service(name: &str, port: u16) -> NewService {
    NewService {
        protocol: Protocol::Rdp,
        ..direct_service(name, port, &["staff"])
    }
}

/// The newest `ticket.exchanged` audit event's detail.
async fn last_exchange_detail(broker: &TestBroker) -> Value {
    let events = broker.store().audit_tail(50).await.unwrap();
    let event = events
        .iter()
        .rev()
        .find(|event| event.event.kind == "ticket.exchanged")
        .expect("an exchange was audited");
    serde_json::from_str(&event.event.detail).unwrap()
}

/// The SQLite database, its WAL and a backup, byte for byte: none may hold `needle`.
async fn assert_not_in_database(broker: &TestBroker, needle: &[u8], what: &str) {
    sqlx::any::install_default_drivers();
    backup(broker).await;
    for entry in std::fs::read_dir(broker.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("portcullis.db") || name == "backup.db" {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "the {what} is in {name}"
            );
        }
    }
}

/// How many login sessions and client tickets hold a pass-through box (SQLite).
async fn boxes(broker: &TestBroker) -> (i64, i64) {
    let url = format!(
        "sqlite://{}",
        broker.data_dir().join("portcullis.db").display()
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let mut count = async |sql: &str| -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    };
    let sessions = count(
        "SELECT COUNT(*) FROM login_sessions WHERE credential_box IS NOT NULL \
         OR credential_share IS NOT NULL",
    )
    .await;
    let tickets =
        count("SELECT COUNT(*) FROM client_tickets WHERE credential_box IS NOT NULL").await;
    (sessions, tickets)
}

/// A `VACUUM INTO` backup of the database, `backup.db` in the data directory.
async fn backup(broker: &TestBroker) {
    let backup = broker.data_dir().join("backup.db");
    let _ = std::fs::remove_file(&backup);
    let url = format!(
        "sqlite://{}",
        broker.data_dir().join("portcullis.db").display()
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(&format!("VACUUM INTO '{}'", backup.display()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Every file of the broker's data directory, and a `VACUUM INTO` backup, byte for byte:
/// none may hold `needle`.
async fn assert_not_at_rest(broker: &TestBroker, needle: &[u8], what: &str) {
    backup(broker).await;
    let mut scanned = 0;
    for entry in std::fs::read_dir(broker.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "the {what} is in {}",
                path.display()
            );
            scanned += 1;
        }
    }
    assert!(
        scanned >= 3,
        "the database, its WAL and the backup were scanned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_reaches_the_launcher_and_rests_nowhere_in_clear() {
    sqlx::any::install_default_drivers();
    pass_through_flow(TestBroker::start().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_on_postgres() {
    let url = crate::support::postgres_url().await;
    pass_through_flow(TestBroker::builder().database(&url).start().await, false).await;
}

/// Pass-through from sign-in to the launcher, a replayed link, sign-out; with `files`,
/// the SQLite files and a backup scanned for the password and the scrambler.
async fn pass_through_flow(broker: TestBroker, files: bool) {
    let target = Target::start().await;
    broker.add_user("alice", &["staff"]).await;
    let desktop = broker
        .add_service(rdp_service("Desktop", target.port))
        .await;
    // Signed in before the service passes passwords through: none kept.
    let early = broker.login("alice", PASSWORD).await;
    broker
        .store()
        .set_service_credentials(
            "Desktop",
            &ServiceCredentials {
                domain: Some("CORP".into()),
                ..ServiceCredentials::mode(CredentialMode::PassThrough)
            },
        )
        .await
        .unwrap();
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();

    let launch = broker.connect(&alice, desktop).await;
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    let params = opened.params();
    assert_eq!(params["username"], "alice");
    assert_eq!(params["domain"], "CORP");
    assert_eq!(params["password"], PASSWORD);
    let detail = last_exchange_detail(&broker).await;
    assert_eq!(detail["credentials"], "pass-through");
    assert_eq!(detail["credential_sent"], true);

    // The link replayed: refused, nothing sent again.
    let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
    assert!(
        refusal.message.starts_with("Ticket not found"),
        "{refusal:?}"
    );

    // Nothing at rest holds the password or the launch link's scrambler.
    if files {
        assert_not_at_rest(&broker, PASSWORD.as_bytes(), "password").await;
        assert_not_at_rest(
            &broker,
            launch.url.scrambler().as_str().as_bytes(),
            "scrambler",
        )
        .await;
    }

    // A used ticket keeps no box.
    if files {
        assert_eq!(
            boxes(&broker).await,
            (1, 0),
            "(sessions, tickets) with a box"
        );
    }

    // A link issued before the sign-out yields no password after it.
    let pending = broker.connect(&alice, desktop).await;
    if files {
        assert_eq!(boxes(&broker).await, (1, 1));
    }
    let reply = broker
        .post_json("/api/logout", &serde_json::json!({}), Some(&alice))
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::OK);
    if files {
        assert_eq!(boxes(&broker).await, (0, 0), "sign-out erased both");
    }
    let after = launcher.exchange_verified(&broker, &pending.url).await;
    assert_eq!(after.params()["username"], "alice");
    assert!(
        after.params().get("password").is_none(),
        "{:?}",
        after.params()
    );
    assert_eq!(
        last_exchange_detail(&broker).await["credential_sent"],
        false
    );

    // The session signed in before pass-through was set has none to hand on.
    let launch = broker.connect(&early, desktop).await;
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    assert!(opened.params().get("password").is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_open_only_under_the_credential_key_and_survive_its_rotation() {
    let broker = TestBroker::start().await;
    let target = Target::start().await;
    broker.add_user("alice", &["staff"]).await;
    let desktop = broker
        .add_service(rdp_service("Desktop", target.port))
        .await;
    let stored_password = "Svc-Acc0unt!stapler-pencil";
    let sealed = seal_stored(&broker.state().credentials.key, desktop, stored_password).unwrap();
    assert!(
        !sealed
            .windows(8)
            .any(|window| window == &stored_password.as_bytes()[..8])
    );
    broker
        .store()
        .set_service_credentials(
            "Desktop",
            &ServiceCredentials {
                username: Some("svc-desk".into()),
                domain: Some("CORP".into()),
                secret: Some(sealed),
                ..ServiceCredentials::mode(CredentialMode::Stored)
            },
        )
        .await
        .unwrap();
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();
    let launch = broker.connect(&alice, desktop).await;
    let params = launcher.exchange_verified(&broker, &launch.url).await;
    assert_eq!(params.params()["username"], "svc-desk");
    assert_eq!(params.params()["password"], stored_password);
    assert_eq!(last_exchange_detail(&broker).await["credentials"], "stored");
    assert_not_at_rest(&broker, stored_password.as_bytes(), "stored password").await;

    // Rotation: every box re-sealed under a new key file, the old one kept.
    let dir = broker.data_dir().to_owned();
    let source = KeySource::File(credentials::key_path(&dir));
    let rotation = credentials::rotate(
        &dir,
        &broker.state().credentials.key,
        &source,
        broker.store(),
        broker.state().now(),
    )
    .await
    .unwrap();
    assert_eq!(rotation.resealed, 1);
    assert!(rotation.previous.as_ref().unwrap().exists());
    // This broker still holds the old key: the box no longer opens for it.
    let launch = broker.connect(&alice, desktop).await;
    let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
    assert_eq!(
        refusal.message,
        "The broker could not complete the request; try again"
    );
    // A broker started on the new key hands the password on.
    let restarted = TestBroker::builder().sibling_of(&broker).start().await;
    assert_ne!(
        restarted.state().credentials.key.id(),
        broker.state().credentials.key.id()
    );
    let alice = restarted.login("alice", PASSWORD).await;
    let launch = restarted.connect(&alice, desktop).await;
    let opened = launcher.exchange_verified(&restarted, &launch.url).await;
    assert_eq!(opened.params()["password"], stored_password);
    restarted.shutdown().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_certificates_are_for_the_launchers_key_its_principal_and_minutes() {
    let broker = TestBroker::builder().ssh_ca().start().await;
    let target = Target::start().await;
    broker.add_user("alice", &["staff"]).await;
    let shell = broker
        .add_service(NewService {
            protocol: Protocol::Ssh,
            ..direct_service("Shell", target.port, &["staff"])
        })
        .await;
    broker
        .store()
        .set_service_credentials(
            "Shell",
            &ServiceCredentials {
                ssh_principal: Some("corp-{username}".into()),
                ..ServiceCredentials::mode(CredentialMode::SshCertificate)
            },
        )
        .await
        .unwrap();
    let alice = broker.login("alice", PASSWORD).await;
    let key = ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]);
    let line = Ed25519PublicKey::from_bytes(key.public.0).to_openssh();
    let launcher = Launcher::with_ssh_key(&line);
    let launch = broker.connect(&alice, shell).await;
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    assert_eq!(opened.params()["username"], "corp-alice");
    let certificate =
        ssh_key::Certificate::from_openssh(opened.params()["ssh_certificate"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        *certificate.public_key(),
        ssh_key::public::KeyData::Ed25519(key.public)
    );
    assert_eq!(certificate.valid_principals(), ["corp-alice".to_owned()]);
    let now = u64::try_from(broker.state().now() / 1000).unwrap();
    assert_eq!(certificate.valid_after(), now - 60);
    assert_eq!(certificate.valid_before(), now + 300);
    assert_eq!(
        certificate
            .critical_options()
            .get("source-address")
            .map(String::as_str),
        Some("127.0.0.1")
    );
    let ca = broker.state().credentials.ssh_ca.as_ref().unwrap();
    let ca_key = ssh_key::PublicKey::from_openssh(&ca.public_line()).unwrap();
    certificate
        .validate_at(now, [&ca_key.fingerprint(Default::default())])
        .unwrap();
    // The CA's private key lives in its file only: not in the database, its WAL or a backup.
    let ca_file = std::fs::read_to_string(broker.data_dir().join("ssh-ca")).unwrap();
    for line in ca_file.lines().filter(|line| !line.starts_with("-----")) {
        assert_not_in_database(&broker, line.as_bytes(), "SSH CA private key").await;
    }
    let detail = last_exchange_detail(&broker).await;
    assert_eq!(detail["credentials"], "ssh-certificate");
    assert_eq!(detail["credential_sent"], true);

    // A launcher without the capability (OpenUDS 5) gets the principal only.
    let launch = broker.connect(&alice, shell).await;
    let opened = Launcher::openuds5()
        .exchange_verified(&broker, &launch.url)
        .await;
    assert_eq!(opened.params()["username"], "corp-alice");
    assert!(opened.params().get("ssh_certificate").is_none());
    assert_eq!(
        last_exchange_detail(&broker).await["credential_sent"],
        false
    );

    // A malformed key is an invalid request, not a certificate.
    let launch = broker.connect(&alice, shell).await;
    let refusal = Launcher::with_ssh_key("ssh-rsa AAAAB3NzaC1yc2E")
        .exchange(&broker, &launch.url)
        .await
        .err()
        .unwrap();
    assert!(
        refusal.message.starts_with("Invalid request"),
        "{refusal:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_must_suit_the_protocol_and_tunneled_certificates_name_no_source() {
    let broker = TestBroker::builder().ssh_ca().start().await;
    let target = Target::start().await;
    broker.add_user("alice", &["staff"]).await;
    broker
        .add_service(direct_service("Echo", target.port, &["staff"]))
        .await;
    for mode in [CredentialMode::PassThrough, CredentialMode::SshCertificate] {
        let error = broker
            .store()
            .set_service_credentials("Echo", &ServiceCredentials::mode(mode))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("cannot use"), "{error}");
    }
    // A stored mode without its password is refused too.
    let error = broker
        .store()
        .set_service_credentials(
            "Echo",
            &ServiceCredentials {
                username: Some("x".into()),
                ..ServiceCredentials::mode(CredentialMode::Stored)
            },
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("stored mode"), "{error}");

    let tunnel = broker.add_tunnel_server("tunnel-dc1", "dc1", false).await;
    let shell: ServiceId = broker
        .add_service(tunneled_service("Shell", target.port, "dc1", &["staff"]))
        .await;
    broker
        .store()
        .set_service_credentials(
            "Shell",
            &ServiceCredentials::mode(CredentialMode::SshCertificate),
        )
        .await
        .unwrap();
    let alice = broker.login("alice", PASSWORD).await;
    let key = ssh_key::private::Ed25519Keypair::from_seed(&[4; 32]);
    let launcher = Launcher::with_ssh_key(&Ed25519PublicKey::from_bytes(key.public.0).to_openssh());
    let launch = broker.connect(&alice, shell).await;
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    let certificate =
        ssh_key::Certificate::from_openssh(opened.params()["ssh_certificate"].as_str().unwrap())
            .unwrap();
    // The target sees the tunnel server's address, which the broker does not know.
    assert!(certificate.critical_options().is_empty());
    assert_eq!(certificate.valid_principals(), ["alice".to_owned()]);
    drop(tunnel);
    broker.shutdown().await;
}
