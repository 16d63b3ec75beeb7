//! Sessions that work: Test, Open, Attach, both directions, half-close, accounting.

use std::time::Duration;

use portcullis_link::client::{TunnelAddress, connect, read_server_message};
use portcullis_proto::tunnel::{ErrorCode, ServerMessage, client};
use portcullis_testkit::{EchoTarget, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{STEP, Stack, detail};

/// A self-signed certificate for `tunnel.test` in files the tunnel server reads, and the
/// launcher's side that trusts it.
pub(crate) struct TestCert {
    _files: tempfile::TempDir,
    certified: rcgen::CertifiedKey,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl TestCert {
    pub(crate) fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["tunnel.test".into()]).unwrap();
        let files = tempfile::tempdir().unwrap();
        let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        Self {
            _files: files,
            certified,
            cert,
            key,
        }
    }

    /// Makes the tunnel server serve TLS with this certificate.
    pub(crate) fn serve(&self, config: &mut portcullis_tunnel::config::TunnelConfig) {
        config.tls.cert = Some(self.cert.clone());
        config.tls.key = Some(self.key.clone());
    }

    /// The stack's tunnel address over TLS 1.3 to `tunnel.test`, trusting only this
    /// certificate.
    pub(crate) fn address(&self, stack: &Stack) -> TunnelAddress {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certified.cert.der().clone()).unwrap();
        let tls = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let mut address = stack.address();
        address.tls = Some((tls, "tunnel.test".try_into().unwrap()));
        address
    }
}

