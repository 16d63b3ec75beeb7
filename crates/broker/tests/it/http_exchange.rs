//! The client ticket exchange over real HTTPS on loopback, as the portal user and the
//! launcher see it: sign in, pick a service, connect, exchange the client ticket under a
//! fresh ML-KEM-768 key, open and verify the payload; the OpenUDS 5 launcher's variant;
//! semver version checks; and the retry path (docs/protocol.md §9, difference 1).

use std::time::Duration;

use crate::support::broker::{
    CLIENT_LINK, Launcher, PASSWORD, Target, TestBroker, closed_port, direct_service,
};
use portcullis_broker::keys;
use portcullis_broker::store::{NewService, Readiness};
use portcullis_proto::Error;
use portcullis_proto::api::{ErrorBody, Percent, ProtocolVersion};
use portcullis_proto::payload::SignaturePolicy;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portcullis_launcher_exchanges_a_ticket_end_to_end() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;

    // The user signs in and sees the services of their groups, and only those.
    let alice = broker.login("alice", PASSWORD).await;
    let services = broker.services(&alice).await;
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["desk", "old-app", "shell"]);
    assert_eq!(
        services[0],
        json!({ "id": world.desk.0, "name": "desk", "protocol": "tcp", "transport": "direct" })
    );

    // Connect: a launch URL for this broker, and a status URL that waits for the launcher.
    let launch = broker.connect(&alice, world.desk).await;
    assert!(
        launch.url.host().starts_with("127.0.0.1:"),
        "{}",
        launch.url
    );
    assert_eq!(
        broker.connection_state(&alice, &launch).await,
        json!({ "state": "waiting" })
    );

    // The launcher exchanges the ticket, opens the envelope and verifies both signatures
    // under the key it pinned (the one in the broker's data directory).
    let launcher = Launcher::portcullis();
    let opened = launcher.exchange(&broker, &launch.url).await.unwrap();
    let pinned = keys::load(broker.data_dir()).unwrap();
    assert!(*pinned.verifying_key() == broker.verifying_key());
    opened
        .decode_again()
        .verify(
            pinned.verifying_key(),
            launch.ticket(),
            launcher.public_key(),
            SignaturePolicy::Required,
        )
        .unwrap();
    assert_eq!(
        opened.members(),
        [
            "log",
            "params",
            "payload_signature",
            "script",
            "signature",
            "signature_algorithm",
            "type"
        ]
    );
    assert_eq!(
        opened.document["log"],
        json!({ "level": "info", "ticket": null })
    );
    assert!(opened.payload.is_javascript());
    assert!(!opened.payload.script_text().unwrap().is_empty());
    assert_eq!(
        *opened.params(),
        json!({
            "name": "desk",
            "transport": "direct",
            "host": "127.0.0.1",
            "port": world.target.port,
            "protocol": "tcp",
        })
    );

    // The payload signature binds the launcher's own key: a man in the middle that sent
    // its key instead would not get a payload this launcher accepts.
    let other = Launcher::portcullis();
    assert_eq!(
        opened
            .decode_again()
            .verify(
                &broker.verifying_key(),
                launch.ticket(),
                other.public_key(),
                SignaturePolicy::Required
            )
            .unwrap_err(),
        Error::BadSignature("payload")
    );

    assert_eq!(
        broker.connection_state(&alice, &launch).await["state"],
        "connected"
    );
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.kind, "ticket.exchanged");
    assert_eq!(events[0].event.username.as_deref(), Some("alice"));
    assert_eq!(events[0].event.service.as_deref(), Some("desk"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openuds5_launcher_gets_the_openuds5_document_for_a_direct_service() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;

    let launcher = Launcher::openuds5();
    let request = launcher.request(&launch.url);
    assert!(request.client.is_none());
    let opened = launcher.exchange(&broker, &launch.url).await.unwrap();

    // Exactly the OpenUDS 5 document: no payload signature (an OpenUDS 5 launcher would
    // not know it), but the script signature verifies; a Portcullis launcher would refuse
    // the stripped document.
    assert_eq!(
        opened.members(),
        [
            "log",
            "params",
            "script",
            "signature",
            "signature_algorithm",
            "type"
        ]
    );
    assert_eq!(opened.document["signature_algorithm"], "MLDSA65");
    assert_eq!(opened.document["type"], "javascript");
    let key = broker.verifying_key();
    opened
        .decode_again()
        .verify(
            &key,
            launch.ticket(),
            launcher.public_key(),
            SignaturePolicy::IfPresent,
        )
        .unwrap();
    assert_eq!(
        opened
            .decode_again()
            .verify(
                &key,
                launch.ticket(),
                launcher.public_key(),
                SignaturePolicy::Required
            )
            .unwrap_err(),
        Error::MissingSignature("payload")
    );
    assert_eq!(opened.params()["host"], "127.0.0.1");
    assert_eq!(opened.params()["port"], world.target.port);
    assert_eq!(
        broker.connection_state(&alice, &launch).await["state"],
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_key_is_published_for_first_contact() {
    let broker = TestBroker::start().await;
    let reply = broker.get("/uds/rest/client/key", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let answer = reply.json();
    let key: portcullis_proto::api::BrokerKey =
        serde_json::from_value(answer["result"].clone()).unwrap();
    let verifying = key.verifying_key().unwrap();
    assert_eq!(
        verifying.fingerprint(),
        broker.verifying_key().fingerprint()
    );
    assert_eq!(key.algorithm, "MLDSA65");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_query_and_semver_comparison() {
    // Required 5.9.0: 5.10.0 is newer (it is not, compared as strings), 5.8.0 is older.
    let broker = TestBroker::builder()
        .config(|config| {
            config.client.required_version = ProtocolVersion::new(5, 9, 0);
            config.client.available_version = ProtocolVersion::new(5, 10, 0);
        })
        .start()
        .await;
    let world = broker.world().await;

    let reply = broker.get("/uds/rest/client", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({ "result": {
            "available_version": "5.10.0",
            "required_version": "5.9.0",
            "client_link": CLIENT_LINK,
        }})
    );

    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;
    let launcher = Launcher::portcullis();

    let mut older = launcher.request(&launch.url);
    older.version = "5.8.0".to_owned();
    let refusal = launcher
        .send(&broker, launch.ticket(), &older)
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        ErrorBody::fatal(format!(
            "This launcher (version 5.8.0) is too old: version 5.9.0 or newer is required. \
             Download it from {CLIENT_LINK}"
        ))
    );

    let mut newer = launcher.request(&launch.url);
    newer.version = "5.10.0".to_owned();
    let opened = launcher
        .send(&broker, launch.ticket(), &newer)
        .await
        .unwrap_or_else(|refusal| panic!("5.10.0 >= 5.9.0, refused: {refusal:?}"));
    assert_eq!(opened.params()["name"], "desk");
}

/// A service with `readiness = off` is not checked from the broker (whose network may not
/// reach the target): its exchange succeeds even though nothing listens on its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_readiness_check_is_served_at_once() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let port = closed_port();
    let unchecked = broker
        .add_service(NewService {
            readiness: Readiness::Off,
            ..direct_service("unreachable-from-broker", port, &["staff"])
        })
        .await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, unchecked).await;
    let opened = Launcher::portcullis()
        .exchange_verified(&broker, &launch.url)
        .await;
    assert_eq!(opened.params()["port"], port);
}

/// docs/protocol.md §9, difference 1: "Preparing service" is retryable and leaves the ticket valid,
/// so the launcher's retry with the same ticket succeeds once the service answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparing_service_is_retryable_and_the_same_ticket_then_succeeds() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let port = closed_port();
    let booting = broker
        .add_service(direct_service("booting", port, &["staff"]))
        .await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, booting).await;
    let launcher = Launcher::portcullis();

    // Nothing listens yet: retryable answers, with a percentage that grows with time.
    let mut percents = Vec::new();
    for step in 0..3 {
        if step > 0 {
            broker.clock.advance(Duration::from_secs(20));
        }
        let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
        assert_eq!(refusal.message, "Preparing service");
        assert!(refusal.is_retryable);
        percents.push(refusal.percent);
    }
    assert_eq!(
        percents,
        [0, 33, 66].map(|p| Percent::new(p).unwrap()),
        "percent = elapsed share of the 60 s ticket lifetime"
    );
    assert_eq!(
        broker.connection_state(&alice, &launch).await,
        json!({ "state": "preparing", "percent": 66, "message": "Preparing service" })
    );

    // The service comes up: the very same ticket now succeeds, once.
    let _target = Target::on_port(port).await;
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    assert_eq!(opened.params()["port"], port);
    assert_eq!(
        broker.connection_state(&alice, &launch).await["state"],
        "connected"
    );
    let again = launcher.exchange(&broker, &launch.url).await.err().unwrap();
    assert!(!again.is_retryable);

    let metrics = broker.metrics().await;
    assert_eq!(
        crate::support::broker::metric(
            &metrics,
            r#"portcullis_tickets_refused_total{reason="preparing"}"#
        ),
        3.0
    );
}
