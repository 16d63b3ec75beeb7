//! TLS around tunnel connections (docs/protocol.md §8.1): rustls with aws-lc-rs, TLS 1.3
//! only, no ALPN, and the hybrid `X25519MLKEM768` key exchange whenever the client
//! supports it.
//!
//! rustls 0.23 picks the key-exchange group in the **client's** order of preference (the
//! first group of the client's `supported_groups` that the server also has), so a single
//! [`ServerConfig`] cannot make the hybrid win over a client that lists `x25519` first.
//! [`TlsAcceptor`] therefore reads the ClientHello first and, when the client lists
//! `X25519MLKEM768` at all, continues with a configuration that has that group alone:
//! rustls then uses the client's hybrid key share, or sends a HelloRetryRequest for it when
//! the client only sent an `x25519` share. A client that does not offer the hybrid gets the
//! classical groups (`x25519`, `secp256r1`, `secp384r1`), unless `tls.require_post_quantum`
//! is set: then the handshake is refused and the groups the client offered are logged at
//! warn level.
//!
//! [`server_config`] is the configuration a client that does not offer the hybrid gets; a
//! server that accepts with it alone (`tokio_rustls::TlsAcceptor::from`) still prefers the
//! hybrid over classical groups when the client lists it first, and still enforces
//! `require_post_quantum`, but follows the client's order otherwise.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::TLS13;
use rustls::{NamedGroup, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::TunnelTls;

/// The hybrid post-quantum key exchange preferred, and required by
/// `tls.require_post_quantum`.
pub const HYBRID_GROUP: NamedGroup = NamedGroup::X25519MLKEM768;

/// A TLS set-up failure; it names the file involved.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls.cert` and `tls.key` is set.
    #[error("tls.cert and tls.key must be set together (only {0} is set)")]
    Incomplete(&'static str),
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error (in the message, not a `source`, so that it shows once).
        cause: io::Error,
    },
    /// A file holds no usable certificate or key, or the key does not match the
    /// certificate.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The rustls configuration for tunnel connections, `None` when `tls.cert` and `tls.key`
/// are unset. TLS 1.3 only; key exchange groups `X25519MLKEM768` then `x25519`,
/// `secp256r1`, `secp384r1`, or `X25519MLKEM768` alone with `require_post_quantum` (and a
/// warning naming the client's groups for each handshake refused for that reason).
///
/// Prefer [`TlsAcceptor`], which also makes the hybrid win over a client's own order.
pub fn server_config(tls: &TunnelTls) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    Ok(TlsAcceptor::new(tls)?.map(|acceptor| acceptor.general))
}

/// Accepts TLS on tunnel connections, choosing `X25519MLKEM768` whenever the client
/// offers it (module documentation). Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    /// For clients that list the hybrid: that group alone.
    hybrid: Arc<ServerConfig>,
    /// For the others: classical groups, or the hybrid alone (a refusal) with
    /// `require_post_quantum`.
    general: Arc<ServerConfig>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificate chain and key of `tls`; `None` when neither is set.
    pub fn new(tls: &TunnelTls) -> Result<Option<Self>, TlsError> {
        let (cert_path, key_path) = match (&tls.cert, &tls.key) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::Incomplete("tls.cert")),
            (None, Some(_)) => return Err(TlsError::Incomplete("tls.key")),
            (Some(cert), Some(key)) => (cert, key),
        };
        let hybrid_provider = provider(vec![kx_group::X25519MLKEM768]);
        let general_provider = if tls.require_post_quantum {
            hybrid_provider.clone()
        } else {
            provider(vec![
                kx_group::X25519MLKEM768,
                kx_group::X25519,
                kx_group::SECP256R1,
                kx_group::SECP384R1,
            ])
        };
        let key = load_certified_key(cert_path, key_path, &hybrid_provider)?;
        let hybrid = build(hybrid_provider, Arc::new(Resolver { key: key.clone() }))?;
        let general: Arc<dyn ResolvesServerCert> = if tls.require_post_quantum {
            Arc::new(RequirePostQuantum(Resolver { key }))
        } else {
            Arc::new(Resolver { key })
        };
        let general = build(general_provider, general)?;
        Ok(Some(Self { hybrid, general }))
    }

    /// The configuration to continue a handshake with, given its ClientHello: the
    /// hybrid-only one when the client lists `X25519MLKEM768`, the general one otherwise.
    pub fn config_for(&self, hello: &ClientHello<'_>) -> &Arc<ServerConfig> {
        if offers_hybrid(hello) {
            &self.hybrid
        } else {
            &self.general
        }
    }

    /// Runs the TLS handshake on `io` (like `tokio_rustls::TlsAcceptor::accept`).
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let config = Arc::clone(self.config_for(&start.client_hello()));
        start.into_stream(config).await
    }
}

