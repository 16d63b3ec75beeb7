//! The server-side TLS policy shared by the broker and the tunnel server: rustls with
//! aws-lc-rs, certificate and key from PEM files (errors name the file), TLS 1.3 only
//! unless TLS 1.2 is allowed, and the hybrid post-quantum key exchange `X25519MLKEM768`
//! whenever the client supports it.
//!
//! rustls 0.23 picks the key-exchange group in the **client's** order of preference (the
//! first group of the client's `supported_groups` that the server also has), so a single
//! [`ServerConfig`] cannot make the hybrid win over a client that lists `x25519` first.
//! [`TlsAcceptor`] therefore reads the ClientHello first and, when the client lists
//! `X25519MLKEM768` at all, continues with a configuration that has that group alone (and
//! TLS 1.3, the only version it exists in): rustls then uses the client's hybrid key share,
//! or sends a HelloRetryRequest for it when the client only sent an `x25519` share. A
//! client that does not offer the hybrid gets the classical groups (`x25519`, `secp256r1`,
//! `secp384r1`), unless [`TlsPolicy::require_post_quantum`] is set: then the handshake is
//! refused and the groups the client offered are logged at warn level.
//!
//! [`TlsAcceptor::general_config`] is the configuration a client that does not offer the
//! hybrid gets; a server that accepts with it alone (`tokio_rustls::TlsAcceptor::from`)
//! still prefers the hybrid over classical groups when the client lists it first, and still
//! enforces `require_post_quantum`, but follows the client's order otherwise.

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
use rustls::version::{TLS12, TLS13};
use rustls::{NamedGroup, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};

pub use tokio_rustls::server::TlsStream;

/// The hybrid post-quantum key exchange preferred, and required by
/// [`TlsPolicy::require_post_quantum`].
pub const HYBRID_GROUP: NamedGroup = NamedGroup::X25519MLKEM768;

/// A TLS set-up failure; it names the file involved.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
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
    /// rustls refused the configuration (not expected with this crate's settings).
    #[error("TLS set-up refused: {0}")]
    Setup(String),
}

/// What a server accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Also accept TLS 1.2 from clients that do not offer the hybrid (ignored with
    /// `require_post_quantum`: the hybrid is a TLS 1.3 group). Default `false`: TLS 1.3
    /// only.
    pub allow_tls12: bool,
    /// Refuse handshakes whose client does not offer `X25519MLKEM768` (and log the groups
    /// it offered). Default `false`.
    pub require_post_quantum: bool,
    /// ALPN protocols offered, most preferred first (`b"http/1.1"`); empty for none.
    pub alpn_protocols: Vec<Vec<u8>>,
}

/// Accepts TLS connections, choosing `X25519MLKEM768` whenever the client offers it
/// (crate documentation). Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    /// For clients that list the hybrid: that group alone, TLS 1.3.
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
    /// Loads the PEM certificate chain at `cert_path` and the PEM private key at `key_path`
    /// (checking that they belong together) and builds the configurations of `policy`.
    pub fn from_pem_files(
        cert_path: &Path,
        key_path: &Path,
        policy: &TlsPolicy,
    ) -> Result<Self, TlsError> {
        let hybrid_provider = provider(vec![kx_group::X25519MLKEM768]);
        let general_provider = if policy.require_post_quantum {
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
        let hybrid = build(
            hybrid_provider,
            Arc::new(Resolver { key: key.clone() }),
            &[&TLS13],
            policy,
        )?;
        let general: Arc<dyn ResolvesServerCert> = if policy.require_post_quantum {
            Arc::new(RequirePostQuantum(Resolver { key }))
        } else {
            Arc::new(Resolver { key })
        };
        // The hybrid exists in TLS 1.3 only: requiring it leaves TLS 1.2 nothing to offer.
        let versions: &[&SupportedProtocolVersion] =
            if policy.allow_tls12 && !policy.require_post_quantum {
                &[&TLS13, &TLS12]
            } else {
                &[&TLS13]
            };
        let general = build(general_provider, general, versions, policy)?;
        Ok(Self { hybrid, general })
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

    /// The configuration for clients that do not offer the hybrid (crate documentation).
    pub fn general_config(&self) -> &Arc<ServerConfig> {
        &self.general
    }

    /// Runs the TLS handshake on `io` (like `tokio_rustls::TlsAcceptor::accept`). Not
    /// bounded in time: the caller wraps it in a timeout.
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

/// Whether the ClientHello lists `X25519MLKEM768` among its groups.
pub fn offers_hybrid(hello: &ClientHello<'_>) -> bool {
    hello
        .named_groups()
        .is_some_and(|groups| groups.contains(&HYBRID_GROUP))
}

/// The aws-lc-rs provider restricted to `kx_groups`, in that order of preference.
pub fn provider(kx_groups: Vec<&'static dyn SupportedKxGroup>) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        kx_groups,
        ..aws_lc_rs::default_provider()
    })
}

fn build(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
    versions: &[&'static SupportedProtocolVersion],
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| TlsError::Setup(error.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = policy.alpn_protocols.clone();
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
mod tests;
