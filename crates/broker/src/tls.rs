//! The broker's TLS: the shared server policy of [`portcullis_tls`] (rustls with
//! aws-lc-rs, the hybrid X25519MLKEM768 key exchange preferred whatever the client's order),
//! from certificate files or from a self-signed certificate kept in the data directory.

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_tls::{TlsAcceptor, TlsPolicy};

use crate::config::TlsConfig;
use crate::files::{Existing, write_atomically};

/// A TLS set-up failure, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key file cannot be read or used (the message names it).
    #[error(transparent)]
    Files(#[from] portcullis_tls::TlsError),
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Paths of the self-signed certificate and its key in a data directory.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Makes sure a self-signed certificate for `names` exists in `data_dir/tls/`, creating it
/// (key mode 0600) when missing; returns the certificate and key paths. A launcher or
/// browser trusts it by importing `cert.pem` (`portcullis dev` writes its path to dev.json).
pub fn ensure_self_signed(
    data_dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = self_signed_paths(data_dir);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let dir = cert_path.parent().unwrap_or(data_dir);
    fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|error| TlsError::Generate(error.to_string()))?;
    // Each file is written whole and renamed into place, the key first: a crash leaves
    // either no certificate (both are made again at the next start) or both files.
    write_file(
        &key_path,
        certified.key_pair.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&cert_path, certified.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

/// The broker's TLS acceptor for the PEM files `cert_path` and `key_path` under the
/// `[tls]` policy: TLS 1.3 (and 1.2 with `tls.allow_tls12`), ALPN `http/1.1` only,
/// `X25519MLKEM768` whenever the client offers it, whatever its order of preference, and
/// nothing else with `tls.require_post_quantum` (see [`portcullis_tls`]).
pub fn acceptor(
    cert_path: &Path,
    key_path: &Path,
    config: &TlsConfig,
) -> Result<TlsAcceptor, TlsError> {
    let policy = TlsPolicy {
        allow_tls12: config.allow_tls12,
        require_post_quantum: config.require_post_quantum,
        alpn_protocols: vec![b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from_pem_files(cert_path, key_path, &policy)?)
}

/// Writes `path` atomically with `mode`, replacing whatever was there.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    write_atomically(path, contents, mode, Existing::Replace).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_left_without_its_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let (cert, key) = self_signed_paths(dir.path());
        fs::create_dir_all(key.parent().unwrap()).unwrap();
        // A crash after the key was written, before the certificate.
        fs::write(&key, "half").unwrap();
        let (cert_again, key_again) = ensure_self_signed(dir.path(), &names).unwrap();
        assert_eq!((cert_again, key_again), (cert.clone(), key.clone()));
        assert!(fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        assert!(fs::read_to_string(&cert).unwrap().contains("CERTIFICATE"));
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn self_signed_is_created_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (cert, key) = ensure_self_signed(dir.path(), &names).unwrap();
        let first = fs::read(&cert).unwrap();
        ensure_self_signed(dir.path(), &names).unwrap();
        assert_eq!(
            fs::read(&cert).unwrap(),
            first,
            "an existing certificate is kept"
        );
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        acceptor(&cert, &key, &TlsConfig::default()).unwrap();
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        fs::write(&cert, "not pem").unwrap();
        let missing = dir.path().join("missing.pem");
        let error = acceptor(&cert, &missing, &TlsConfig::default()).unwrap_err();
        assert!(error.to_string().contains("cert.pem"), "{error}");
    }
}
