//! How sessions and connection ids begin and end (docs/protocol.md §8.1, §8.7, §8.9): a
//! refused `Resume` ends its connection id, a client gone before `Accept` leaves no session,
//! ending a session dials nothing, `max_sessions` holds however many `Open`s race, and a
//! finished close handshake is never taken for a drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_link::client::{ClientConfig, ClientError, handshake_at, read_server_message};
use portcullis_proto::ConnectionId;
use portcullis_proto::tunnel::{
    Connection, ConnectionConfig, ErrorCode, MAC_LEN, SessionCredentials, client, fresh_random,
};
use portcullis_testkit::{CLOSE_TARGET, EchoTarget, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::relay::echo_round_trip;
use crate::support::{STEP, Stack, close_local, detail};

const LIMIT: Duration = Duration::from_secs(20);

/// Opens a session for a new ticket to `target`; the open connection's stream and state.
async fn open_session(
    stack: &Stack,
    target: SocketAddr,
) -> (
    portcullis_link::TunnelStream,
    Connection,
    Arc<SessionCredentials>,
) {
    let (ticket, secret) = stack.ticket_to(target).await;
    let (stream, opened) = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::open(&ticket, &secret, random, out)
    })
    .await
    .unwrap();
    let credentials = Arc::new(opened.credentials);
    let established = opened.connection;
    let mut connection =
        Connection::new_client(established.connection_id, &ConnectionConfig::default());
    connection
        .attach_link(established.sealer, established.opener, 0)
        .unwrap();
    (stream, connection, credentials)
}

