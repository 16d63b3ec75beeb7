//! One use under concurrency, over real HTTPS (docs/protocol.md §9, difference 2): 64 simultaneous
//! `start` requests for one tunnel ticket, all with a valid proof, and 64 simultaneous
//! exchanges of one client ticket, each redeem exactly once — on one broker with SQLite,
//! one with PostgreSQL, and two brokers sharing one PostgreSQL database (half of the
//! requests to each). The PostgreSQL tests of the HTTP suite live here, so that only this
//! binary starts a PostgreSQL server.

use std::sync::Arc;

use crate::support::broker::{
    Launcher, PASSWORD, Reply, TestBroker, answer_of, assert_access_denied, bounded, metric,
    proof_for, send,
};
use portcullis_proto::TicketId;
use portcullis_proto::api::{Answer, ErrorBody};
use portcullis_proto::openuds::Envelope;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// How many requests race for one ticket.
const RACERS: usize = 64;

/// Sends `RACERS` POSTs at once, request `i` to `brokers[i % brokers.len()]`, and returns
/// the answers in request order.
async fn race(
    brokers: &[&TestBroker],
    path: &str,
    authorization: Option<&str>,
    bodies: Vec<Vec<u8>>,
) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let mut tasks = JoinSet::new();
    for (index, body) in bodies.into_iter().enumerate() {
        let broker = brokers[index % brokers.len()];
        let mut request = broker
            .http
            .post(broker.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            (index, send(request).await)
        });
    }
    let mut replies: Vec<(usize, Reply)> = bounded("the race", tasks.join_all()).await;
    replies.sort_by_key(|(index, _)| *index);
    replies.into_iter().map(|(_, reply)| reply).collect()
}

/// The tunnel-ticket race: every request carries a valid proof (fresh randoms each);
/// exactly one is answered with the start envelope, the rest with the 403 refusal.
async fn tunnel_ticket_is_redeemed_once(brokers: &[&TestBroker]) {
    let (first, last) = (brokers[0], brokers[brokers.len() - 1]);
    let world = first.world().await;
    // Sign in on one broker, launch on the other: sessions and tickets live in the
    // shared database.
    let alice = first.login("alice", PASSWORD).await;
    let launch = last
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;

    let bodies = (0..RACERS)
        .map(|_| {
            let proof = proof_for(&launch.secret, &launch.ticket);
            world.dc1.start_body(&launch.ticket, Some(&proof))
        })
        .collect();
    let replies = race(
        brokers,
        "/uds/rest/tunnel/ticket",
        Some(&world.dc1.authorization()),
        bodies,
    )
    .await;

    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|reply| reply.status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one start wins");
    for reply in replies
        .iter()
        .filter(|reply| reply.status != StatusCode::OK)
    {
        assert_access_denied(reply);
    }
    let start = world.dc1.open_start(winners[0], &launch.ticket);
    assert!(start.shared_secret == launch.secret);
    assert_eq!(start.remotes[0].port, world.target.port);

    // The session it started is accounted, on any broker.
    let stop = world.dc1.stop(last, &start.notify, 1, 2).await;
    assert_eq!(stop.json(), json!({}));
    let redeemed: f64 = counter_sum(brokers, "portcullis_tunnel_redemptions_total").await;
    assert_eq!(redeemed, 1.0);
}

/// The client-ticket race: 64 identical exchanges; exactly one payload, 63 refusals.
async fn client_ticket_is_exchanged_once(brokers: &[&TestBroker]) {
    let (first, last) = (brokers[0], brokers[brokers.len() - 1]);
    let world = first.world().await;
    let alice = first.login("alice", PASSWORD).await;
    let launch = last.connect(&alice, world.shell).await;
    let launcher = Launcher::portcullis();
    let body = serde_json::to_vec(&launcher.request(&launch.url)).unwrap();

    let path = format!("/uds/rest/client/{}/ticket", launch.ticket().expose());
    let replies = race(brokers, &path, None, vec![body; RACERS]).await;

    let mut payloads: Vec<Envelope> = Vec::new();
    for reply in &replies {
        match answer_of(reply) {
            Answer::Result(envelope) => payloads.push(envelope),
            Answer::Error(error) => assert_eq!(
                error,
                ErrorBody::fatal(
                    "Ticket not found or expired: start the connection again from the portal"
                )
            ),
        }
    }
    assert_eq!(payloads.len(), 1, "exactly one exchange wins");
    let opened = launcher.open(&payloads[0], launch.ticket(), &first.verifying_key());

    // Exactly one tunnel ticket was stored: the winner's, and it works.
    let ticket: TicketId = opened.tunnel_ticket();
    let proof = proof_for(&opened.tunnel_secret(), &ticket);
    world.dc1.redeem(first, &ticket, Some(&proof)).await;
    assert_eq!(
        first.connection_state(&alice, &launch).await["state"],
        "connected"
    );
    let exchanged = counter_sum(brokers, "portcullis_tickets_exchanged_total").await;
    assert_eq!(exchanged, 1.0);
}

/// The sum of one counter over the brokers.
async fn counter_sum(brokers: &[&TestBroker], series: &str) -> f64 {
    let mut sum = 0.0;
    for broker in brokers {
        sum += metric(&broker.metrics().await, series);
    }
    sum
}

async fn postgres_broker() -> TestBroker {
    let url = crate::support::postgres_url().await;
    TestBroker::builder().database(&url).start().await
}

/// Two brokers of one deployment: one PostgreSQL database, one data directory (signing
/// key and certificate), one clock.
async fn two_postgres_brokers() -> (TestBroker, TestBroker) {
    let url = crate::support::postgres_url().await;
    let first = TestBroker::builder().database(&url).start().await;
    let second = TestBroker::builder()
        .database(&url)
        .sibling_of(&first)
        .start()
        .await;
    assert_ne!(first.addr(), second.addr());
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_redeem_a_tunnel_ticket_once_on_sqlite() {
    let broker = TestBroker::start().await;
    tunnel_ticket_is_redeemed_once(&[&broker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_redeem_a_tunnel_ticket_once_on_postgres() {
    let broker = postgres_broker().await;
    tunnel_ticket_is_redeemed_once(&[&broker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_redeem_a_tunnel_ticket_once_across_two_brokers() {
    let (first, second) = two_postgres_brokers().await;
    tunnel_ticket_is_redeemed_once(&[&first, &second]).await;
    second.shutdown().await;
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_use_a_client_ticket_once_on_sqlite() {
    let broker = TestBroker::start().await;
    client_ticket_is_exchanged_once(&[&broker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_use_a_client_ticket_once_on_postgres() {
    let broker = postgres_broker().await;
    client_ticket_is_exchanged_once(&[&broker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_use_a_client_ticket_once_across_two_brokers() {
    let (first, second) = two_postgres_brokers().await;
    client_ticket_is_exchanged_once(&[&first, &second]).await;
    second.shutdown().await;
    first.shutdown().await;
}
