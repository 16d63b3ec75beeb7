//! The broker under abuse (issue 7): invalid keys, cross-site requests, oversized names,
//! idle and excess connections, TLS key-exchange policy, login floods. Each test failed
//! on the code before its fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::broker::{Launcher, PASSWORD, TestBroker, assert_access_denied, metric, proof_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_tunnel_server_key_is_denied_and_consumes_nothing() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.shell).await;
    let opened = Launcher::portcullis()
        .exchange_verified(&broker, &launch.url)
        .await;
    let ticket = opened.tunnel_ticket();
    let proof = proof_for(&opened.tunnel_secret(), &ticket);

    // A right-length key that fails the FIPS 203 modulus check, with the right proof:
    // refused before the ticket is consumed (it used to be consumed, then sealing failed).
    let mut body: Value =
        serde_json::from_slice(&world.dc1.start_body(&ticket, Some(&proof))).unwrap();
    body["kem_kyber_key"] = json!(portcullis_proto::b64::encode(&[0xff; 1184]));
    let reply = world
        .dc1
        .post(&broker, serde_json::to_vec(&body).unwrap())
        .await;
    assert_access_denied(&reply);
    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="invalid_request"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="internal"}"#
        ),
        0.0
    );

    // The ticket still works with a valid key.
    world.dc1.redeem(&broker, &ticket, Some(&proof)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = root.path().join("data");
    let configured = data_dir.clone();
    // Plain HTTP: the test client reads the certificate from the builder's own directory.
    let broker = TestBroker::builder()
        .plain_http()
        .config(move |config| config.data_dir = configured)
        .start()
        .await;
    // Write something so that the WAL and its index exist.
    broker.world().await;
    assert_eq!(mode(&data_dir), 0o700);
    for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_are_capped_and_stored_with_control_characters_escaped() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let audit_rows = || async { broker.store().audit_tail(1000).await.unwrap().len() };
    let before = audit_rows().await;

    // 65,000 bytes used to be a failed login: an audit row and a limiter key that size.
    let long = "a".repeat(65_000);
    let reply = broker.try_login(&long, "wrong").await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::BAD_REQUEST,
        "{}",
        reply.body
    );
    assert_eq!(audit_rows().await, before);
    assert_eq!(broker.state().logins_per_user.len(), 0);
    let at_limit = "b".repeat(128);
    let reply = broker.try_login(&at_limit, "wrong").await;
    assert_eq!(reply.status, reqwest::StatusCode::UNAUTHORIZED);

    // Control characters reach the audit log escaped.
    let reply = broker.try_login("eve\u{1b}[31m\nroot", "wrong").await;
    assert_eq!(reply.status, reqwest::StatusCode::UNAUTHORIZED);
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.kind, "login.failed");
    assert_eq!(
        events[0].event.username.as_deref(),
        Some("eve\\u{1b}[31m\\u{a}root")
    );
}

/// Issue 7, point 7 (part): TLS 1.2 is off unless `tls.allow_tls12` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_is_refused_by_default_and_accepted_when_allowed() {
    async fn health_with_tls12(broker: &TestBroker) -> Result<reqwest::StatusCode, String> {
        let cert = portcullis_broker::tls::self_signed_paths(broker.data_dir()).0;
        let pem = std::fs::read(cert).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        client
            .get(broker.url("/health"))
            .send()
            .await
            .map(|response| response.status())
            .map_err(|error| error.to_string())
    }
    let strict = TestBroker::start().await;
    assert!(health_with_tls12(&strict).await.is_err());
    assert_eq!(
        strict.get("/health", None).await.status,
        reqwest::StatusCode::OK,
        "TLS 1.3 works"
    );
    let lenient = TestBroker::builder()
        .config(|config| config.tls.allow_tls12 = true)
        .start()
        .await;
    assert_eq!(
        health_with_tls12(&lenient).await.unwrap(),
        reqwest::StatusCode::OK
    );
}