/// A `Resume` of `id` stating `received`: the server's answer.
async fn resume_code(
    stack: &Stack,
    credentials: &SessionCredentials,
    id: ConnectionId,
    received: u64,
) -> Result<(), ClientError> {
    handshake_at(&stack.address(), LIMIT, |random, out| {
        client::resume(credentials, id, received, random, out)
    })
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_ends_the_connection_id_and_closes_its_target() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (stream, connection, credentials) = open_session(&stack, echo.addr).await;
    let id = connection.id();
    eventually("the target is dialled", LIMIT, || echo.accepted() == 1).await;
    drop(stream);
    // The server sent nothing, so a Resume claiming 5 bytes received is refused after the
    // proof verified: the connection id ends for good (§8.7.4).
    let refused = resume_code(&stack, &credentials, id, 5).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused(ErrorCode::ResumeImpossible))
        ),
        "{refused:?}"
    );
    eventually("the target connection is closed", LIMIT, || {
        echo.closed() == 1
    })
    .await;
    let again = resume_code(&stack, &credentials, id, 0).await;
    assert!(
        matches!(
            again,
            Err(ClientError::Refused(ErrorCode::ResumeImpossible))
        ),
        "a later Resume of the ended id: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_right_after_its_proof_leaves_no_session_and_stop_comes_at_once() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let mut stream = TcpStream::connect(stack.tunnel_addr()).await.unwrap();
    let mut hello = Vec::new();
    let state = client::open(&ticket, &secret, fresh_random().unwrap(), &mut hello);
    stream.write_all(&hello).await.unwrap();
    let mut boxed: portcullis_link::TunnelStream = Box::new(stream);
    let challenge = read_server_message(&mut boxed).await.unwrap();
    let mut proof = Vec::new();
    let _ = state.handle(challenge, &mut proof).unwrap();
    assert_eq!(proof.len(), MAC_LEN);
    boxed.write_all(&proof).await.unwrap();
    // FIN right after the proof, before the Accept.
    drop(boxed);
    // The ticket was redeemed, so the broker hears stop(0/0) at once, not at the idle
    // timeout; no session, no target connection.
    let stops = bounded("the stop report", STEP, stack.wait_for_stops(1)).await;
    let stop = detail(&stops[0]);
    assert_eq!(
        (stop["sent"].as_u64(), stop["recv"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(stack.tunnel().shared().sessions.len(), 0);
    assert_eq!(echo.accepted(), 0, "no target was dialled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_with_no_connection_open_dials_nothing() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"one connection").await;
    close_local(&forwarder, local).await;
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    assert_eq!(detail(&stops[0])["sent"], 14);
    assert_eq!(echo.accepted(), 1, "EndSession dialled the target again");
}

/// A TCP relay to `upstream` that holds every chunk from its clients for `delay`: a broker
/// that is slow to answer `start`.
async fn slow_relay(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut down_read, mut down_write) = down.into_split();
                let (mut up_read, mut up_write) = up.into_split();
                let requests = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = down_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        if up_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = up_write.shutdown().await;
                };
                let answers = async {
                    let _ = tokio::io::copy(&mut up_read, &mut down_write).await;
                    let _ = down_write.shutdown().await;
                };
                tokio::join!(requests, answers);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_holds_while_opens_wait_on_a_slow_broker() {
    let mut stack = Stack::with(|config| config.limits.max_sessions = 1).await;
    let broker: SocketAddr = stack.config.broker.url["http://".len()..].parse().unwrap();
    let relay = slow_relay(broker, Duration::from_millis(500)).await;
    stack.config.broker.url = format!("http://{relay}");
    stack.tunnel.take().unwrap().shutdown().await;
    stack.start_tunnel().await;
    let echo = EchoTarget::start().await;
    let mut opens = JoinSet::new();
    for _ in 0..3 {
        let (ticket, secret) = stack.ticket_to(echo.addr).await;
        let address = stack.address();
        opens.spawn(async move {
            handshake_at(&address, LIMIT, |random, out| {
                client::open(&ticket, &secret, random, out)
            })
            .await
            .map(|(stream, _)| stream)
        });
    }
    let mut accepted = Vec::new();
    let mut busy = 0;
    while let Some(result) = bounded("the racing opens", STEP, opens.join_next()).await {
        match result.unwrap() {
            Ok(stream) => accepted.push(stream),
            Err(ClientError::Refused(ErrorCode::Busy)) => busy += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((accepted.len(), busy), (1, 2), "max_sessions = 1");
    assert!(stack.tunnel().shared().sessions.len() <= 1);
    // The refused ones made no broker call: their tickets are not redeemed.
    assert_eq!(stack.audit("tunnel.started").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_close_handshake_is_never_taken_for_a_drop() {
    // Two connections at most: a connection held for a resume that never comes would use
    // up the session's room within a few rounds.
    let stack = Stack::with(|config| {
        config.limits.max_connections_per_session = 2;
        config.limits.handshakes_per_second_per_source = 10_000;
    })
    .await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    for round in 0..200u32 {
        let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
        if round % 2 == 0 {
            // The program closes first.
            echo_round_trip(&mut local, &round.to_be_bytes()).await;
            local.shutdown().await.unwrap();
        } else {
            // The target closes first.
            local.write_all(CLOSE_TARGET).await.unwrap();
        }
        let mut rest = Vec::new();
        bounded("the close handshake", STEP, local.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "round {round}: {error}; the forwarder saw {:?}",
                    forwarder.errors()
                )
            });
        drop(local);
        eventually("the round's connection is done", LIMIT, || {
            forwarder.open_connections() == 0
        })
        .await;
    }
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    assert_eq!(
        stack.metric(r#"portcullis_tunnel_handshakes_total{reason="resume"}"#),
        0.0,
        "a finished connection was resumed"
    );
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    assert_eq!(
        detail(&stops[0])["sent"].as_u64(),
        detail(&stops[0])["recv"].as_u64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_local_connections_handshake_in_parallel() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    // Between the launcher and the tunnel server: a relay that holds every server answer
    // until four handshakes wait at once (or 3 s pass), and records the most seen waiting.
    let gate = HandshakeGate::start(stack.tunnel_addr(), 4).await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let mut address = stack.address();
    address.port = gate.addr.port();
    let forwarder =
        portcullis_link::client::Forwarder::start(address, ticket, secret, ClientConfig::default())
            .await
            .unwrap();
    // The session is open first (an Open must finish before anything attaches).
    let mut first = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut first, b"open").await;
    gate.reset();
    let mut tasks = JoinSet::new();
    for n in 0..4u8 {
        let local = forwarder.local_addr();
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(local).await.unwrap();
            echo_round_trip(&mut stream, &[n; 100]).await;
        });
    }
    while let Some(done) = bounded("the parallel connections", STEP, tasks.join_next()).await {
        done.unwrap();
    }
    assert!(
        gate.most_waiting() >= 4,
        "attaches waited for one another: at most {} handshakes at once",
        gate.most_waiting()
    );
    forwarder.end_session().await.unwrap();
}

/// A relay that counts handshakes waiting for their server's first answer, holding those
/// answers until `quorum` wait at once (or 3 s passed).
struct HandshakeGate {
    addr: SocketAddr,
    state: Arc<GateState>,
}

struct GateState {
    quorum: usize,
    waiting: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    open: tokio::sync::Notify,
}

impl HandshakeGate {
    async fn start(upstream: SocketAddr, quorum: usize) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(GateState {
            quorum,
            waiting: 0.into(),
            most: 0.into(),
            open: tokio::sync::Notify::new(),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut down_read, mut down_write) = down.into_split();
                    let (mut up_read, mut up_write) = up.into_split();
                    let requests = async {
                        let _ = tokio::io::copy(&mut down_read, &mut up_write).await;
                        let _ = up_write.shutdown().await;
                    };
                    let answers = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        let Ok(n) = up_read.read(&mut buf).await else {
                            return;
                        };
                        let now = state.waiting.fetch_add(1, Ordering::SeqCst) + 1;
                        state.most.fetch_max(now, Ordering::SeqCst);
                        if now >= state.quorum {
                            state.open.notify_waiters();
                        } else {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(3), state.open.notified())
                                    .await;
                        }
                        state.waiting.fetch_sub(1, Ordering::SeqCst);
                        if down_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy(&mut up_read, &mut down_write).await;
                        let _ = down_write.shutdown().await;
                    };
                    tokio::join!(requests, answers);
                });
            }
        });
        Self { addr, state }
    }

    /// Forgets what was seen so far.
    fn reset(&self) {
        self.state
            .most
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    fn most_waiting(&self) -> usize {
        self.state.most.load(std::sync::atomic::Ordering::SeqCst)
    }
}
