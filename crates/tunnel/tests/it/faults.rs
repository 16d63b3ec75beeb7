//! Faults and limits: the broker down or slow, sessions that expire, links cut mid-transfer
//! and resumed, slow and malformed clients, handshake floods, shutdown.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_link::client::{
    ClientConfig, ClientError, connect, handshake_at, read_server_message,
};
use portcullis_proto::tunnel::{ErrorCode, ServerMessage, client};
use portcullis_testkit::{Cutter, EchoTarget, bounded, closed_port, echo_through_cuts, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::relay::echo_round_trip;
use crate::support::{STEP, Stack, detail, ghost_credentials};

const LIMIT: Duration = Duration::from_secs(20);

async fn open_code(stack: &Stack, target: SocketAddr) -> Result<(), ClientError> {
    let (ticket, secret) = stack.ticket_to(target).await;
    handshake_at(&stack.address(), LIMIT, |random, out| {
        client::open(&ticket, &secret, random, out)
    })
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_broker_unavailable() {
    let closed = closed_port();
    let stack = Stack::with(|config| config.broker.url = format!("http://{closed}")).await;
    let echo = EchoTarget::start().await;
    let result = open_code(&stack, echo.addr).await;
    assert!(
        matches!(
            result,
            Err(ClientError::Refused(ErrorCode::BrokerUnavailable))
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_slower_than_the_call_timeout_is_broker_unavailable() {
    // A "broker" that accepts and never answers.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            keep.lock().await.push(stream);
        }
    });
    let stack = Stack::with(|config| {
        config.broker.url = format!("http://{address}");
        config.timeouts.broker_call_secs = 1;
    })
    .await;
    let echo = EchoTarget::start().await;
    // No bound on the wall time here: the broker call is real HTTP, so tokio's paused clock
    // cannot stand in for it. The refusal is the proof that the call timed out: the silent
    // broker never answers, so without the timeout the handshake would run into LIMIT.
    let result = open_code(&stack, echo.addr).await;
    assert!(
        matches!(
            result,
            Err(ClientError::Refused(ErrorCode::BrokerUnavailable))
        ),
        "{result:?}"
    );
    assert_eq!(stack.tunnel().shared().sessions.len(), 0);
}

/// On tokio's paused clock (current-thread runtime): the session is opened in real time
/// (the broker call uses threads the paused clock would not wait for), then the clock moves
/// past the maximum duration; it runs again before the stop goes to the broker.
#[tokio::test(flavor = "current_thread")]
async fn the_maximum_duration_ends_the_session_and_stop_counts_what_was_relayed() {
    let stack = Stack::with(|config| config.timeouts.max_session_secs = 2).await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, &[5u8; 12_345]).await;
    // Opened before the pause, the session's deadline comes before this sleep's end.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::time::resume();
    // The session expired: the local connection is closed.
    let mut rest = Vec::new();
    let read = bounded("the expiry", STEP, local.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(0) | Err(_)));
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"], 12_345, "{stop}");
    assert_eq!(stop["recv"], 12_345, "{stop}");
    assert_eq!(stack.tunnel().shared().sessions.len(), 0);
}

