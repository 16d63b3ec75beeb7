//! The broker's keys for credentials, outside the database (docs/protocol.md §6.8):
//!
//! - the **credential key** that seals stored service passwords: `<data_dir>/credential-key`
//!   (64 hex digits and a newline, mode 0600, created on first start) or, with
//!   `credentials.key_env`, an environment variable; [`rotate`] re-seals every stored
//!   password under a new key;
//! - the **SSH user CA** ([`ssh_ca`]) that signs per-connection certificates.
//!
//! Files are written atomically with mode 0600 ([`write_atomically`]); a key file that
//! group or others may read is refused, as `ssh` refuses such private keys.

pub mod ssh_ca;

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use portcullis_proto::credential::{CredentialKey, box_key_id};
use portcullis_proto::hex;
use zeroize::Zeroizing;

use crate::clock::Millis;
use crate::files::{Existing, write_atomically};
use crate::store::{ServiceId, Store, StoreError};

/// The credential key's file name in the data directory.
pub const CREDENTIAL_KEY_FILE: &str = "credential-key";
/// Mode of private key files.
const PRIVATE_MODE: u32 = 0o600;

/// Why a credential key or the SSH CA could not be loaded or stored. Never shows a key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialKeyError {
    /// The key file grants access to its group or to others.
    #[error("{} is accessible by group or others (mode {mode:04o}): run `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file or variable does not hold a key.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// The file or variable.
        what: String,
        /// Why (never the contents).
        reason: &'static str,
    },
    /// `ssh-ca init` without `--force` found a CA.
    #[error(
        "an SSH CA already exists at {}; replacing it needs --force (every sshd must then \
         trust the new one)",
        path.display()
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The environment variable `credentials.key_env` names is not set.
    #[error("the environment variable {0} (credentials.key_env) is not set")]
    MissingVariable(String),
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A stored password does not open under the credential key.
    #[error(
        "the stored credentials of service {service} were sealed under another credential key \
         (key id {found}; this key is {expected}): restore that key, or set the credentials again"
    )]
    WrongKey {
        /// The service.
        service: ServiceId,
        /// The key id the box names.
        found: String,
        /// The loaded key's id.
        expected: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The crypto backend failed.
    #[error("credential key operation failed: {0}")]
    Crypto(#[from] portcullis_proto::Error),
}

/// The keys an exchange needs to hand out credentials.
#[derive(Debug)]
pub struct CredentialKeys {
    /// Seals and opens stored service passwords.
    pub key: CredentialKey,
    /// Signs SSH certificates; `None` until `portcullis admin ssh-ca init` made one.
    pub ssh_ca: Option<ssh_ca::SshCa>,
}

/// Where the credential key came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeySource {
    /// The file in the data directory.
    File(PathBuf),
    /// The environment variable of this name.
    Environment(String),
}

/// The path of the credential key file in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIAL_KEY_FILE)
}

/// Loads the credential key: from the variable `key_env` names when given (its value is
/// passed in as `env_value`, the caller read it), else from `data_dir`'s file, created on
/// first use.
pub fn load_or_create(
    data_dir: &Path,
    key_env: Option<(&str, Option<Zeroizing<String>>)>,
) -> Result<(CredentialKey, KeySource), CredentialKeyError> {
    if let Some((name, value)) = key_env {
        let value = value.ok_or_else(|| CredentialKeyError::MissingVariable(name.to_owned()))?;
        let key = parse_key(value.as_bytes(), name)?;
        return Ok((key, KeySource::Environment(name.to_owned())));
    }
    let path = key_path(data_dir);
    if let Some(contents) = read_private(&path, 2 * CredentialKey::LEN + 1)? {
        return Ok((
            parse_key(&contents, &path.display().to_string())?,
            KeySource::File(path),
        ));
    }
    let key = CredentialKey::generate()?;
    match write_key(&path, &key, Existing::Keep) {
        Ok(()) => Ok((key, KeySource::File(path))),
        // Another process created it meanwhile: use that one.
        Err(CredentialKeyError::Io { source, .. })
            if source.kind() == io::ErrorKind::AlreadyExists =>
        {
            let contents = read_private(&path, 2 * CredentialKey::LEN + 1)?.unwrap_or_default();
            Ok((
                parse_key(&contents, &path.display().to_string())?,
                KeySource::File(path),
            ))
        }
        Err(error) => Err(error),
    }
}

/// What [`rotate`] did.
#[derive(Debug)]
pub struct Rotation {
    /// Stored passwords re-sealed.
    pub resealed: usize,
    /// The new key, for a key kept in an environment variable (the operator sets it).
    pub new_key_hex: Option<Zeroizing<String>>,
    /// Where the replaced key file was kept, for a key in a file.
    pub previous: Option<PathBuf>,
}

