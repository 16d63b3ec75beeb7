//! The user's pinned broker keys: one ML-DSA-65 public key per broker host, in
//! `trust.json` (mode 0600, written atomically). A launch verifies the payload's
//! signatures against the pinned key of the launch URL's host; a host's key changes only
//! when the user removes the pin and trusts the new key.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_proto::payload::VerifyingKey;
use serde::{Deserialize, Serialize};

/// What can go wrong with the trust file or a pin.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a trust file.
    #[error("{path} is not a valid trust file ({reason}); remove it or fix it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The host is pinned to another key.
    #[error(
        "the broker {host} presents a different key (fingerprint {presented}) than the one \
         you trust (fingerprint {pinned}); if your administrator rotated the broker's key, \
         remove the old one with `portcullis-launcher trust remove {host}` and trust the new \
         one; otherwise do not connect"
    )]
    Changed {
        /// The broker host.
        host: String,
        /// The pinned key's fingerprint.
        pinned: String,
        /// The fingerprint of the key presented now.
        presented: String,
    },
    /// A key given by the user does not decode.
    #[error("that is not an ML-DSA-65 public key in base64 ({0})")]
    BadKey(String),
}

#[derive(Serialize, Deserialize)]
struct TrustFile {
    version: u32,
    brokers: BTreeMap<String, Pin>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Pin {
    public_key: String,
    fingerprint: String,
    /// CA certificates to trust for this broker and its tunnel servers (a private CA, a
    /// dev stack's self-signed certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

/// One pinned broker.
#[derive(Debug)]
struct Pinning {
    key: VerifyingKey,
    ca_file: Option<PathBuf>,
}

/// The result of [`TrustStore::pin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// The host was not pinned; it is now.
    New,
    /// The host was already pinned to this key.
    Unchanged,
}

/// The pinned keys, as loaded from a trust file.
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    keys: BTreeMap<String, Pinning>,
}

/// The form hosts are pinned under, whichever way a link or the user writes them: `host`
/// or `host:port`, a name in lowercase ASCII (an international name as its `xn--` form),
/// an IPv6 address in brackets in its shortest form, and no port when it is the default
/// (443).
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let (name, port) = split_port(host);
    let name = match url::Host::parse(&name) {
        Ok(url::Host::Domain(domain)) => domain,
        Ok(url::Host::Ipv4(address)) => address.to_string(),
        Ok(url::Host::Ipv6(address)) => format!("[{address}]"),
        Err(_) => name.to_lowercase(),
    };
    match port {
        Some(port) if port != "443" => format!("{name}:{port}"),
        _ => name,
    }
}

/// `host` split into its name (IPv6 addresses in brackets) and port.
fn split_port(host: &str) -> (String, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((address, after)) = rest.split_once(']') {
            return (format!("[{address}]"), after.strip_prefix(':'));
        }
    }
    match host.matches(':').count() {
        0 => (host.to_owned(), None),
        1 => host
            .split_once(':')
            .map(|(name, port)| (name.to_owned(), Some(port)))
            .unwrap_or((host.to_owned(), None)),
        // A bare IPv6 address.
        _ => (format!("[{host}]"), None),
    }
}

