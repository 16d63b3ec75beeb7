//! What an attacker on the path can and cannot do (docs/protocol.md §7.3, §8.14;
//! §9 differences 2, 3 and 4): wrong proofs consume nothing, a ticket is redeemed once, a
//! recorded connection replays into nothing, a ticket of another tunnel group is refused
//! and stays valid.

use std::time::Duration;

use portcullis_broker::tickets::crypto::ticket_hash;
use portcullis_link::client::{ClientError, connect, handshake_at, read_server_message};
use portcullis_proto::tunnel::{ErrorCode, MAC_LEN, ServerMessage, client};
use portcullis_proto::{SharedSecret, TicketId};
use portcullis_testkit::EchoTarget;
use tokio::io::AsyncWriteExt;

use crate::relay::TestCert;
use crate::support::{Stack, now_ms};

const LIMIT: Duration = Duration::from_secs(20);

async fn open(
    stack: &Stack,
    ticket: &TicketId,
    secret: &SharedSecret,
) -> Result<portcullis_proto::tunnel::client::Established, ClientError> {
    handshake_at(&stack.address(), LIMIT, |random, out| {
        client::open(ticket, secret, random, out)
    })
    .await
    .map(|(_, opened)| opened.connection)
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn still_redeemable(stack: &Stack, ticket: &TicketId) -> bool {
    stack
        .broker
        .state
        .store
        .tunnel_ticket_for_redemption(&ticket_hash(ticket), now_ms())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proof_consumes_nothing_and_the_right_proof_then_works() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let wrong = SharedSecret::generate().unwrap();
    for _ in 0..3 {
        assert_eq!(
            refused(open(&stack, &ticket, &wrong).await),
            ErrorCode::AccessDenied
        );
    }
    assert!(still_redeemable(&stack, &ticket).await);
    assert_eq!(stack.audit("tunnel.bad_proof").await.len(), 3);
    let established = open(&stack, &ticket, &secret).await.unwrap();
    assert_eq!(established.connection_id.0, 1);
    assert!(!still_redeemable(&stack, &ticket).await);
    // The same ticket again, with the right proof: redeemed once only.
    assert_eq!(
        refused(open(&stack, &ticket, &secret).await),
        ErrorCode::AccessDenied
    );
    assert_eq!(stack.audit("tunnel.started").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_of_another_tunnel_group_is_refused_and_not_consumed() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_for_group(echo.addr, "dc2").await;
    assert_eq!(
        refused(open(&stack, &ticket, &secret).await),
        ErrorCode::AccessDenied
    );
    assert!(still_redeemable(&stack, &ticket).await);
    assert_eq!(stack.audit("tunnel.started").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_connection_replayed_byte_for_byte_is_refused() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    // Record what a real client sends for an Open and an Attach.
    let mut hello = Vec::new();
    let state = client::open(&ticket, &secret, [7; 32], &mut hello);
    let mut stream = connect(&stack.address()).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    let challenge = read_server_message(&mut stream).await.unwrap();
    let mut proof = Vec::new();
    let state = state.handle(challenge, &mut proof).unwrap();
    stream.write_all(&proof).await.unwrap();
    let accept = read_server_message(&mut stream).await.unwrap();
    let credentials = state.handle(accept).unwrap().credentials;

    let mut attach_hello = Vec::new();
    let attach = client::attach(&credentials, [8; 32], &mut attach_hello);
    let mut second = connect(&stack.address()).await.unwrap();
    second.write_all(&attach_hello).await.unwrap();
    let challenge = read_server_message(&mut second).await.unwrap();
    let mut attach_proof = Vec::new();
    let attach = attach.handle(challenge, &mut attach_proof).unwrap();
    second.write_all(&attach_proof).await.unwrap();
    attach
        .handle(read_server_message(&mut second).await.unwrap())
        .unwrap();

    // Replays: the server's random is fresh, so the recorded proofs no longer verify.
    for (hello, proof) in [(&hello, &proof), (&attach_hello, &attach_proof)] {
        assert_eq!(proof.len(), MAC_LEN);
        let mut replay = connect(&stack.address()).await.unwrap();
        replay.write_all(hello).await.unwrap();
        let challenge = read_server_message(&mut replay).await.unwrap();
        assert!(matches!(challenge, ServerMessage::Challenge { .. }));
        replay.write_all(proof).await.unwrap();
        assert_eq!(
            read_server_message(&mut replay).await.unwrap(),
            ServerMessage::Refuse(ErrorCode::AccessDenied)
        );
    }
    assert_eq!(stack.audit("tunnel.started").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_hellos_are_refused_with_their_codes() {
    let stack = Stack::start().await;
    let cases: [(&[u8], ErrorCode); 3] = [
        (b"PCTN\x02\x02", ErrorCode::UnsupportedVersion),
        (b"PCTN\x01\x09", ErrorCode::Malformed),
        (b"GET / HTTP/1.1\r\n", ErrorCode::Malformed),
    ];
    for (hello, code) in cases {
        let mut stream = connect(&stack.address()).await.unwrap();
        stream.write_all(hello).await.unwrap();
        assert_eq!(
            read_server_message(&mut stream).await.unwrap(),
            ServerMessage::Refuse(code),
            "{hello:?}"
        );
    }
    // An Attach to a session that does not exist.
    let ghost = portcullis_proto::tunnel::SessionCredentials::new(
        portcullis_proto::SessionId::from_bytes([1; 16]),
        portcullis_proto::tunnel::SessionKey::derive(
            &SharedSecret::generate().unwrap(),
            &TicketId::generate().unwrap(),
        ),
    );
    let result = handshake_at(&stack.address(), LIMIT, |random, out| {
        client::attach(&ghost, random, out)
    })
    .await;
    assert_eq!(refused(result), ErrorCode::SessionUnknown);
}

/// A PROXY v2 header for TCP over IPv4 from `source`.
fn proxy_v2(source: std::net::SocketAddrV4) -> Vec<u8> {
    let mut header = portcullis_proto::proxy_v2::SIGNATURE.to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(source.ip().octets());
    header.extend([127, 0, 0, 1]);
    header.extend(source.port().to_be_bytes());
    header.extend(7443u16.to_be_bytes());
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_v2_balancer_the_launcher_address_reaches_the_broker() {
    let stack = Stack::with(|config| {
        config.proxy_protocol = true;
        config.proxy_protocol_trusted = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let launcher = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 9), 40_000);

    // The balancer's health check: LOCAL, then Test.
    let mut check = connect(&stack.address()).await.unwrap();
    let mut local = portcullis_proto::proxy_v2::SIGNATURE.to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    local.extend(b"PCTN\x01\x01");
    check.write_all(&local).await.unwrap();
    assert_eq!(
        read_server_message(&mut check).await.unwrap(),
        ServerMessage::TestAnswer
    );

    // A relayed launcher: PROXY, then a whole Open.
    let mut stream = connect(&stack.address()).await.unwrap();
    let mut hello = proxy_v2(launcher);
    let state = client::open(&ticket, &secret, [3; 32], &mut hello);
    stream.write_all(&hello).await.unwrap();
    let challenge = read_server_message(&mut stream).await.unwrap();
    let mut proof = Vec::new();
    let state = state.handle(challenge, &mut proof).unwrap();
    stream.write_all(&proof).await.unwrap();
    state
        .handle(read_server_message(&mut stream).await.unwrap())
        .unwrap();
    let started = stack.audit("tunnel.started").await;
    assert_eq!(started[0].event.source_ip.as_deref(), Some("198.51.100.9"));

    // Without a header the connection is closed unanswered.
    let mut bare = connect(&stack.address()).await.unwrap();
    bare.write_all(b"PCTN\x01\x01").await.unwrap();
    assert!(read_server_message(&mut bare).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_balancers_may_send_a_proxy_v2_header() {
    // The balancers are on 10.0.0.0/8: this test's loopback client is not one of them.
    let stack = Stack::with(|config| {
        config.proxy_protocol = true;
        config.proxy_protocol_trusted = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let echo = EchoTarget::start().await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let forged = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 77), 40_000);
    let mut stream = connect(&stack.address()).await.unwrap();
    let mut hello = proxy_v2(forged);
    let _ = client::open(&ticket, &secret, [3; 32], &mut hello);
    // The connection is closed before anything is read: no Challenge, no broker call.
    let _ = stream.write_all(&hello).await;
    assert!(read_server_message(&mut stream).await.is_err());
    assert!(stack.audit("tunnel.started").await.is_empty());
    assert!(still_redeemable(&stack, &ticket).await);
    assert!(stack.metric(r#"portcullis_tunnel_limited_total{reason="proxy_untrusted"}"#) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_are_counted_per_source_before_tls() {
    let cert = TestCert::new();
    // One handshake per second, a burst of two.
    let stack = Stack::with(|config| {
        cert.serve(config);
        config.limits.handshakes_per_second_per_source = 1;
    })
    .await;
    let address = cert.address(&stack);
    let mut completed = 0;
    for _ in 0..6 {
        if connect(&address).await.is_ok() {
            completed += 1;
        }
    }
    // The burst, and at most one refilled while the loop ran; the rest never got TLS.
    assert!(
        (2..=3).contains(&completed),
        "{completed} TLS handshakes completed"
    );
    assert!(stack.metric(r#"portcullis_tunnel_limited_total{reason="handshake_rate"}"#) >= 3.0);
}