/// Rotates the credential key: opens every stored password under `current`, seals it
/// under a new key in one transaction, then stores the new key (a file: the old one is
/// kept as `credential-key.<unix-time>.old`, dated by `now`; an environment variable: the new key is
/// returned for the operator to set). The new key is first written to
/// `credential-key.next`, so an interrupted rotation loses no key.
pub async fn rotate(
    data_dir: &Path,
    current: &CredentialKey,
    source: &KeySource,
    store: &Store,
    now: Millis,
) -> Result<Rotation, CredentialKeyError> {
    let new_key = CredentialKey::generate()?;
    let next = data_dir.join(format!("{CREDENTIAL_KEY_FILE}.next"));
    write_key(&next, &new_key, Existing::Replace)?;
    let mut boxes = Vec::new();
    for (service, sealed) in store.stored_secrets().await? {
        let secret = open_stored(current, service, &sealed)?;
        let resealed = new_key.seal(&stored_aad(service), secret.expose())?;
        boxes.push((service, sealed, resealed));
    }
    store.reseal_stored_secrets(&boxes).await?;
    let resealed = boxes.len();
    match source {
        KeySource::Environment(_) => {
            let hex = Zeroizing::new(hex::encode(new_key.expose()));
            std::fs::remove_file(&next).map_err(|source| io_error("remove", &next, source))?;
            Ok(Rotation {
                resealed,
                new_key_hex: Some(hex),
                previous: None,
            })
        }
        KeySource::File(path) => {
            let old = crate::files::keep_previous(path, now)
                .map_err(|source| io_error("keep", path, source))?;
            std::fs::rename(&next, path).map_err(|source| io_error("replace", path, source))?;
            Ok(Rotation {
                resealed,
                new_key_hex: None,
                previous: Some(old),
            })
        }
    }
}

/// The AAD of service `id`'s stored password box: `"portcullis service " || id`.
pub fn stored_aad(id: ServiceId) -> Vec<u8> {
    format!("portcullis service {id}").into_bytes()
}

/// Seals service `id`'s stored password under the credential key.
pub fn seal_stored(
    key: &CredentialKey,
    id: ServiceId,
    password: &str,
) -> Result<Vec<u8>, CredentialKeyError> {
    Ok(key.seal(&stored_aad(id), password.as_bytes())?)
}

/// Opens service `id`'s stored password box.
pub fn open_stored(
    key: &CredentialKey,
    id: ServiceId,
    sealed: &[u8],
) -> Result<portcullis_proto::credential::Secret, CredentialKeyError> {
    match key.open(&stored_aad(id), sealed) {
        Ok(secret) => Ok(secret),
        Err(portcullis_proto::Error::Unsupported { .. }) => Err(CredentialKeyError::WrongKey {
            service: id,
            found: box_key_id(sealed)
                .map(|id| hex::encode(&id))
                .unwrap_or_default(),
            expected: hex::encode(&key.id()),
        }),
        Err(error) => Err(error.into()),
    }
}

fn parse_key(contents: &[u8], what: &str) -> Result<CredentialKey, CredentialKeyError> {
    let malformed = || CredentialKeyError::Malformed {
        what: what.to_owned(),
        reason: "expected 64 hex digits",
    };
    let text = core::str::from_utf8(contents).map_err(|_| malformed())?;
    let bytes = hex::decode_array(text.trim(), "credential key").map_err(|_| malformed())?;
    Ok(CredentialKey::from_bytes(bytes))
}

fn write_key(
    path: &Path,
    key: &CredentialKey,
    existing: Existing,
) -> Result<(), CredentialKeyError> {
    let mut contents = Zeroizing::new(hex::encode(key.expose()));
    contents.push('\n');
    write_atomically(path, contents.as_bytes(), PRIVATE_MODE, existing)
        .map_err(|source| io_error("write", path, source))
}

/// Reads a private file of at most `max_len` bytes: `None` if it does not exist; refused
/// if group or others may access it.
pub(crate) fn read_private(
    path: &Path,
    max_len: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, CredentialKeyError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("open", path, source)),
    };
    let metadata = file
        .metadata()
        .map_err(|source| io_error("inspect", path, source))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialKeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    // Sized so that reading never reallocates (which would leave a copy behind).
    let mut contents = Zeroizing::new(Vec::with_capacity(max_len + 1));
    file.take(max_len as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|source| io_error("read", path, source))?;
    if contents.len() > max_len {
        return Err(CredentialKeyError::Malformed {
            what: path.display().to_string(),
            reason: "too long",
        });
    }
    Ok(Some(contents))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> CredentialKeyError {
    CredentialKeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
