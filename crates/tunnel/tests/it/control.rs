//! The control channel end to end (docs/protocol.md §7.8): the tunnel server reports each
//! live session's bytes to the broker, and a session the broker is asked to end — by an
//! administrator on this broker, or on another one (written straight to the database) —
//! ends at once: `SessionEnded(EndedByAdministrator)` on the hold, the target connection
//! closed, `stop` with who asked.

use std::time::{Duration, Instant};

use portcullis_link::client::SessionEnd;
use portcullis_proto::tunnel::EndReason;
use portcullis_testkit::{EchoTarget, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay::echo_round_trip;
use crate::support::{STEP, Stack, detail, now_ms};

const LIMIT: Duration = Duration::from_secs(20);

/// A live session with one local connection open (after a round trip), held.
async fn live_session(
    stack: &Stack,
    echo: &EchoTarget,
) -> (portcullis_link::client::Forwarder, TcpStream) {
    let forwarder = stack.forwarder(echo.addr).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"seventeen bytes..").await;
    eventually("the session is held", LIMIT, || forwarder.is_held()).await;
    (forwarder, local)
}

/// Waits until the broker has the session's bytes from the control channel.
async fn reported(stack: &Stack) -> portcullis_broker::store::LiveSession {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let live = stack
            .broker
            .state
            .store
            .live_sessions(now_ms(), 10)
            .await
            .unwrap();
        if let Some(session) = live.into_iter().find(|session| session.sent == Some(17)) {
            return session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never had the session's bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the local connection until its end; how long that took.
async fn ended_within(local: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = bounded(
        "the local connection's end",
        STEP,
        local.read_to_end(&mut rest),
    )
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_has_the_bytes_and_an_end_asked_for_reaches_the_launcher_and_the_target() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (forwarder, mut local) = live_session(&stack, &echo).await;

    let session = reported(&stack).await;
    assert_eq!(session.recv, Some(17));
    assert!(session.control_seen_at.is_some());
    assert_eq!(session.tunnel_server.as_deref(), Some("t1"));

    // An administrator on this broker asks; the held control request is woken at once.
    let state = &stack.broker.state;
    let ending = state
        .store
        .request_session_end(&session.reference, now_ms(), "root")
        .await
        .unwrap()
        .unwrap();
    state.control.wake(ending.tunnel_server_id);
    let took = ended_within(&mut local).await;
    eprintln!("the local connection ended {took:?} after the request");
    assert_eq!(
        bounded("the session's end", STEP, forwarder.ended()).await,
        SessionEnd::Ended(EndReason::EndedByAdministrator)
    );
    eventually("the target connection is closed", LIMIT, || {
        echo.closed() == 1
    })
    .await;
    let stops = stack.wait_for_stops(1).await;
    let stopped = detail(&stops[0]);
    assert_eq!(stopped["ended_by"], "administrator", "{stopped}");
    assert_eq!(stopped["end_requested_by"], "root", "{stopped}");
    assert_eq!(stopped["sent"], 17);
    // Asking again for an ended session does nothing.
    assert!(
        state
            .store
            .request_session_end(&session.reference, now_ms(), "root")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        stack.metric("portcullis_tunnel_sessions_ended_total{reason=\"administrator\"}"),
        1.0
    );
    // The listener is closed: a new connection is refused, not accepted to fail later.
    assert!(TcpStream::connect(forwarder.local_addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_written_by_another_broker_is_noticed_by_the_watcher() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (forwarder, mut local) = live_session(&stack, &echo).await;
    let session = reported(&stack).await;
    // Another broker of the database (or `portcullis admin`) writes the request: nothing
    // wakes this broker's held control request but its watcher.
    stack
        .broker
        .state
        .store
        .request_session_end(&session.reference, now_ms(), "cli:root")
        .await
        .unwrap()
        .unwrap();
    let took = ended_within(&mut local).await;
    eprintln!("the local connection ended {took:?} after the request");
    assert_eq!(
        bounded("the session's end", STEP, forwarder.ended()).await,
        SessionEnd::Ended(EndReason::EndedByAdministrator)
    );
    local.write_all(b"x").await.ok();
    let stops = stack.wait_for_stops(1).await;
    assert_eq!(detail(&stops[0])["end_requested_by"], "cli:root");
}
