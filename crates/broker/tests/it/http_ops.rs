//! The operations endpoints over real HTTPS: `/health` for load balancers and `/metrics`
//! for Prometheus, whose request-latency labels are route patterns, never a path with a
//! ticket id in it.

use std::collections::BTreeSet;

use crate::support::broker::{
    Launcher, PASSWORD, TestBroker, assert_access_denied, metric, proof_for, wrong_proof,
};
use portcullis_proto::TicketId;
use reqwest::StatusCode;
use serde_json::json;

/// Every 48-character run of `[A-Za-z0-9]` in `text` (what a ticket id looks like).
fn ticket_like_runs(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|run| run.len() >= TicketId::LEN)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_database() {
    let broker = TestBroker::start().await;
    let reply = broker.get("/health", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(reply.json(), json!({ "status": "ok", "database": "ok" }));

    // Without its database the broker is not healthy.
    broker.store().close().await;
    let reply = broker.get("/health", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.json(),
        json!({ "status": "unavailable", "database": "unreachable" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_tickets_and_label_requests_by_route_pattern() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();

    // Issue three tickets: one exchanged directly, one tunneled and redeemed, one never
    // used; refuse a few requests on both APIs.
    let direct = broker.connect(&alice, world.desk).await;
    launcher.exchange_verified(&broker, &direct.url).await;
    let tunneled = broker.launch_tunneled(&alice, world.shell, &launcher).await;
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
    let proof = proof_for(&tunneled.secret, &tunneled.ticket);
    world
        .dc1
        .redeem(&broker, &tunneled.ticket, Some(&proof))
        .await;
    let unused = broker.connect(&alice, world.desk).await;
    launcher.exchange(&broker, &direct.url).await.err().unwrap();
    let mut old = launcher.request(&unused.url);
    old.version = "4.0.0".to_owned();
    launcher
        .send(&broker, unused.ticket(), &old)
        .await
        .err()
        .unwrap();
    assert_access_denied(&broker.tunnel_api(None, b"{}".to_vec()).await);
    let reply = broker.get("/no/such/route", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let reply = broker.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = reply.body;
    for (series, value) in [
        ("portcullis_tickets_issued_total", 3.0),
        ("portcullis_tickets_exchanged_total", 2.0),
        // One after the other, so each was a group commit of one.
        ("portcullis_exchange_commit_batch_size_count", 2.0),
        ("portcullis_exchange_commit_batch_size_sum", 2.0),
        (
            r#"portcullis_tickets_refused_total{reason="unknown_ticket"}"#,
            1.0,
        ),
        (
            r#"portcullis_tickets_refused_total{reason="version_too_old"}"#,
            1.0,
        ),
        ("portcullis_tunnel_redemptions_total", 1.0),
        (
            r#"portcullis_tunnel_redemptions_refused_total{reason="bad_proof"}"#,
            1.0,
        ),
        (
            r#"portcullis_tunnel_redemptions_refused_total{reason="bad_token"}"#,
            1.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{route="/uds/rest/client/{ticket}/ticket",status="200"}"#,
            4.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{route="/uds/rest/tunnel/ticket",status="200"}"#,
            1.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{route="/uds/rest/tunnel/ticket",status="403"}"#,
            2.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{route="/api/login",status="200"}"#,
            1.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{route="/api/services/{id}/connect",status="200"}"#,
            3.0,
        ),
    ] {
        assert_eq!(metric(&text, series), value, "{series} in:\n{text}");
    }

    // Route labels are the router's patterns; no ticket id (or anything shaped like one)
    // appears anywhere.
    let routes: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.split_once("route=\""))
        .filter_map(|(_, rest)| rest.split_once('"'))
        .map(|(route, _)| route)
        .collect();
    let expected: BTreeSet<&str> = [
        "/api/login",
        "/api/services/{id}/connect",
        "/uds/rest/client/{ticket}/ticket",
        "/uds/rest/tunnel/ticket",
        "unmatched",
    ]
    .into();
    assert_eq!(routes, expected, "{text}");
    assert_eq!(ticket_like_runs(&text), Vec::<String>::new());
    for ticket in [direct.ticket(), unused.ticket(), &tunneled.ticket] {
        assert!(!text.contains(ticket.expose()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_download_link_answers() {
    let broker = TestBroker::start().await;
    let version = broker.get("/uds/rest/client", None).await.json();
    let link = version["result"]["client_link"].as_str().unwrap();
    assert!(link.ends_with("/download"), "{link}");
    let reply = broker.get("/download", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("client.client_link"), "{}", reply.body);
}

/// A client that opens a connection and never finishes its request headers is cut off
/// after `limits.header_read_timeout_secs`, so slow clients cannot hold connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let broker = TestBroker::builder()
        .plain_http()
        .config(|config| {
            config.limits.header_read_timeout_secs = 1;
        })
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    // The server closes (perhaps after a 408); reading ends well before this bound.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buffer),
    )
    .await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}
