//! Every refusal of the client ticket exchange over real HTTPS: HTTP 200 with exactly the
//! OpenUDS 5 error envelope `{"error": {"message", "is_retryable", "percent"}}`, and the
//! right `is_retryable` (docs/protocol.md §5.3, §6.6). Also: refusals consume nothing, so
//! the ticket still works afterwards where that matters.

use std::time::Duration;

use crate::support::broker::{
    CLIENT_LINK, CLIENT_TICKET_TTL, Launcher, PASSWORD, TestBroker, answer_of, metric, raw_http,
    tunneled_service,
};
use portcullis_proto::TicketId;
use portcullis_proto::api::{Answer, ErrorBody, capability};
use portcullis_proto::b64;
use portcullis_proto::openuds::Envelope;
use serde_json::{Value, json};

/// The one answer for unknown, used, expired and malformed tickets and wrong scramblers.
const UNKNOWN_TICKET: &str =
    "Ticket not found or expired: start the connection again from the portal";

fn fatal(message: &str) -> ErrorBody {
    ErrorBody::fatal(message)
}

/// The JSON of a launcher's request for `launch`, to be spoilt by the test.
fn request_json(launcher: &Launcher, launch: &crate::support::broker::Launch) -> Value {
    serde_json::to_value(launcher.request(&launch.url)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_clear_final_error_and_consume_nothing() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;
    let ticket = launch.ticket().expose();
    let launcher = Launcher::portcullis();
    let good = request_json(&launcher, &launch);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&body).unwrap()
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"scrambler=abc".to_vec(),
            "Invalid request: invalid JSON in ticket request: syntax error at line 1 column 1",
        ),
        (
            "truncated JSON",
            br#"{"scrambler": "#.to_vec(),
            "Invalid request: invalid JSON in ticket request: unexpected end at line 1 column 14",
        ),
        (
            "empty body",
            Vec::new(),
            "Invalid request: invalid JSON in ticket request: unexpected end at line 1 column 0",
        ),
        (
            "a JSON array",
            b"[]".to_vec(),
            "Invalid request: invalid JSON in ticket request: invalid length 0, \
             expected struct TicketRequest with 5 elements at line 1 column 2",
        ),
        (
            "no scrambler",
            br#"{"hostname": "h", "version": "5.0.0"}"#.to_vec(),
            "Invalid request: invalid JSON in ticket request: missing field `scrambler` \
             at line 1 column 37",
        ),
        (
            "wrong base64",
            with("kem_kyber_key", json!("***not base64***")),
            "Invalid request: kem_kyber_key is not valid base64",
        ),
        (
            "missing kem_kyber_key",
            without("kem_kyber_key"),
            "Invalid request: invalid kem_kyber_key: missing: an ML-KEM-768 key is required \
             (there is no plaintext mode)",
        ),
        (
            "null kem_kyber_key",
            with("kem_kyber_key", Value::Null),
            "Invalid request: invalid kem_kyber_key: missing: an ML-KEM-768 key is required \
             (there is no plaintext mode)",
        ),
        (
            "empty kem_kyber_key",
            with("kem_kyber_key", json!("")),
            "Invalid request: invalid kem_kyber_key: missing: an ML-KEM-768 key is required \
             (there is no plaintext mode)",
        ),
        (
            "a 100-byte key",
            with("kem_kyber_key", json!(b64::encode(&[7; 100]))),
            "Invalid request: ML-KEM-768 encapsulation key must be 1184 bytes, got 100",
        ),
        (
            "a 1185-byte key",
            with("kem_kyber_key", json!(b64::encode(&[7; 1185]))),
            "Invalid request: ML-KEM-768 encapsulation key must be 1184 bytes, got 1185",
        ),
        (
            // The right length, but coefficients of at least q: nobody can encapsulate
            // to it (FIPS 203 modulus check). Before: "could not complete; try again".
            "a key failing the modulus check",
            with("kem_kyber_key", json!(b64::encode(&[0xff; 1184]))),
            "Invalid request: invalid ML-KEM-768 encapsulation key: a coefficient is not \
             below q = 3329 (FIPS 203 modulus check)",
        ),
        (
            "a version that is not semver",
            with("version", json!("5.0")),
            "Invalid request: invalid version: must be major.minor.patch",
        ),
        (
            "a scrambler with a dash",
            with("scrambler", json!("bad-scrambler")),
            "Invalid request: invalid scrambler: only A-Z, a-z and 0-9 are allowed",
        ),
    ];
    let count = cases.len();
    for (what, body, message) in cases {
        let refusal = broker.refusal(ticket, body).await;
        assert_eq!(refusal, fatal(message), "{what}");
    }
    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tickets_refused_total{reason="invalid_request"}"#
        ),
        count as f64
    );

    // None of that consumed the ticket.
    launcher.exchange_verified(&broker, &launch.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_launcher_is_refused_with_the_download_link() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;
    let launcher = Launcher::openuds5();
    let mut request = launcher.request(&launch.url);
    request.version = "4.0.0".to_owned();

    let refusal = launcher
        .send(&broker, launch.ticket(), &request)
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        fatal(&format!(
            "This launcher (version 4.0.0) is too old: version 5.0.0 or newer is required. \
             Download it from {CLIENT_LINK}"
        ))
    );
    // After updating, the same ticket works.
    launcher.exchange_verified(&broker, &launch.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_malformed_and_mismatched_tickets_get_one_answer() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;
    let launcher = Launcher::portcullis();
    let body = serde_json::to_vec(&launcher.request(&launch.url)).unwrap();
    let real = launch.ticket().expose();

    let unknown = TicketId::generate().unwrap();
    let malformed = [
        "short".to_owned(),
        format!("{}-", &real[..47]),
        format!("{real}x"),
        real[..47].to_owned(),
        "%C3%A9".repeat(24),
    ];
    for ticket in std::iter::once(unknown.expose()).chain(malformed.iter().map(String::as_str)) {
        let refusal = broker.refusal(ticket, body.clone()).await;
        assert_eq!(refusal, fatal(UNKNOWN_TICKET), "ticket {ticket:?}");
    }

    // A wrong scrambler is the same answer, and does not consume the ticket.
    let mut request = launcher.request(&launch.url);
    request.scrambler = "WrongScrambler".to_owned();
    let refusal = launcher
        .send(&broker, launch.ticket(), &request)
        .await
        .err()
        .unwrap();
    assert_eq!(refusal, fatal(UNKNOWN_TICKET));
    launcher.exchange_verified(&broker, &launch.url).await;

    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tickets_refused_total{reason="unknown_ticket"}"#
        ),
        7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_path_that_is_not_utf8_is_still_the_error_envelope() {
    let broker = TestBroker::start().await;
    let launcher = Launcher::portcullis();
    let body = serde_json::json!({
        "scrambler": "abc",
        "kem_kyber_key": b64::encode(launcher.public_key().as_bytes()),
        "hostname": "h",
        "version": "5.0.0",
    });
    let reply = broker
        .exchange_raw("%FF%FE", serde_json::to_vec(&body).unwrap())
        .await;
    match answer_of(&reply) {
        portcullis_proto::api::Answer::Error(error) => assert_eq!(error, fatal(UNKNOWN_TICKET)),
        portcullis_proto::api::Answer::Result(_) => panic!("a payload for a bogus ticket"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let last_moment = broker.connect(&alice, world.desk).await;
    let too_late = broker.connect(&alice, world.desk).await;

    // Valid until the last millisecond of its 60 s…
    broker
        .clock
        .advance(CLIENT_TICKET_TTL - Duration::from_millis(1));
    Launcher::portcullis()
        .exchange_verified(&broker, &last_moment.url)
        .await;

    // …and refused from then on (the test clock, not the wall clock, decides).
    broker.clock.advance(Duration::from_millis(1));
    let refusal = Launcher::portcullis()
        .exchange(&broker, &too_late.url)
        .await
        .err()
        .unwrap();
    assert_eq!(refusal, fatal(UNKNOWN_TICKET));
    assert_eq!(
        broker.connection_state(&alice, &too_late).await,
        json!({ "state": "expired" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_ticket_is_refused() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.shell).await;

    Launcher::portcullis()
        .exchange_verified(&broker, &launch.url)
        .await;
    // The same launcher again, or another one with the same URL: one use only.
    for launcher in [Launcher::portcullis(), Launcher::openuds5()] {
        let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
        assert_eq!(refusal, fatal(UNKNOWN_TICKET));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_right_to_the_service_after_connect_is_refused() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();

    // Alice leaves the group that grants `desk` after she clicked Connect.
    let launch = broker.connect(&alice, world.desk).await;
    broker
        .store()
        .remove_member("staff", "alice", 0)
        .await
        .unwrap();
    let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
    assert_eq!(refusal, fatal("This service is no longer available to you"));
    broker.store().add_member("staff", "alice").await.unwrap();

    // The service is removed after Connect: removing a service also deletes its unused
    // tickets (store contract), so the ticket is simply gone.
    let launch = broker.connect(&alice, world.shell).await;
    broker.store().remove_service("shell", 0).await.unwrap();
    let refusal = launcher.exchange(&broker, &launch.url).await.err().unwrap();
    assert_eq!(refusal, fatal(UNKNOWN_TICKET));

    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tickets_refused_total{reason="forbidden"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunneled_services_the_launcher_cannot_use_get_a_clear_final_error() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let orphan = broker
        .add_service(tunneled_service(
            "orphan",
            world.target.port,
            "nowhere",
            &["staff"],
        ))
        .await;
    let alice = broker.login("alice", PASSWORD).await;

    // No tunnel server serves the service's tunnel group.
    let launch = broker.connect(&alice, orphan).await;
    let refusal = Launcher::portcullis()
        .exchange(&broker, &launch.url)
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        fatal("No tunnel server is available for this service; ask your administrator")
    );

    // An OpenUDS 5 launcher for a service behind v1 tunnel servers only.
    let launch = broker.connect(&alice, world.shell).await;
    let refusal = Launcher::openuds5()
        .exchange(&broker, &launch.url)
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        fatal(&format!(
            "This service is reached through a Portcullis tunnel (protocol v1), which this \
             launcher does not speak. Download the Portcullis launcher from {CLIENT_LINK}"
        ))
    );

    // A launcher with the `client` extension but without `tunnel-v1` cannot use a v1
    // server, and is never sent to a legacy one (docs/protocol.md §6.6, §7.7).
    let no_tunnel = Launcher::with_capabilities(&[capability::PAYLOAD_SIGNATURE]);
    for service in [world.shell, world.old_app] {
        let launch = broker.connect(&alice, service).await;
        let refusal = no_tunnel
            .exchange(&broker, &launch.url)
            .await
            .err()
            .unwrap();
        assert_eq!(
            refusal,
            fatal(&format!(
                "This launcher does not speak the Portcullis tunnel protocol (tunnel-v1) \
                 this service needs. Download the Portcullis launcher from {CLIENT_LINK}"
            )),
            "service {service:?}"
        );
    }

    // The Portcullis launcher for a service behind legacy tunnel servers only.
    let launch = broker.connect(&alice, world.old_app).await;
    let refusal = Launcher::portcullis()
        .exchange(&broker, &launch.url)
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        fatal("No tunnel server is available for this service; ask your administrator")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_without_a_server_error() {
    // Plain HTTP (as behind a TLS-terminating proxy), to speak raw HTTP/1.1.
    let broker = TestBroker::builder().plain_http().start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;

    // A request announcing a body past the 64 KiB limit is refused from its headers
    // alone, in the envelope (HTTP 200), as an invalid request.
    let head = format!(
        "POST /uds/rest/client/{}/ticket HTTP/1.1\r\nHost: broker.example\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        launch.ticket().expose(),
        64 * 1024 + 1
    );
    let answer = raw_http(broker.addr(), &head).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    match Answer::<Envelope>::from_json(body.as_bytes()).unwrap() {
        Answer::Error(error) => assert_eq!(
            error,
            fatal("Invalid request: the request body is larger than the broker accepts")
        ),
        Answer::Result(_) => panic!("a payload for an oversized request"),
    }

    // The ticket is untouched.
    Launcher::portcullis()
        .exchange_verified(&broker, &launch.url)
        .await;
}
