#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    roots: RootCertStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    Fixture {
        _dir: dir,
        cert,
        key,
        roots,
    }
}

impl Fixture {
    fn acceptor(&self, policy: &TlsPolicy) -> TlsAcceptor {
        TlsAcceptor::from_pem_files(&self.cert, &self.key, policy).unwrap()
    }
}

fn client(
    roots: &RootCertStore,
    groups: Vec<&'static dyn SupportedKxGroup>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider(groups))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
    )
}

/// What one side of a handshake ended with: the version and group, or its error.
type Outcome = io::Result<(Option<rustls::ProtocolVersion>, Option<NamedGroup>)>;

/// A handshake over an in-memory pipe.
async fn handshake(acceptor: &TlsAcceptor, client: Arc<ClientConfig>) -> (Outcome, Outcome) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    // Both streams live until both sides are done: the server still writes its session
    // tickets after the client has finished.
    let (server, client) = tokio::join!(
        acceptor.accept(server_io),
        connector.connect(name, client_io)
    );
    let server = server.map(|stream| {
        let conn = stream.get_ref().1;
        (
            conn.protocol_version(),
            conn.negotiated_key_exchange_group()
                .map(|group| group.name()),
        )
    });
    let client = client.map(|stream| {
        let conn = stream.get_ref().1;
        (
            conn.protocol_version(),
            conn.negotiated_key_exchange_group()
                .map(|group| group.name()),
        )
    });
    (server, client)
}

fn group(outcome: Outcome) -> Option<NamedGroup> {
    outcome.unwrap().1
}

#[tokio::test]
async fn a_client_preferring_x25519_gets_the_hybrid() {
    let fixture = fixture();
    let acceptor = fixture.acceptor(&TlsPolicy::default());
    // x25519 first: the client sends an x25519 key share only, and the server asks for the
    // hybrid with a HelloRetryRequest.
    let client = client(
        &fixture.roots,
        vec![kx_group::X25519, kx_group::X25519MLKEM768],
        &[&TLS13],
    );
    let (server, client) = handshake(&acceptor, client).await;
    assert_eq!(group(server), Some(HYBRID_GROUP));
    assert_eq!(group(client), Some(HYBRID_GROUP));
}

#[tokio::test]
async fn a_default_rustls_client_gets_the_hybrid() {
    let fixture = fixture();
    let acceptor = fixture.acceptor(&TlsPolicy::default());
    let client = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(fixture.roots.clone())
            .with_no_client_auth(),
    );
    let (server, client) = handshake(&acceptor, client).await;
    assert_eq!(group(server), Some(HYBRID_GROUP));
    assert_eq!(group(client), Some(HYBRID_GROUP));
}

#[tokio::test]
async fn a_classical_client_succeeds_unless_post_quantum_is_required() {
    let fixture = fixture();
    let acceptor = fixture.acceptor(&TlsPolicy::default());
    for classical in [kx_group::X25519, kx_group::SECP256R1] {
        let client = client(&fixture.roots, vec![classical], &[&TLS13]);
        let (server, client) = handshake(&acceptor, client).await;
        assert_eq!(group(server), Some(classical.name()));
        assert_eq!(group(client), Some(classical.name()));
    }

    let strict = fixture.acceptor(&TlsPolicy {
        require_post_quantum: true,
        ..TlsPolicy::default()
    });
    let classical = client(&fixture.roots, vec![kx_group::X25519], &[&TLS13]);
    let (server, client_side) = handshake(&strict, classical).await;
    let error = server.unwrap_err().to_string();
    assert!(error.contains("NoKxGroupsInCommon"), "{error}");
    assert!(client_side.is_err());
    // The hybrid, even second in the client's list, still gets through.
    let both = client(
        &fixture.roots,
        vec![kx_group::X25519, kx_group::X25519MLKEM768],
        &[&TLS13],
    );
    let (server, client_side) = handshake(&strict, both).await;
    assert_eq!(group(server), Some(HYBRID_GROUP));
    assert_eq!(group(client_side), Some(HYBRID_GROUP));
}