impl TrustStore {
    /// Loads `path`; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(TrustError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut keys = BTreeMap::new();
        if !text.is_empty() {
            let corrupt = |reason: String| TrustError::Corrupt {
                path: path.to_owned(),
                reason,
            };
            let file: TrustFile =
                serde_json::from_slice(&text).map_err(|error| corrupt(error.to_string()))?;
            if file.version != 1 {
                return Err(corrupt(format!("unknown version {}", file.version)));
            }
            for (host, pin) in file.brokers {
                let key = VerifyingKey::from_base64(&pin.public_key)
                    .map_err(|error| corrupt(format!("{host}: {error}")))?;
                if key.fingerprint() != pin.fingerprint {
                    return Err(corrupt(format!("{host}: the fingerprint is not the key's")));
                }
                // Files written before hosts were normalized this way still match.
                keys.insert(
                    normalize_host(&host),
                    Pinning {
                        key,
                        ca_file: pin.ca_file,
                    },
                );
            }
        }
        Ok(Self {
            path: path.to_owned(),
            keys,
        })
    }

    /// The key pinned for `host`.
    pub fn get(&self, host: &str) -> Option<&VerifyingKey> {
        self.keys
            .get(&normalize_host(host))
            .map(|pinning| &pinning.key)
    }

    /// The CA file pinned with `host`'s key, if any.
    pub fn ca_file(&self, host: &str) -> Option<&Path> {
        self.keys
            .get(&normalize_host(host))
            .and_then(|pinning| pinning.ca_file.as_deref())
    }

    /// Sets (or clears) the CA file of pinned `host`; false when `host` is not pinned.
    pub fn set_ca_file(&mut self, host: &str, ca_file: Option<PathBuf>) -> bool {
        match self.keys.get_mut(&normalize_host(host)) {
            Some(pinning) => {
                pinning.ca_file = ca_file;
                true
            }
            None => false,
        }
    }

    /// Pins `key` for `host`; refuses a different key for a pinned host.
    pub fn pin(&mut self, host: &str, key: VerifyingKey) -> Result<Pinned, TrustError> {
        let host = normalize_host(host);
        match self.keys.get(&host) {
            Some(pinned) if pinned.key.fingerprint() == key.fingerprint() => Ok(Pinned::Unchanged),
            Some(pinned) => Err(TrustError::Changed {
                presented: key.fingerprint(),
                pinned: pinned.key.fingerprint(),
                host,
            }),
            None => {
                self.keys.insert(host, Pinning { key, ca_file: None });
                Ok(Pinned::New)
            }
        }
    }

    /// Removes the pin of `host`; whether there was one.
    pub fn remove(&mut self, host: &str) -> bool {
        self.keys.remove(&normalize_host(host)).is_some()
    }

    /// Every pinned host with its key's fingerprint, sorted by host.
    pub fn entries(&self) -> impl Iterator<Item = (&str, String)> {
        self.keys
            .iter()
            .map(|(host, pinning)| (host.as_str(), pinning.key.fingerprint()))
    }

    /// Writes the store: a new file beside the old one (mode 0600), then renamed over it,
    /// so a crash leaves either the old file or the new one.
    pub fn save(&self) -> Result<(), TrustError> {
        let io = |source| TrustError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(io)?;
        let file = TrustFile {
            version: 1,
            brokers: self
                .keys
                .iter()
                .map(|(host, pinning)| {
                    (
                        host.clone(),
                        Pin {
                            public_key: pinning.key.to_base64(),
                            fingerprint: pinning.key.fingerprint(),
                            ca_file: pinning.ca_file.clone(),
                        },
                    )
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&file)
            .map_err(|error| io(std::io::Error::other(error.to_string())))?;
        text.push(b'\n');
        // tempfile creates the file 0600 on Unix.
        let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        temporary.write_all(&text).map_err(io)?;
        temporary.as_file().sync_all().map_err(io)?;
        temporary
            .persist(&self.path)
            .map_err(|error| io(error.error))?;
        Ok(())
    }
}

/// Creates `dir` (mode 0700 on Unix) when missing.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Decodes a key the user gave (`trust add HOST KEY`).
pub fn parse_key(text: &str) -> Result<VerifyingKey, TrustError> {
    VerifyingKey::from_base64(text.trim()).map_err(|error| TrustError::BadKey(error.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_proto::payload::SigningKey;

    use super::*;

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_seed(&[seed; 32])
            .unwrap()
            .verifying_key()
            .clone()
    }

    #[test]
    fn hosts_are_pinned_as_the_links_name_them() {
        for (given, pinned) in [
            ("Broker.Example", "broker.example"),
            ("broker.example:443", "broker.example"),
            ("BROKER.example:8443", "broker.example:8443"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("Bücher.Example:443", "xn--bcher-kva.example"),
            ("::1", "[::1]"),
            ("[::1]:443", "[::1]"),
            ("[0:0:0:0:0:0:0:1]:8443", "[::1]:8443"),
            ("127.0.0.1:443", "127.0.0.1"),
            (" broker.example ", "broker.example"),
        ] {
            assert_eq!(normalize_host(given), pinned, "{given}");
        }
        let mut store = TrustStore::load(Path::new("/nonexistent/trust.json")).unwrap();
        store.pin("bücher.example:443", key(1)).unwrap();
        assert!(store.get("xn--bcher-kva.example").is_some());
        assert!(store.get("XN--BCHER-KVA.example:443").is_some());
    }

    #[test]
    fn a_ca_file_is_kept_with_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let mut store = TrustStore::load(&path).unwrap();
        assert!(!store.set_ca_file("broker.example", Some("/ca.pem".into())));
        store.pin("broker.example", key(1)).unwrap();
        store.pin("other.example", key(2)).unwrap();
        assert!(store.set_ca_file("Broker.Example", Some("/ca.pem".into())));
        store.save().unwrap();
        let loaded = TrustStore::load(&path).unwrap();
        assert_eq!(loaded.ca_file("broker.example"), Some(Path::new("/ca.pem")));
        assert_eq!(loaded.ca_file("other.example"), None);
    }

    #[test]
    fn pins_persist_privately_and_a_changed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/trust.json");
        let mut store = TrustStore::load(&path).unwrap();
        assert_eq!(
            store.pin("Broker.Example:8443", key(1)).unwrap(),
            Pinned::New
        );
        assert_eq!(
            store.pin("broker.example:8443", key(1)).unwrap(),
            Pinned::Unchanged
        );
        store.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        let mut again = TrustStore::load(&path).unwrap();
        assert_eq!(
            again.get("broker.example:8443").unwrap().fingerprint(),
            key(1).fingerprint()
        );
        let changed = again.pin("broker.example:8443", key(2)).unwrap_err();
        let message = changed.to_string();
        assert!(message.contains(&key(2).fingerprint()), "{message}");
        assert!(
            message.contains("trust remove broker.example:8443"),
            "{message}"
        );
        assert!(again.remove("broker.example:8443"));
        assert_eq!(
            again.pin("broker.example:8443", key(2)).unwrap(),
            Pinned::New
        );
        assert_eq!(again.entries().count(), 1);
    }

    #[test]
    fn a_corrupt_or_tampered_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        std::fs::write(&path, "{not json").unwrap();
        let error = TrustStore::load(&path).unwrap_err().to_string();
        assert!(error.contains("trust.json"), "{error}");
        let tampered = serde_json::json!({"version": 1, "brokers": {"b": {
            "public_key": key(1).to_base64(), "fingerprint": key(2).fingerprint()}}});
        std::fs::write(&path, tampered.to_string()).unwrap();
        assert!(TrustStore::load(&path).is_err());
        assert!(parse_key("not base64").is_err());
    }
}
