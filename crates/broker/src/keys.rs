//! The broker's ML-DSA-65 signing key on disk.
//!
//! The key signs every launcher script and, per exchange, the payload signature; launchers
//! pin its public half. It lives in `<data_dir>/signing-key`, which holds the 32-byte seed
//! ([`SigningKey::seed`]) as 64 hex digits and a newline, with mode `0600`.
//!
//! - [`load_or_create`] is what the broker calls at start: it loads the key, or creates one
//!   on first start.
//! - [`init`] is `portcullis admin keys init`: it creates the key, and with `force` rotates
//!   it, keeping the old file as `signing-key.<unix-time>.old`.
//! - [`PublicKeyInfo`] is what `portcullis admin keys show` prints.
//!
//! Files are written atomically: the seed goes to a temporary file created with mode
//! `0600`, is flushed to disk, and only then takes the key's name (a hard link when an
//! existing key must not be replaced, a rename when it must). A crash leaves either the old
//! key or the new one, never a partial file. A key file that group or others can access is
//! refused, like `ssh` refuses such private keys.

use core::fmt;
use std::fs::{DirBuilder, File};
use std::io::{self, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use portcullis_proto::hex;
use portcullis_proto::payload::{SEED_LEN, SigningKey, VerifyingKey};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::clock::Millis;
use crate::files::{Existing, write_atomically};

/// The name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "signing-key";

/// The longest key file accepted: 64 hex digits and a newline.
const MAX_FILE_LEN: usize = 2 * SEED_LEN + 1;

/// Mode of the key file and its temporary files.
const KEY_FILE_MODE: u32 = 0o600;

/// Mode of a data directory this module creates.
const DATA_DIR_MODE: u32 = 0o700;

/// The path of the key file in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE_NAME)
}

/// Whether [`load_or_create`] found a key or made one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyStatus {
    /// No key existed: a new one was created and stored.
    Created,
    /// The stored key was loaded.
    Loaded,
}

/// What [`init`] did.
#[derive(Debug)]
pub struct KeyInit {
    /// The new key.
    pub key: SigningKey,
    /// Where the replaced key was kept, when `force` rotated an existing key.
    pub previous: Option<PathBuf>,
}

impl fmt::Display for KeyInit {
    /// The new key as [`PublicKeyInfo`] shows it, then a `previous:` line naming the file
    /// that keeps the replaced key, if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", PublicKeyInfo::new(self.key.verifying_key()))?;
        if let Some(previous) = &self.previous {
            write!(f, "\nprevious:    {}", previous.display())?;
        }
        Ok(())
    }
}

/// Why a key could not be loaded or stored. Messages name the file and never show the key.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// There is no key file.
    #[error(
        "no signing key at {}: create one with `portcullis admin keys init`",
        path.display()
    )]
    NotFound {
        /// The expected key file.
        path: PathBuf,
    },
    /// [`init`] without `force` found a key.
    #[error(
        "a signing key already exists at {}; rotating it needs --force \
         (the old key is kept beside it)",
        path.display()
    )]
    AlreadyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// The key file grants access to its group or to others.
    #[error(
        "the signing key {} is accessible by group or others (mode {mode:04o}): \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not hold a seed.
    #[error("the signing key file {} is malformed: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the contents).
        reason: &'static str,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, such as `"read"`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Key generation or derivation failed in the crypto backend.
    #[error("ML-DSA-65 key operation failed: {0}")]
    Crypto(#[from] portcullis_proto::Error),
}