fn offers_hybrid(hello: &ClientHello<'_>) -> bool {
    hello
        .named_groups()
        .is_some_and(|groups| groups.contains(&HYBRID_GROUP))
}

fn provider(kx_groups: Vec<&'static dyn SupportedKxGroup>) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        kx_groups,
        ..aws_lc_rs::default_provider()
    })
}

fn build(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(|error| TlsError::Invalid {
            path: PathBuf::new(),
            reason: format!("TLS 1.3 set-up refused: {error}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

/// Reads the PEM certificate chain and private key and checks that they belong together.
fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(cert_path, format!("not a PEM certificate file: {error}")))?;
    if chain.is_empty() {
        return Err(invalid(cert_path, "holds no PEM certificate".into()));
    }
    let key_pem = zeroize::Zeroizing::new(read(key_path)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
        invalid(
            key_path,
            format!("holds no usable PEM private key: {error}"),
        )
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| invalid(key_path, format!("unusable private key: {error}")))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(error) => Err(invalid(
            key_path,
            format!(
                "does not belong to the certificate in {}: {error}",
                cert_path.display()
            ),
        )),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        path: path.to_owned(),
        cause,
    })
}

fn invalid(path: &Path, reason: String) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

/// The one certificate, whatever the client asks for.
#[derive(Debug)]
struct Resolver {
    key: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.key))
    }
}

/// [`Resolver`], and a warning naming the client's groups when it does not offer the
/// hybrid: rustls refuses the handshake right after (no group in common).
#[derive(Debug)]
struct RequirePostQuantum(Resolver);

