//! A session lives as long as the launcher holds it (docs/protocol.md §8.1, §8.7.7):
//! reconnecting after a gap works whatever the gap, the idle timeout counts only time with
//! no connection and no application byte, and a session that ends anyway closes the
//! launcher's listener with the reason.
//!
//! The gaps run on tokio's paused clock (current-thread runtime): the session is opened in
//! real time (the broker call uses threads the paused clock would not wait for), then the
//! clock is paused and moved; attaches and the hold's pings involve only loopback sockets and
//! this runtime's tasks.

use std::time::Duration;

use portcullis_link::client::{ClientConfig, ClientError, Forwarder, SessionEnd, handshake_at};
use portcullis_proto::tunnel::{EndReason, ErrorCode, client};
use portcullis_testkit::{Cutter, EchoTarget, bounded, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::relay::echo_round_trip;
use crate::support::{STEP, Stack, close_local, detail, ghost_credentials};

const LIMIT: Duration = Duration::from_secs(20);

/// One local connection: a round trip, then the close handshake to its end.
async fn one_connection(forwarder: &Forwarder, data: &[u8]) {
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, data).await;
    close_local(forwarder, local).await;
}

/// Waits (on the test's clock) until the forwarder holds its session.
async fn held(forwarder: &Forwarder) {
    eventually("the session is held", LIMIT, || forwarder.is_held()).await;
}

/// A forwarder to an echo target whose tunnel connections go through a relay that can cut
/// them and switch to another tunnel server (a crash and a restart, as the launcher sees it).
async fn through_a_switch(stack: &Stack) -> (EchoTarget, Cutter, Forwarder) {
    let echo = EchoTarget::start().await;
    let switch = Cutter::start(stack.tunnel_addr()).await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let mut address = stack.address();
    address.port = switch.addr.port();
    let forwarder = Forwarder::start(address, ticket, secret, ClientConfig::default())
        .await
        .unwrap();
    (echo, switch, forwarder)
}