/// Log lines written while the guard lives (this thread only).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refused_classical_handshake_logs_the_offered_groups() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fixture = fixture();
    let strict = fixture.acceptor(&TlsPolicy {
        require_post_quantum: true,
        ..TlsPolicy::default()
    });
    let classical = client(
        &fixture.roots,
        vec![kx_group::SECP256R1, kx_group::X25519],
        &[&TLS13],
    );
    let (server, _) = handshake(&strict, classical).await;
    assert!(server.is_err());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("without X25519MLKEM768"), "{text}");
    assert!(text.contains("[secp256r1, X25519]"), "{text}");
}

#[tokio::test]
async fn tls12_only_when_allowed_and_never_with_post_quantum_required() {
    let fixture = fixture();
    let tls12 = || {
        client(
            &fixture.roots,
            vec![kx_group::X25519, kx_group::SECP256R1],
            &[&TLS12],
        )
    };
    let (server, client_side) = handshake(&fixture.acceptor(&TlsPolicy::default()), tls12()).await;
    assert!(server.is_err());
    assert!(client_side.is_err());

    let lenient = fixture.acceptor(&TlsPolicy {
        allow_tls12: true,
        ..TlsPolicy::default()
    });
    let (server, _client) = handshake(&lenient, tls12()).await;
    assert_eq!(
        server.unwrap(),
        (
            Some(rustls::ProtocolVersion::TLSv1_2),
            Some(NamedGroup::X25519)
        )
    );
    // A client offering both versions and the hybrid still gets TLS 1.3 and the hybrid.
    let modern = client(
        &fixture.roots,
        vec![kx_group::X25519, kx_group::X25519MLKEM768],
        &[&TLS13, &TLS12],
    );
    let (server, _client) = handshake(&lenient, modern).await;
    assert_eq!(
        server.unwrap(),
        (Some(rustls::ProtocolVersion::TLSv1_3), Some(HYBRID_GROUP))
    );

    let contradictory = fixture.acceptor(&TlsPolicy {
        allow_tls12: true,
        require_post_quantum: true,
        ..TlsPolicy::default()
    });
    let (server, _client) = handshake(&contradictory, tls12()).await;
    assert!(server.is_err());
}

#[tokio::test]
async fn the_general_config_alone_follows_the_clients_order() {
    let fixture = fixture();
    let acceptor = fixture.acceptor(&TlsPolicy {
        alpn_protocols: vec![b"http/1.1".to_vec()],
        ..TlsPolicy::default()
    });
    let config = Arc::clone(acceptor.general_config());
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    let plain = tokio_rustls::TlsAcceptor::from(config);
    for (groups, expected) in [
        (
            vec![kx_group::X25519MLKEM768, kx_group::X25519],
            HYBRID_GROUP,
        ),
        // Why TlsAcceptor exists: with one configuration, rustls follows the client.
        (
            vec![kx_group::X25519, kx_group::X25519MLKEM768],
            NamedGroup::X25519,
        ),
    ] {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(client(&fixture.roots, groups, &[&TLS13]));
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) =
            tokio::join!(plain.accept(server_io), connector.connect(name, client_io));
        let group = server.unwrap().get_ref().1.negotiated_key_exchange_group();
        assert_eq!(group.map(|group| group.name()), Some(expected));
        client.unwrap();
    }
}

#[test]
fn unreadable_or_invalid_files_are_named() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
    let (cert, key) = (&fixture.cert, &fixture.key);
    for (cert, key, named) in [
        (&missing, key, &missing),
        (cert, &missing, &missing),
        (&garbage, key, &garbage),
        (cert, &garbage, &garbage),
        // A key is not a certificate, and a certificate is not a key.
        (key, key, key),
        (cert, cert, cert),
        (cert, &other_key, &other_key),
    ] {
        let error = TlsAcceptor::from_pem_files(cert, key, &TlsPolicy::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&named.display().to_string()),
            "{}, {}: {message}",
            cert.display(),
            key.display()
        );
    }
}
