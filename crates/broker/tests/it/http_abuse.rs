//! The broker under abuse (issue 7): invalid keys, cross-site requests, oversized names,
//! idle and excess connections, TLS key-exchange policy, login floods. Each test failed
//! on the code before its fix.

use crate::support::broker::{
    Launcher, PASSWORD, TestBroker, assert_access_denied, metric, proof_for,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_tunnel_server_key_is_denied_and_consumes_nothing() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.shell).await;
    let opened = Launcher::portcullis()
        .exchange_verified(&broker, &launch.url)
        .await;
    let ticket = opened.tunnel_ticket();
    let proof = proof_for(&opened.tunnel_secret(), &ticket);

    // A right-length key that fails the FIPS 203 modulus check, with the right proof:
    // refused before the ticket is consumed (it used to be consumed, then sealing failed).
    let mut body: Value =
        serde_json::from_slice(&world.dc1.start_body(&ticket, Some(&proof))).unwrap();
    body["kem_kyber_key"] = json!(portcullis_proto::b64::encode(&[0xff; 1184]));
    let reply = world
        .dc1
        .post(&broker, serde_json::to_vec(&body).unwrap())
        .await;
    assert_access_denied(&reply);
    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="invalid_request"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="internal"}"#
        ),
        0.0
    );

    // The ticket still works with a valid key.
    world.dc1.redeem(&broker, &ticket, Some(&proof)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = root.path().join("data");
    let configured = data_dir.clone();
    // Plain HTTP: the test client reads the certificate from the builder's own directory.
    let broker = TestBroker::builder()
        .plain_http()
        .config(move |config| config.data_dir = configured)
        .start()
        .await;
    // Write something so that the WAL and its index exist.
    broker.world().await;
    assert_eq!(mode(&data_dir), 0o700);
    for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_are_capped_and_stored_with_control_characters_escaped() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let audit_rows = || async { broker.store().audit_tail(1000).await.unwrap().len() };
    let before = audit_rows().await;

    // 65,000 bytes used to be a failed login: an audit row and a limiter key that size.
    let long = "a".repeat(65_000);
    let reply = broker.try_login(&long, "wrong").await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::BAD_REQUEST,
        "{}",
        reply.body
    );
    assert_eq!(audit_rows().await, before);
    assert_eq!(broker.state().logins_per_user.len(), 0);
    let at_limit = "b".repeat(128);
    let reply = broker.try_login(&at_limit, "wrong").await;
    assert_eq!(reply.status, reqwest::StatusCode::UNAUTHORIZED);

    // Control characters reach the audit log escaped.
    let reply = broker.try_login("eve\u{1b}[31m\nroot", "wrong").await;
    assert_eq!(reply.status, reqwest::StatusCode::UNAUTHORIZED);
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.kind, "login.failed");
    assert_eq!(
        events[0].event.username.as_deref(),
        Some("eve\\u{1b}[31m\\u{a}root")
    );
}