#[tokio::test(flavor = "current_thread")]
async fn a_held_session_takes_connections_after_0_s_and_after_15_s() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    one_connection(&forwarder, b"first").await;
    held(&forwarder).await;
    // 0 s: at once.
    one_connection(&forwarder, b"second, at once").await;
    // 15 s without a connection: past the 10 s an unheld session lingers.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        stack.tunnel().shared().sessions.len(),
        1,
        "the session lives"
    );
    one_connection(&forwarder, b"third, after 15 s").await;
    // And after two minutes more, the hold pinging all the while.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(forwarder.is_held());
    one_connection(&forwarder, b"fourth, after 2 min").await;
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    assert_eq!(
        echo.accepted(),
        4,
        "one target connection per local connection"
    );
    tokio::time::resume();
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let bytes = (5 + 15 + 17 + 19) as u64;
    assert_eq!(detail(&stops[0])["sent"].as_u64(), Some(bytes));
    assert_eq!(detail(&stops[0])["recv"].as_u64(), Some(bytes));
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_hold_the_session_ends_10_s_after_its_last_connection() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let config = ClientConfig {
        hold: false,
        ..ClientConfig::default()
    };
    let forwarder = stack.forwarder_with(echo.addr, config).await;
    one_connection(&forwarder, b"first").await;
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(15)).await;
    eventually("the unheld session ended", LIMIT, || {
        stack.tunnel().shared().sessions.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_idle_timeout_counts_only_time_without_a_connection() {
    let stack = Stack::with(|config| config.timeouts.idle_secs = 60).await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    let mut open = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut open, b"a terminal nobody types in").await;
    held(&forwarder).await;
    tokio::time::pause();
    // A connected connection is never idle, however long it is silent.
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert_eq!(forwarder.session_end(), None);
    echo_round_trip(&mut open, b"still there").await;
    close_local(&forwarder, open).await;
    // Held but unused: the idle timeout ends it, pings or not, and the launcher is told.
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(forwarder.session_end(), None, "not idle yet");
    let end = bounded("the end of the idle session", STEP, forwarder.ended()).await;
    assert_eq!(end, SessionEnd::Ended(EndReason::IdleTimeout));
    // The listener is closed instead of accepting connections that would fail.
    tokio::task::yield_now().await;
    assert!(TcpStream::connect(forwarder.local_addr()).await.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn the_maximum_duration_reaches_the_launcher_over_the_hold() {
    let stack = Stack::with(|config| config.timeouts.max_session_secs = 100).await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    one_connection(&forwarder, b"first").await;
    held(&forwarder).await;
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(95)).await;
    assert_eq!(forwarder.session_end(), None);
    let end = bounded("the end of the session", STEP, forwarder.ended()).await;
    assert_eq!(end, SessionEnd::Ended(EndReason::MaxDuration));
    assert!(TcpStream::connect(forwarder.local_addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_the_launcher_over_the_hold() {
    let mut stack = Stack::with(|config| config.timeouts.shutdown_grace_secs = 1).await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    one_connection(&forwarder, b"first").await;
    held(&forwarder).await;
    bounded(
        "the shutdown",
        STEP,
        stack.tunnel.take().unwrap().shutdown(),
    )
    .await;
    let end = bounded("the end of the session", STEP, forwarder.ended()).await;
    assert_eq!(end, SessionEnd::Ended(EndReason::ShuttingDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_hold_is_re_established_and_a_restarted_server_ends_the_session() {
    let mut stack = Stack::start().await;
    let (_echo, switch, forwarder) = through_a_switch(&stack).await;
    one_connection(&forwarder, b"first").await;
    held(&forwarder).await;
    // The hold drops: the launcher holds the session again at once.
    switch.cut_all();
    eventually("a second hold", LIMIT, || {
        stack.metric(r#"portcullis_tunnel_handshakes_total{reason="hold"}"#) >= 2.0
    })
    .await;
    held(&forwarder).await;
    one_connection(&forwarder, b"after the drop").await;
    assert_eq!(forwarder.session_end(), None);
    // The tunnel server is replaced by a new process that never heard of the session,
    // without a word to the launcher (a crash): the hold cannot be re-established.
    let old = stack.tunnel.take().unwrap();
    stack.start_tunnel().await;
    switch.switch_to(stack.tunnel_addr());
    switch.cut_all();
    let end = bounded("the end of the session", STEP, forwarder.ended()).await;
    assert_eq!(end, SessionEnd::Unknown);
    assert!(TcpStream::connect(forwarder.local_addr()).await.is_err());
    drop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_ends_the_session_for_an_open_connection_too() {
    let mut stack = Stack::start().await;
    let (_echo, switch, forwarder) = through_a_switch(&stack).await;
    let mut open = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut open, b"open across the restart").await;
    held(&forwarder).await;
    // The server crashes and a new process takes its place: the open connection's resume
    // is refused with SessionUnknown, like the hold.
    let old = stack.tunnel.take().unwrap();
    stack.start_tunnel().await;
    switch.switch_to(stack.tunnel_addr());
    switch.cut_all();
    let mut rest = Vec::new();
    let read = bounded(
        "the local connection's end",
        STEP,
        open.read_to_end(&mut rest),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {rest:?}");
    let end = bounded("the end of the session", STEP, forwarder.ended()).await;
    assert_eq!(end, SessionEnd::Unknown);
    // The session's end, not a failed tunnel: the launcher says why and exits 0.
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    drop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_hold_replaces_the_older_one() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let (_open, opened) = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::open(&ticket, &secret, random, out)
    })
    .await
    .unwrap();
    let credentials = opened.credentials;
    let (mut first, accepted) = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::hold(&credentials, random, out)
    })
    .await
    .unwrap();
    assert_eq!(accepted.connection_id.0, 0);
    let (_second, _) = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::hold(&credentials, random, out)
    })
    .await
    .unwrap();
    // The server closed the first one without a record.
    let mut rest = Vec::new();
    let read = bounded("the older hold's end", STEP, first.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {rest:?}");
    eventually("one hold", LIMIT, || {
        stack.metric("portcullis_tunnel_holds") == 1.0
    })
    .await;
    // A hold counts against no connection limit and dials nothing.
    assert_eq!(echo.accepted(), 1);
    // A hold of a session the server does not know is refused with SessionUnknown.
    let ghost = ghost_credentials([7; 16]);
    let refused = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::hold(&ghost, random, out)
    })
    .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused(ErrorCode::SessionUnknown))
        ),
        "{refused:?}"
    );
}