/// Loads the key of `data_dir`, creating the directory (mode `0700`) and a new key if there
/// is none yet. Another process creating the key at the same moment is handled: one key
/// wins and both load it.
pub fn load_or_create(data_dir: &Path) -> Result<(SigningKey, KeyStatus), KeyError> {
    match load(data_dir) {
        Ok(key) => Ok((key, KeyStatus::Loaded)),
        Err(KeyError::NotFound { .. }) => match create(data_dir) {
            Ok(key) => Ok((key, KeyStatus::Created)),
            Err(KeyError::AlreadyExists { .. }) => Ok((load(data_dir)?, KeyStatus::Loaded)),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// Creates a new key in `data_dir` (`portcullis admin keys init`).
///
/// Without `force` an existing key file is an error ([`KeyError::AlreadyExists`]). With
/// `force` the existing file, valid or not, is first kept as
/// `signing-key.<unix-time>.old` (`signing-key.<unix-time>-<n>.old` if that name is taken)
/// and the new key replaces it atomically: launchers that pinned the old key must be given
/// the new one. `now` dates the kept file.
pub fn init(data_dir: &Path, force: bool, now: Millis) -> Result<KeyInit, KeyError> {
    if !force {
        return create(data_dir).map(|key| KeyInit {
            key,
            previous: None,
        });
    }
    ensure_dir(data_dir)?;
    let key = SigningKey::generate()?;
    let path = key_path(data_dir);
    let previous = match crate::files::keep_previous(&path, now) {
        Ok(previous) => Some(previous),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(io_error("keep the old key", &path, source)),
    };
    write_key_file(&path, &key, Existing::Replace)?;
    Ok(KeyInit { key, previous })
}

/// Loads the key of `data_dir`.
///
/// Refused: a missing file ([`KeyError::NotFound`]), one that group or others can access
/// ([`KeyError::InsecurePermissions`]), and anything but 64 hex digits optionally followed
/// by one newline ([`KeyError::Malformed`]).
pub fn load(data_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = key_path(data_dir);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound { path });
        }
        Err(source) => return Err(io_error("open", &path, source)),
    };
    // Checked on the open file, so the file read is the file checked.
    let metadata = file
        .metadata()
        .map_err(|source| io_error("inspect", &path, source))?;
    if !metadata.is_file() {
        return Err(KeyError::Malformed {
            path,
            reason: "not a regular file",
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions { path, mode });
    }
    // Sized so that reading never reallocates (which would leave a copy behind).
    let mut contents = Zeroizing::new(Vec::with_capacity(2 * MAX_FILE_LEN));
    file.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|source| io_error("read", &path, source))?;
    let seed = parse_seed(&contents).map_err(|reason| KeyError::Malformed { path, reason })?;
    Ok(SigningKey::from_seed(&seed)?)
}

/// Parses the key file's contents.
fn parse_seed(contents: &[u8]) -> Result<Zeroizing<[u8; SEED_LEN]>, &'static str> {
    const EXPECTED: &str = "expected 64 hex digits and a newline";
    let digits = contents.strip_suffix(b"\n").unwrap_or(contents);
    if digits.len() != 2 * SEED_LEN {
        return Err(EXPECTED);
    }
    let text = core::str::from_utf8(digits).map_err(|_| EXPECTED)?;
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    *seed = hex::decode_array(text, "signing key seed").map_err(|_| EXPECTED)?;
    Ok(seed)
}

/// Creates a key where there is none; never replaces a key file.
fn create(data_dir: &Path) -> Result<SigningKey, KeyError> {
    ensure_dir(data_dir)?;
    let key = SigningKey::generate()?;
    let path = key_path(data_dir);
    match write_key_file(&path, &key, Existing::Keep) {
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            Err(KeyError::AlreadyExists { path })
        }
        other => other.map(|()| key),
    }
}

/// Writes `key`'s seed to `path` (mode `0600`), atomically.
fn write_key_file(path: &Path, key: &SigningKey, existing: Existing) -> Result<(), KeyError> {
    let mut contents = Zeroizing::new(hex::encode(key.seed()));
    contents.push('\n');
    write_atomically(path, contents.as_bytes(), KEY_FILE_MODE, existing)
        .map_err(|source| io_error("write", path, source))
}

/// Creates `data_dir` (mode `0700`, parents as needed) if it does not exist.
fn ensure_dir(data_dir: &Path) -> Result<(), KeyError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(data_dir)
        .map_err(|source| io_error("create the directory", data_dir, source))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The public half of the broker key as operators and launchers see it: what
/// `portcullis admin keys show` prints, and what a launcher pins.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct PublicKeyInfo {
    /// Standard, padded base64 of the raw 1952-byte ML-DSA-65 public key.
    pub public_key_b64: String,
    /// Lowercase hex of SHA-256 over the raw public key (64 characters).
    pub fingerprint: String,
}

impl PublicKeyInfo {
    /// Describes `key`.
    pub fn new(key: &VerifyingKey) -> Self {
        Self {
            public_key_b64: key.to_base64(),
            fingerprint: key.fingerprint(),
        }
    }
}

impl From<&VerifyingKey> for PublicKeyInfo {
    fn from(key: &VerifyingKey) -> Self {
        Self::new(key)
    }
}

impl fmt::Display for PublicKeyInfo {
    /// Three `name: value` lines (no trailing newline), the public key on one line so that
    /// it can be copied whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "algorithm:   ML-DSA-65")?;
        writeln!(f, "fingerprint: {}", self.fingerprint)?;
        write!(f, "public key:  {}", self.public_key_b64)
    }
}

#[cfg(test)]
mod tests;