/// Writes `data` to a local connection and reads the echo back.
pub(crate) async fn echo_round_trip(local: &mut TcpStream, data: &[u8]) {
    local.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    bounded("the echo", STEP, local.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(back, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_hello_is_answered_ok_without_a_broker_call() {
    let stack = Stack::start().await;
    let mut stream = connect(&stack.address()).await.unwrap();
    let mut hello = Vec::new();
    let state = client::test(&mut hello);
    stream.write_all(&hello).await.unwrap();
    let answer = read_server_message(&mut stream).await.unwrap();
    assert_eq!(answer, ServerMessage::TestAnswer);
    state.handle(answer).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the server closes after OK");
    assert_eq!(stack.audit("tunnel.started").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_relays_both_ways_and_stop_reports_the_bytes() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"hello through the tunnel").await;
    // A bulk transfer, more than the replay buffer, in both directions.
    let bulk: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = local.into_split();
    let sender = {
        let bulk = bulk.clone();
        tokio::spawn(async move {
            write.write_all(&bulk).await.unwrap();
            write.shutdown().await.unwrap();
        })
    };
    let mut back = Vec::new();
    bounded("the bulk echo", STEP, read.read_to_end(&mut back))
        .await
        .unwrap();
    sender.await.unwrap();
    assert!(back == bulk, "the bulk transfer came back intact");
    let total = (bulk.len() + 24) as u64;
    assert_eq!(forwarder.byte_counts(), (total, total));
    bounded("ending the session", STEP, forwarder.end_session())
        .await
        .unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"], total, "{stop}");
    assert_eq!(stop["recv"], total, "{stop}");
    assert_eq!(stack.metric("portcullis_tunnel_sessions"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_connections_share_a_session_and_the_seventeenth_is_refused() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    let mut locals = Vec::new();
    for n in 0..16u8 {
        let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
        echo_round_trip(&mut local, &[n; 100]).await;
        locals.push(local);
    }
    assert_eq!(echo.accepted(), 16);
    assert_eq!(
        stack.audit("tunnel.started").await.len(),
        1,
        "one redemption"
    );
    // The 17th connection is refused with TooManyConnections; the forwarder closes it.
    let mut extra = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = bounded("the refused connection", STEP, extra.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)));
    eventually("the refusal is recorded", Duration::from_secs(5), || {
        forwarder
            .errors()
            .iter()
            .any(|error| error.contains(&ErrorCode::TooManyConnections.to_string()))
    })
    .await;
    // The sixteen still work.
    for (n, local) in locals.iter_mut().enumerate() {
        echo_round_trip(local, &[n as u8; 10]).await;
    }
    // Closing one frees a place.
    drop(locals.pop());
    eventually("a connection slot frees", Duration::from_secs(5), || {
        stack.metric("portcullis_tunnel_connections") <= 15.0
    })
    .await;
    let mut again = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut again, b"after a close").await;
    forwarder.end_session().await.unwrap();
    stack.wait_for_stops(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_half_close_reaches_the_program_and_data_still_flows_back() {
    let stack = Stack::start().await;
    // A target that reads everything, then answers with its length after EOF.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        stream
            .write_all(format!("{} bytes", all.len()).as_bytes())
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
    });
    let forwarder = stack.forwarder(target).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    local.write_all(&[7u8; 100_000]).await.unwrap();
    local.shutdown().await.unwrap();
    let mut answer = String::new();
    bounded(
        "the answer after the half-close",
        STEP,
        local.read_to_string(&mut answer),
    )
    .await
    .unwrap();
    assert_eq!(answer, "100000 bytes");
    forwarder.end_session().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_an_error_record_and_the_session_survives() {
    let stack = Stack::start().await;
    let closed = portcullis_testkit::closed_port();
    let forwarder = stack.forwarder(closed).await;
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    let mut buf = Vec::new();
    bounded(
        "the closed local connection",
        STEP,
        local.read_to_end(&mut buf),
    )
    .await
    .unwrap();
    assert!(buf.is_empty());
    // The session is alive: the redemption happened once, and it ends normally.
    assert_eq!(stack.audit("tunnel.started").await.len(), 1);
    assert_eq!(stack.tunnel().shared().sessions.len(), 1);
    forwarder.end_session().await.unwrap();
    stack.wait_for_stops(1).await;
}

/// The tunnel address type is what the launcher builds from params.
#[test]
fn tunnel_addresses_debug_without_tls_material() {
    let address = TunnelAddress {
        host: "tunnel.example".into(),
        port: 7443,
        tls: None,
    };
    assert!(format!("{address:?}").contains("tunnel.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_over_tls_with_the_hybrid_key_exchange() {
    let cert = TestCert::new();
    let stack = Stack::with(|config| {
        cert.serve(config);
        config.tls.require_post_quantum = true;
    })
    .await;
    let echo = EchoTarget::start().await;
    let address = cert.address(&stack);
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let forwarder = portcullis_link::client::Forwarder::start(
        address,
        ticket,
        secret,
        portcullis_link::client::ClientConfig::default(),
    )
    .await
    .unwrap();
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"over TLS 1.3 with X25519MLKEM768").await;
    let mut second = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut second, b"attached over TLS").await;
    forwarder.end_session().await.unwrap();
    stack.wait_for_stops(1).await;
    // A plain-TCP client gets nothing from a TLS listener.
    let mut plain = connect(&stack.address()).await.unwrap();
    plain.write_all(b"PCTN\x01\x01").await.unwrap();
    assert!(read_server_message(&mut plain).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_health_check_and_connection_counts() {
    let stack = Stack::start().await;
    portcullis_link::client::test_server(&stack.address(), Duration::from_secs(5))
        .await
        .unwrap();
    let echo = EchoTarget::start().await;
    let forwarder = stack.forwarder(echo.addr).await;
    assert_eq!(forwarder.accepted_connections(), 0);
    let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    echo_round_trip(&mut local, b"count me").await;
    assert_eq!(
        (
            forwarder.accepted_connections(),
            forwarder.open_connections()
        ),
        (1, 1)
    );
    local.shutdown().await.unwrap();
    let mut rest = Vec::new();
    local.read_to_end(&mut rest).await.unwrap();
    eventually("the local connection ends", Duration::from_secs(5), || {
        forwarder.open_connections() == 0
    })
    .await;
    forwarder.stop_listening();
    forwarder.end_session().await.unwrap();
}
