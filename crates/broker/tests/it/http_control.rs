//! The control channel over real HTTPS (docs/protocol.md §7.8): byte reports recorded for
//! the reporting server's own live sessions only, an end asked for answered at once while
//! a request is held, redelivered no sooner than 2 s, at most two held requests per server,
//! and every malformed request refused like any tunnel-server request.

use std::time::{Duration, Instant};

use portcullis_proto::TicketId;
use portcullis_proto::api::SessionRef;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::broker::{
    Launcher, PASSWORD, TestBroker, assert_access_denied, proof_for, raw_http,
};

/// A live session of alice on `shell`, started by dc1: its notify ticket.
async fn live_session(broker: &TestBroker, world: &crate::support::broker::World) -> TicketId {
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

fn report(wait_ms: u64, sessions: &[(&TicketId, u64, u64)]) -> Value {
    json!({
        "wait_ms": wait_ms,
        "sessions": sessions
            .iter()
            .map(|(notify, sent, recv)| json!({
                "session": SessionRef::of(notify).to_hex(), "sent": sent, "recv": recv,
            }))
            .collect::<Vec<_>>(),
    })
}

#[track_caller]
fn ends(reply: &crate::support::broker::Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["end"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_recorded_and_an_end_answers_a_held_request_at_once() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let notify = live_session(&broker, &world).await;
    let reference = SessionRef::of(&notify).to_hex();

    // A report: recorded for the reporting server's own session.
    assert!(
        ends(
            &world
                .dc1
                .control(&broker, &report(0, &[(&notify, 10, 20)]))
                .await
        )
        .is_empty()
    );
    let live = broker
        .store()
        .live_sessions(broker.clock.now(), 10)
        .await
        .unwrap();
    assert_eq!((live[0].sent, live[0].recv), (Some(10), Some(20)));
    assert_eq!(live[0].control_seen_at, Some(broker.clock.now()));
    // Another server naming it changes nothing (nor does a report within the second).
    broker.clock.advance(Duration::from_secs(1));
    ends(
        &world
            .dc2
            .control(&broker, &report(0, &[(&notify, 99, 99)]))
            .await,
    );
    let live = broker
        .store()
        .live_sessions(broker.clock.now(), 10)
        .await
        .unwrap();
    assert_eq!((live[0].sent, live[0].recv), (Some(10), Some(20)));

    // Held: answered at once when an end is asked for, long before its wait.
    let held = {
        let body = report(10_000, &[(&notify, 11, 21)]);
        let dc1 = &world.dc1;
        let broker = &broker;
        async move { (Instant::now(), dc1.control(broker, &body).await) }
    };
    let ask = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reference = live[0].reference;
        let ending = broker
            .store()
            .request_session_end(&reference, broker.clock.now(), "root")
            .await
            .unwrap()
            .unwrap();
        broker.state().control.wake(ending.tunnel_server_id);
    };
    let ((started, reply), ()) = tokio::join!(held, ask);
    let answer = ends(&reply);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(answer, [json!({ "session": reference, "reason": 4 })]);

    // Not delivered again within 2 s; again after.
    assert!(ends(&world.dc1.control(&broker, &report(0, &[])).await).is_empty());
    broker.clock.advance(Duration::from_secs(2));
    assert_eq!(
        ends(&world.dc1.control(&broker, &report(0, &[])).await).len(),
        1
    );
    // Never to another server.
    broker.clock.advance(Duration::from_secs(2));
    assert!(ends(&world.dc2.control(&broker, &report(0, &[])).await).is_empty());

    // Its stop ends the command.
    let stop = world.dc1.stop(&broker, &notify, 11, 21).await;
    assert_eq!(stop.status, StatusCode::OK);
    broker.clock.advance(Duration::from_secs(2));
    assert!(ends(&world.dc1.control(&broker, &report(0, &[])).await).is_empty());
    let events = broker.store().audit_tail(1).await.unwrap();
    let stopped: Value = serde_json::from_str(&events[0].event.detail).unwrap();
    assert_eq!(stopped["ended_by"], "administrator", "{stopped}");
    assert_eq!(stopped["end_requested_by"], "root", "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_held_request_answers_the_oldest() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let body = report(10_000, &[]);
    let first = async {
        let started = Instant::now();
        let reply = world.dc1.control(&broker, &body).await;
        (started.elapsed(), reply)
    };
    let others = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let short = report(300, &[]);
        let second = world.dc1.control(&broker, &short);
        let third = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            world.dc1.control(&broker, &report(300, &[])).await
        };
        tokio::join!(second, third)
    };
    let ((took, reply), _) = tokio::join!(first, others);
    assert!(ends(&reply).is_empty());
    assert!(
        took < Duration::from_secs(5),
        "the oldest was held {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_unauthenticated_control_requests_are_refused() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let good = report(0, &[]).to_string().into_bytes();
    assert_access_denied(&broker.control_api(None, good.clone()).await);
    assert_access_denied(
        &broker
            .control_api(Some("Bearer sk-not-a-registered-token"), good)
            .await,
    );
    let auth = world.dc1.authorization();
    let notify = TicketId::generate().unwrap();
    let twice = report(0, &[(&notify, 1, 1), (&notify, 2, 2)]);
    let many: Vec<TicketId> = (0..8193).map(|_| TicketId::generate().unwrap()).collect();
    let too_many = report(
        0,
        &many.iter().map(|notify| (notify, 0, 0)).collect::<Vec<_>>(),
    );
    for body in [
        b"not json".to_vec(),
        br#"{"wait_ms": 10001, "sessions": []}"#.to_vec(),
        br#"{"wait_ms": 1, "sessions": [{"session": "ABC", "sent": 1, "recv": 1}]}"#.to_vec(),
        twice.to_string().into_bytes(),
        too_many.to_string().into_bytes(),
    ] {
        let reply = broker.control_api(Some(&auth), body).await;
        assert_access_denied(&reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_control_request_is_refused_from_its_headers() {
    let broker = TestBroker::builder().plain_http().start().await;
    let world = broker.world().await;
    let head = format!(
        "POST /uds/rest/tunnel/control HTTP/1.1\r\nHost: broker.example\r\n\
         Authorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        world.dc1.authorization(),
        2 * 1024 * 1024 + 1
    );
    let answer = raw_http(broker.addr(), &head).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"error":"Access denied"}"#), "{answer}");
    // Without a valid token nothing of the body is read either.
    let head = head.replace(&world.dc1.authorization(), "Bearer sk-unknown");
    let answer = raw_http(broker.addr(), &head).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
}