/// On tokio's paused clock (current-thread runtime): no broker call is made, the handshake
/// timeout is the server's tokio timer, so the test measures the clock it keeps.
#[tokio::test(flavor = "current_thread")]
async fn a_silent_client_is_closed_at_the_handshake_timeout() {
    let stack = Stack::with(|config| config.timeouts.handshake_secs = 1).await;
    tokio::time::pause();
    let mut silent = TcpStream::connect(stack.tunnel_addr()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    let read = bounded("the handshake timeout", STEP, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(2)).contains(&waited),
        "closed after {waited:?} on the test's clock, not at the 1 s timeout"
    );
    // Half a hello, then silence: the same.
    let mut slow = TcpStream::connect(stack.tunnel_addr()).await.unwrap();
    slow.write_all(b"PCTN\x01\x02abc").await.unwrap();
    let read = bounded("the handshake timeout", STEP, slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eventually("connections released", Duration::from_secs(5), || {
        stack.tunnel().shared().limits.connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_the_per_source_rate_are_busy() {
    let stack = Stack::with(|config| config.limits.handshakes_per_second_per_source = 1).await;
    let ghost = ghost_credentials([1; 16]);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let result = handshake_at(&stack.address(), LIMIT, |random, out| {
            client::attach(&ghost, random, out)
        })
        .await;
        match result {
            Err(ClientError::Refused(code)) => codes.push(code),
            other => panic!("{other:?}"),
        }
    }
    // A burst of two, then Busy.
    assert_eq!(
        codes,
        [
            ErrorCode::SessionUnknown,
            ErrorCode::SessionUnknown,
            ErrorCode::Busy,
            ErrorCode::Busy
        ]
    );
    assert!(ErrorCode::Busy.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_aborted_handshakes_leave_nothing_behind() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    // A live session must survive everything below.
    let forwarder = stack.forwarder(echo.addr).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"before").await;

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tasks = JoinSet::new();
    for round in 0..1_000u32 {
        let length = (next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        match round % 4 {
            // A valid prefix cut short.
            0 => {
                bytes = b"PCTN\x01\x02"
                    .iter()
                    .copied()
                    .chain(bytes)
                    .take(40)
                    .collect()
            }
            // A whole Open hello for an unknown ticket, then a truncated proof.
            1 => {
                let mut hello = b"PCTN\x01\x02".to_vec();
                hello.extend(std::iter::repeat_n(b'A', 48));
                hello.extend([0u8; 32 + 10]);
                bytes = hello;
            }
            _ => {}
        }
        let address = stack.tunnel_addr();
        tasks.spawn(async move {
            if let Ok(mut stream) = TcpStream::connect(address).await {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                let mut sink = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
                        .await;
            }
        });
        // Keep under the per-source connection cap.
        while tasks.len() >= 64 {
            tasks.join_next().await;
        }
    }
    bounded("the garbage rounds", STEP, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    // What stays: the live session's connection and its hold.
    eventually(
        "every aborted connection is released",
        Duration::from_secs(10),
        || stack.tunnel().shared().limits.connections() <= 2,
    )
    .await;
    assert_eq!(
        stack.tunnel().shared().sessions.len(),
        1,
        "only the live session"
    );
    echo_round_trip(&mut local, b"after").await;
    // The server still answers health checks.
    let mut test = connect(&stack.address()).await.unwrap();
    test.write_all(b"PCTN\x01\x01").await.unwrap();
    assert_eq!(
        read_server_message(&mut test).await.unwrap(),
        ServerMessage::TestAnswer
    );
    forwarder.end_session().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_transfer_resumes_without_losing_or_duplicating_a_byte() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let cutter = Cutter::start(stack.tunnel_addr()).await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let mut address = stack.address();
    address.port = cutter.addr.port();
    let forwarder =
        portcullis_link::client::Forwarder::start(address, ticket, secret, ClientConfig::default())
            .await
            .unwrap();
    let local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    let total: usize = 64 << 20;
    // Cut three times along the way.
    let (data, back) = echo_through_cuts(local, total, &cutter, 3).await;
    assert_eq!(back.len(), total, "no byte lost or duplicated");
    assert!(back == *data, "the bytes came back in order, intact");
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    let (sent, received) = forwarder.byte_counts();
    assert_eq!((sent, received), (total as u64, total as u64));
    assert!(stack.metric(r#"portcullis_tunnel_handshakes_total{reason="resume"}"#) >= 3.0);
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(
        stop["sent"], total as u64,
        "counted once, retransmissions excluded: {stop}"
    );
    assert_eq!(stop["recv"], total as u64, "{stop}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_sessions_and_sends_every_stop() {
    let mut stack = Stack::with(|config| config.timeouts.shutdown_grace_secs = 1).await;
    let echo = EchoTarget::start().await;
    let mut forwarders = Vec::new();
    let mut locals = Vec::new();
    for n in 0..3u8 {
        let forwarder = stack.forwarder(echo.addr).await;
        let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
        echo_round_trip(&mut local, &[n; 1000]).await;
        locals.push(local);
        forwarders.push(forwarder);
    }
    let tunnel = stack.tunnel.take().unwrap();
    bounded("the shutdown", STEP, tunnel.shutdown()).await;
    let stops = stack.audit("tunnel.stopped").await;
    assert_eq!(
        stops.len(),
        3,
        "every session reported before shutdown returned"
    );
    for stop in &stops {
        let stop = detail(stop);
        assert_eq!(
            (stop["sent"].as_u64(), stop["recv"].as_u64()),
            (Some(1000), Some(1000))
        );
    }
    for local in &mut locals {
        let mut rest = Vec::new();
        let read = bounded("the closed connection", STEP, local.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(0) | Err(_)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_beyond_max_sessions_are_busy_and_consume_nothing() {
    let stack = Stack::with(|config| config.limits.max_sessions = 1).await;
    let echo = EchoTarget::start().await;
    open_code(&stack, echo.addr).await.unwrap();
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let second = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::open(&ticket, &secret, random, out)
    })
    .await;
    assert!(
        matches!(second, Err(ClientError::Refused(ErrorCode::Busy))),
        "{second:?}"
    );
    // No broker call was made: the ticket is still redeemable.
    assert_eq!(stack.audit("tunnel.started").await.len(), 1);
}
