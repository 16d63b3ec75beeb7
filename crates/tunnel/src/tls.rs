//! TLS around tunnel connections (docs/protocol.md §8.1): the shared server policy of
//! [`portcullis_tls`] with TLS 1.3 only, no ALPN, and the hybrid `X25519MLKEM768` key
//! exchange whenever the client supports it, whatever the client's order of preference
//! (a HelloRetryRequest when needed). A client that does not offer the hybrid gets the
//! classical groups (`x25519`, `secp256r1`, `secp384r1`), unless `tls.require_post_quantum`
//! is set: then the handshake is refused and the groups the client offered are logged at
//! warn level.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::TunnelTls;

pub use portcullis_tls::HYBRID_GROUP;

/// A TLS set-up failure; it names the setting or the file involved.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls.cert` and `tls.key` is set.
    #[error("tls.cert and tls.key must be set together (only {0} is set)")]
    Incomplete(&'static str),
    /// A certificate or key file could not be read or used (the message names it).
    #[error(transparent)]
    Files(#[from] portcullis_tls::TlsError),
}

/// Accepts TLS on tunnel connections, choosing `X25519MLKEM768` whenever the client
/// offers it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsAcceptor(portcullis_tls::TlsAcceptor);

impl TlsAcceptor {
    /// Loads the certificate chain and key of `tls`; `None` when neither is set.
    pub fn new(tls: &TunnelTls) -> Result<Option<Self>, TlsError> {
        let (cert, key) = match (&tls.cert, &tls.key) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::Incomplete("tls.cert")),
            (None, Some(_)) => return Err(TlsError::Incomplete("tls.key")),
            (Some(cert), Some(key)) => (cert, key),
        };
        let policy = portcullis_tls::TlsPolicy {
            allow_tls12: false,
            require_post_quantum: tls.require_post_quantum,
            alpn_protocols: Vec::new(),
        };
        Ok(Some(Self(portcullis_tls::TlsAcceptor::from_pem_files(
            cert, key, &policy,
        )?)))
    }

    /// Runs the TLS handshake on `io` (like `tokio_rustls::TlsAcceptor::accept`).
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.0.accept(io).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use rustls::crypto::aws_lc_rs::kx_group;
    use rustls::pki_types::ServerName;
    use rustls::version::TLS13;
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

    /// A handshake over an in-memory pipe with a client listing `groups`; the group the
    /// server negotiated, or its error.
    async fn handshake(
        acceptor: &TlsAcceptor,
        roots: &RootCertStore,
        groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> io::Result<Option<rustls::NamedGroup>> {
        let client = ClientConfig::builder_with_provider(portcullis_tls::provider(groups))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").unwrap();
        let (server, _client) = tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        );
        server.map(|stream| {
            let group = stream.get_ref().1.negotiated_key_exchange_group();
            group.map(|group| group.name())
        })
    }

    #[tokio::test]
    async fn the_hybrid_wins_tls12_is_refused_and_post_quantum_can_be_required() {
        let mut fixture = fixture();
        let acceptor = TlsAcceptor::new(&fixture.tls).unwrap().unwrap();
        let tls13 = [&TLS13];
        let both = || vec![kx_group::X25519, kx_group::X25519MLKEM768];
        let group = handshake(&acceptor, &fixture.roots, both(), &tls13).await;
        assert_eq!(group.unwrap(), Some(HYBRID_GROUP));
        let classical = handshake(&acceptor, &fixture.roots, vec![kx_group::X25519], &tls13);
        assert_eq!(classical.await.unwrap(), Some(rustls::NamedGroup::X25519));
        let tls12 = [&rustls::version::TLS12];
        let old = handshake(&acceptor, &fixture.roots, vec![kx_group::X25519], &tls12);
        assert!(old.await.is_err());

        fixture.tls.require_post_quantum = true;
        let strict = TlsAcceptor::new(&fixture.tls).unwrap().unwrap();
        let classical = handshake(&strict, &fixture.roots, vec![kx_group::X25519], &tls13);
        assert!(classical.await.is_err());
        let group = handshake(&strict, &fixture.roots, both(), &tls13).await;
        assert_eq!(group.unwrap(), Some(HYBRID_GROUP));
    }

    #[test]
    fn no_alpn_is_offered() {
        let fixture = fixture();
        let acceptor = TlsAcceptor::new(&fixture.tls).unwrap().unwrap();
        assert!(acceptor.0.general_config().alpn_protocols.is_empty());
    }

    #[test]
    fn no_files_no_tls() {
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
            TlsAcceptor::new(&only_cert),
            Err(TlsError::Incomplete("tls.cert"))
        ));
        let only_key = TunnelTls {
            cert: None,
            ..fixture.tls.clone()
        };
        assert!(matches!(
            TlsAcceptor::new(&only_key),
            Err(TlsError::Incomplete("tls.key"))
        ));
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let fixture = fixture();
        let missing = fixture._dir.path().join("missing.pem");
        let tls = TunnelTls {
            key: Some(missing.clone()),
            ..fixture.tls.clone()
        };
        let message = TlsAcceptor::new(&tls).unwrap_err().to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
    }
}