impl ResolvesServerCert for RequirePostQuantum {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if !offers_hybrid(&hello) {
            tracing::warn!(
                offered_groups = ?hello.named_groups().unwrap_or_default(),
                "refused a TLS handshake without X25519MLKEM768 (tls.require_post_quantum)"
            );
        }
        self.0.resolve(hello)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, RootCertStore};

    struct Fixture {
        _dir: tempfile::TempDir,
        tls: TunnelTls,
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
            tls: TunnelTls {
                cert: Some(cert),
                key: Some(key),
                require_post_quantum: false,
            },
            roots,
        }
    }

    fn client(
        roots: &RootCertStore,
        groups: Vec<&'static dyn SupportedKxGroup>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(provider(groups))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        )
    }

    /// A handshake over an in-memory pipe; the negotiated group on each side, or the
    /// side's error.
    async fn handshake(
        acceptor: &TlsAcceptor,
        client: Arc<ClientConfig>,
    ) -> (
        io::Result<Option<NamedGroup>>,
        io::Result<Option<NamedGroup>>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("localhost").unwrap();
        // Both streams live until both sides are done: the server still writes its
        // session tickets after the client has finished.
        let (server, client) = tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        );
        let server = server.map(|stream| {
            let group = stream.get_ref().1.negotiated_key_exchange_group();
            group.map(|group| group.name())
        });
        let client = client.map(|stream| {
            let group = stream.get_ref().1.negotiated_key_exchange_group();
            group.map(|group| group.name())
        });
        (server, client)
    }

    fn acceptor(tls: &TunnelTls) -> TlsAcceptor {
        TlsAcceptor::new(tls).unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_client_preferring_x25519_gets_the_hybrid() {
        let fixture = fixture();
        let acceptor = acceptor(&fixture.tls);
        // x25519 first: the client sends an x25519 key share only, and the server asks
        // for the hybrid with a HelloRetryRequest.
        let client = client(
            &fixture.roots,
            vec![kx_group::X25519, kx_group::X25519MLKEM768],
            &[&TLS13],
        );
        let (server, client) = handshake(&acceptor, client).await;
        assert_eq!(server.unwrap(), Some(HYBRID_GROUP));
        assert_eq!(client.unwrap(), Some(HYBRID_GROUP));
    }

    #[tokio::test]
    async fn a_default_rustls_client_gets_the_hybrid() {
        let fixture = fixture();
        let acceptor = acceptor(&fixture.tls);
        let client = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(fixture.roots.clone())
                .with_no_client_auth(),
        );
        let (server, client) = handshake(&acceptor, client).await;
        assert_eq!(server.unwrap(), Some(HYBRID_GROUP));
        assert_eq!(client.unwrap(), Some(HYBRID_GROUP));
    }

    #[tokio::test]
    async fn a_classical_client_succeeds_unless_post_quantum_is_required() {
        let mut fixture = fixture();
        for classical in [kx_group::X25519, kx_group::SECP256R1] {
            let client = client(&fixture.roots, vec![classical], &[&TLS13]);
            let (server, client) = handshake(&acceptor(&fixture.tls), client).await;
            assert_eq!(server.unwrap(), Some(classical.name()));
            assert_eq!(client.unwrap(), Some(classical.name()));
        }

        fixture.tls.require_post_quantum = true;
        let acceptor = acceptor(&fixture.tls);
        let classical = client(&fixture.roots, vec![kx_group::X25519], &[&TLS13]);
        let (server, client) = handshake(&acceptor, classical).await;
        let error = server.unwrap_err().to_string();
        assert!(error.contains("NoKxGroupsInCommon"), "{error}");
        assert!(client.is_err());
        // The hybrid, even second in the client's list, still gets through.
        let hybrid = client_with_both(&fixture.roots);
        let (server, client) = handshake(&acceptor, hybrid).await;
        assert_eq!(server.unwrap(), Some(HYBRID_GROUP));
        assert_eq!(client.unwrap(), Some(HYBRID_GROUP));
    }

    fn client_with_both(roots: &RootCertStore) -> Arc<ClientConfig> {
        client(
            roots,
            vec![kx_group::X25519, kx_group::X25519MLKEM768],
            &[&TLS13],
        )
    }

    /// Log lines written while the guard lives (this thread only).
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

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
        let mut fixture = fixture();
        fixture.tls.require_post_quantum = true;
        let classical = client(
            &fixture.roots,
            vec![kx_group::SECP256R1, kx_group::X25519],
            &[&TLS13],
        );
        let (server, _) = handshake(&acceptor(&fixture.tls), classical).await;
        assert!(server.is_err());
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("without X25519MLKEM768"), "{text}");
        assert!(text.contains("[secp256r1, X25519]"), "{text}");
    }

    #[tokio::test]
    async fn a_tls12_client_is_refused() {
        let fixture = fixture();
        let acceptor = acceptor(&fixture.tls);
        let client = client(
            &fixture.roots,
            vec![kx_group::X25519, kx_group::SECP256R1],
            &[&rustls::version::TLS12],
        );
        let (server, client) = handshake(&acceptor, client).await;
        assert!(server.is_err());
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn server_config_alone_prefers_the_hybrid_in_the_clients_order() {
        let fixture = fixture();
        let config = server_config(&fixture.tls).unwrap().unwrap();
        assert!(config.alpn_protocols.is_empty());
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
            let connector =
                tokio_rustls::TlsConnector::from(client(&fixture.roots, groups, &[&TLS13]));
            let name = ServerName::try_from("localhost").unwrap();
            let (server, client) =
                tokio::join!(plain.accept(server_io), connector.connect(name, client_io));
            let group = server.unwrap().get_ref().1.negotiated_key_exchange_group();
            assert_eq!(group.map(|group| group.name()), Some(expected));
            client.unwrap();
        }
    }

    #[test]
    fn no_files_no_tls() {
        assert!(server_config(&TunnelTls::default()).unwrap().is_none());
        assert!(TlsAcceptor::new(&TunnelTls::default()).unwrap().is_none());
    }

    #[test]
    fn a_certificate_without_a_key_is_an_error() {
        let fixture = fixture();
        let only_cert = TunnelTls {
            key: None,
            ..fixture.tls.clone()
        };
        assert!(matches!(
            server_config(&only_cert),
            Err(TlsError::Incomplete("tls.cert"))
        ));
        let only_key = TunnelTls {
            cert: None,
            ..fixture.tls.clone()
        };
        assert!(matches!(
            server_config(&only_key),
            Err(TlsError::Incomplete("tls.key"))
        ));
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
        let cert = fixture.tls.cert.clone().unwrap();
        let key = fixture.tls.key.clone().unwrap();
        for (cert, key, named) in [
            (&missing, &key, &missing),
            (&cert, &missing, &missing),
            (&garbage, &key, &garbage),
            (&cert, &garbage, &garbage),
            // A key is not a certificate, and a certificate is not a key.
            (&key, &key, &key),
            (&cert, &cert, &cert),
            (&cert, &other_key, &other_key),
        ] {
            let tls = TunnelTls {
                cert: Some(cert.clone()),
                key: Some(key.clone()),
                require_post_quantum: false,
            };
            let error = server_config(&tls).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&named.display().to_string()),
                "{}, {}: {message}",
                cert.display(),
                key.display()
            );
        }
    }
}