/// Issue 7, point 7 (part): TLS 1.2 is off unless `tls.allow_tls12` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_is_refused_by_default_and_accepted_when_allowed() {
    async fn health_with_tls12(broker: &TestBroker) -> Result<reqwest::StatusCode, String> {
        let cert = portcullis_broker::tls::self_signed_paths(broker.data_dir()).0;
        let pem = std::fs::read(cert).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        client
            .get(broker.url("/health"))
            .send()
            .await
            .map(|response| response.status())
            .map_err(|error| error.to_string())
    }
    let strict = TestBroker::start().await;
    assert!(health_with_tls12(&strict).await.is_err());
    assert_eq!(
        strict.get("/health", None).await.status,
        reqwest::StatusCode::OK,
        "TLS 1.3 works"
    );
    let lenient = TestBroker::builder()
        .config(|config| config.tls.allow_tls12 = true)
        .start()
        .await;
    assert_eq!(
        health_with_tls12(&lenient).await.unwrap(),
        reqwest::StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------
// Point 1: idle and excess connections, HTTP/1.1 only

mod connections {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use portcullis_broker::config::BrokerConfig;
    use rustls::crypto::SupportedKxGroup;
    use rustls::crypto::aws_lc_rs::kx_group;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, NamedGroup, RootCertStore};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    use crate::support::broker::{BrokerBuilder, TestBroker};

    /// How long a test waits for the broker to close a connection it should close.
    const CLOSE_WITHIN: Duration = Duration::from_secs(5);

    /// `builder` with `tweak` applied to its configuration.
    fn with_limits(builder: BrokerBuilder, tweak: fn(&mut BrokerConfig)) -> BrokerBuilder {
        builder.config(tweak)
    }

    async fn tcp(broker: &TestBroker) -> TcpStream {
        TcpStream::connect(broker.addr()).await.unwrap()
    }

    /// Reads until the broker closes the connection: everything it sent, and how long that
    /// took. Fails the test if it stays open for [`CLOSE_WITHIN`].
    async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let mut received = Vec::new();
        let read = tokio::time::timeout(CLOSE_WITHIN, async {
            let mut buf = [0; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "the connection is still open after {CLOSE_WITHIN:?}; received {:?}",
            String::from_utf8_lossy(&received)
        );
        (received, started.elapsed())
    }

    fn roots(broker: &TestBroker) -> RootCertStore {
        let path = portcullis_broker::tls::self_signed_paths(broker.data_dir()).0;
        let pem = std::fs::read(path).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in pem_certs(&pem) {
            roots.add(cert).unwrap();
        }
        roots
    }

    fn pem_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A TLS 1.3 client offering `groups` in that order (the first gets a key share).
    pub(super) fn tls_client(
        broker: &TestBroker,
        groups: Vec<&'static dyn SupportedKxGroup>,
    ) -> Arc<ClientConfig> {
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: groups,
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots(broker))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS handshake with the broker.
    pub(super) async fn tls_connect(
        broker: &TestBroker,
        client: Arc<ClientConfig>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp(broker).await).await
    }

    pub(super) fn negotiated_group(stream: &TlsStream<TcpStream>) -> Option<NamedGroup> {
        stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|group| group.name())
    }

    pub(super) async fn health_on(
        stream: &mut (impl AsyncRead + tokio::io::AsyncWrite + Unpin),
    ) -> String {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0; 4096];
        // Read the head and the (small) body: until the blank line and some body.
        while !String::from_utf8_lossy(&received).contains("\r\n\r\n") {
            let n = tokio::time::timeout(CLOSE_WITHIN, stream.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "closed before answering");
            received.extend_from_slice(&buf[..n]);
        }
        // Let the rest of the body arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        String::from_utf8_lossy(&received).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_connection_is_closed_after_the_idle_timeout() {
        let broker = with_limits(TestBroker::builder().plain_http(), |config| {
            config.limits.idle_timeout_secs = 1;
        })
        .start()
        .await;
        let mut silent = tcp(&broker).await;
        let (received, elapsed) = read_until_closed(&mut silent).await;
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_connection_silent_after_its_handshake_is_closed() {
        let broker = with_limits(TestBroker::builder(), |config| {
            config.limits.idle_timeout_secs = 1;
            config.limits.tls_handshake_timeout_secs = 1;
        })
        .start()
        .await;
        // After the handshake (the default rustls groups): closed after 1 s idle.
        let client = tls_client(&broker, vec![kx_group::X25519MLKEM768, kx_group::X25519]);
        let mut stream = tls_connect(&broker, client).await.unwrap();
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "ALPN offers HTTP/1.1 only"
        );
        let (_, elapsed) = read_until_closed(&mut stream).await;
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        // Before the handshake: closed by the handshake timeout.
        let mut silent = tcp(&broker).await;
        let (received, _) = read_until_closed(&mut silent).await;
        assert!(received.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_idle_between_requests_is_closed() {
        let broker = with_limits(TestBroker::builder().plain_http(), |config| {
            config.limits.idle_timeout_secs = 1;
        })
        .start()
        .await;
        let mut stream = tcp(&broker).await;
        // Requests 0.5 s apart keep it open past the idle timeout…
        for round in 0..3 {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let answer = health_on(&mut stream).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        // …and 1 s without one closes it (`health_on` waited 0.1 s after the answer).
        let (received, elapsed) = read_until_closed(&mut stream).await;
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn headers_sent_too_slowly_close_the_connection() {
        let broker = with_limits(TestBroker::builder().plain_http(), |config| {
            config.limits.header_read_timeout_secs = 1;
        })
        .start()
        .await;
        let mut stream = tcp(&broker).await;
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        let (_, elapsed) = read_until_closed(&mut stream).await;
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connection_cap_refuses_the_next_and_recovers() {
        let broker = with_limits(TestBroker::builder().plain_http(), |config| {
            config.limits.max_connections = 3;
        })
        .start()
        .await;
        let mut open = Vec::new();
        for _ in 0..3 {
            let mut stream = tcp(&broker).await;
            // Each is served: the cap is about open connections, not requests.
            let answer = health_on(&mut stream).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            open.push(stream);
        }
        let mut fourth = tcp(&broker).await;
        let _ = fourth
            .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
            .await;
        let (received, elapsed) = read_until_closed(&mut fourth).await;
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "closed at once: {elapsed:?}"
        );
        assert_eq!(broker.state().metrics.connections.refused.get(), 1);
        assert!(
            broker
                .state()
                .metrics
                .render()
                .contains("portcullis_connections_refused_total 1"),
        );

        drop(open);
        let deadline = Instant::now() + CLOSE_WITHIN;
        loop {
            let mut stream = tcp(&broker).await;
            let _ = stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
                .await;
            let (received, _) = read_until_closed(&mut stream).await;
            if String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "/health never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The HTTP/2 connection preface and an empty SETTINGS frame.
    const H2_PREFACE: &[u8] =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

    fn assert_not_http2(received: &[u8]) {
        // An HTTP/2 server would answer with its SETTINGS frame (type 4 at byte 3).
        let text = String::from_utf8_lossy(received);
        assert!(
            received.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "answered {text:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prior_knowledge_http2_is_not_answered_as_http2() {
        let broker = TestBroker::builder().plain_http().start().await;
        let mut stream = tcp(&broker).await;
        stream.write_all(H2_PREFACE).await.unwrap();
        let (received, _) = read_until_closed(&mut stream).await;
        assert_not_http2(&received);

        // Over TLS too, with `h2` offered in ALPN first.
        let broker = TestBroker::start().await;
        let client = tls_client(&broker, vec![kx_group::X25519MLKEM768]);
        let mut stream = tls_connect(&broker, client).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        stream.write_all(H2_PREFACE).await.unwrap();
        let (received, _) = read_until_closed(&mut stream).await;
        assert_not_http2(&received);
        assert_eq!(
            broker.get("/health", None).await.status,
            reqwest::StatusCode::OK
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_closes_idle_connections_and_stops_listening() {
        let broker = TestBroker::builder().plain_http().start().await;
        let mut idle = tcp(&broker).await;
        let answer = health_on(&mut idle).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let addr = broker.addr();
        let started = Instant::now();
        broker.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let (received, _) = read_until_closed(&mut idle).await;
        assert!(received.is_empty());
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Point 7: TLS key exchange

mod tls_policy {
    use rustls::NamedGroup;
    use rustls::crypto::aws_lc_rs::kx_group;

    use super::connections::{health_on, negotiated_group, tls_client, tls_connect};
    use crate::support::broker::TestBroker;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hybrid_is_chosen_whatever_the_clients_order() {
        let broker = TestBroker::start().await;
        for groups in [
            vec![kx_group::X25519, kx_group::X25519MLKEM768],
            vec![
                kx_group::SECP256R1,
                kx_group::X25519,
                kx_group::X25519MLKEM768,
            ],
            vec![kx_group::X25519MLKEM768, kx_group::X25519],
        ] {
            let names: Vec<_> = groups.iter().map(|group| group.name()).collect();
            let stream = tls_connect(&broker, tls_client(&broker, groups))
                .await
                .unwrap();
            assert_eq!(
                negotiated_group(&stream),
                Some(NamedGroup::X25519MLKEM768),
                "{names:?}"
            );
        }
        // A classical-only client still gets in, classically.
        let classical = tls_client(&broker, vec![kx_group::X25519]);
        let stream = tls_connect(&broker, classical).await.unwrap();
        assert_eq!(negotiated_group(&stream), Some(NamedGroup::X25519));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn require_post_quantum_refuses_classical_clients() {
        let broker = TestBroker::builder()
            .config(|config| config.tls.require_post_quantum = true)
            .start()
            .await;
        for groups in [
            vec![kx_group::X25519],
            vec![kx_group::SECP256R1, kx_group::SECP384R1],
        ] {
            let client = tls_client(&broker, groups);
            assert!(tls_connect(&broker, client).await.is_err());
        }
        let hybrid_second = tls_client(&broker, vec![kx_group::X25519, kx_group::X25519MLKEM768]);
        let mut stream = tls_connect(&broker, hybrid_second).await.unwrap();
        assert_eq!(negotiated_group(&stream), Some(NamedGroup::X25519MLKEM768));
        let answer = health_on(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

// ---------------------------------------------------------------------------------------
// Point 5: cross-site requests

mod cross_site {
    use reqwest::StatusCode;
    use serde_json::{Value, json};

    use crate::support::broker::{PASSWORD, Reply, Session, TestBroker, send};

    /// `POST path` with `headers` added.
    async fn post(
        broker: &TestBroker,
        path: &str,
        body: &Value,
        session: Option<&Session>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = broker.http.post(broker.url(path)).json(body);
        if let Some(session) = session {
            request = request.header("cookie", session.cookie());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request).await
    }

    /// A broker whose public URL is the address it listens on (the test configuration's
    /// port 0 would make its origin `https://127.0.0.1:0`).
    async fn broker_at_its_public_url(login_attempts_per_user: u32) -> TestBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        TestBroker::builder()
            .config(move |config| {
                config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                config.limits.login_attempts_per_minute_per_user = login_attempts_per_user;
            })
            .start()
            .await
    }

    fn assert_refused(reply: &Reply, what: &str) {
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            reply.body
        );
        assert_eq!(
            reply.json(),
            json!({ "error": "cross-site request refused" }),
            "{what}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_changing_requests_from_other_sites_are_refused() {
        let broker = broker_at_its_public_url(5).await;
        let world = broker.world().await;
        let alice = broker.login("alice", PASSWORD).await;
        let own_origin = broker.base.clone();
        let refused: [&[(&str, &str)]; 7] = [
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
            // The broker's host on another port or scheme is another origin.
            &[("origin", "http://127.0.0.1")],
            &[("origin", "https://localhost")],
            &[("sec-fetch-site", "cross-site")],
            // A sibling subdomain: SameSite=Strict cookies do not stop it.
            &[("sec-fetch-site", "same-site")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", own_origin.as_str()),
            ],
        ];
        let connect = format!("/api/services/{}/connect", world.shell.0);
        let login = json!({ "username": "alice", "password": PASSWORD });
        for headers in refused {
            let what = format!("{headers:?}");
            let reply = post(&broker, "/api/login", &login, None, headers).await;
            assert_refused(&reply, &format!("login {what}"));
            let reply = post(&broker, &connect, &json!({}), Some(&alice), headers).await;
            assert_refused(&reply, &format!("connect {what}"));
            let reply = post(&broker, "/api/logout", &json!({}), Some(&alice), headers).await;
            assert_refused(&reply, &format!("logout {what}"));
        }
        // Nothing was done: alice's session still works.
        broker.services(&alice).await;
        assert_eq!(broker.state().metrics.tickets_issued.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_origin_and_header_less_requests_are_allowed() {
        let broker = broker_at_its_public_url(100).await;
        let world = broker.world().await;
        let own_origin = broker.base.clone();
        let allowed: [&[(&str, &str)]; 4] = [
            // Scripts, curl, the launcher.
            &[],
            &[("origin", own_origin.as_str())],
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", own_origin.as_str()),
            ],
            // Typed in the address bar or a bookmark.
            &[("sec-fetch-site", "none")],
        ];
        let connect = format!("/api/services/{}/connect", world.shell.0);
        let login = json!({ "username": "alice", "password": PASSWORD });
        for headers in allowed {
            let what = format!("{headers:?}");
            let reply = post(&broker, "/api/login", &login, None, headers).await;
            assert_eq!(reply.status, StatusCode::OK, "login {what}: {}", reply.body);
            let session = Session::from_reply(&reply);
            let reply = post(&broker, &connect, &json!({}), Some(&session), headers).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "connect {what}: {}",
                reply.body
            );
            let reply = post(&broker, "/api/logout", &json!({}), Some(&session), headers).await;
            assert!(reply.status.is_success(), "logout {what}: {}", reply.status);
        }
        // Reading stays possible cross-site (CORS keeps the answer from the other site).
        let alice = broker.login("alice", PASSWORD).await;
        let reply = send(
            broker
                .http
                .get(broker.url("/api/services"))
                .header("cookie", alice.cookie())
                .header("origin", "https://evil.example"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}
