//! The signed scripts the broker serves: built-in ones and the operator's replacements.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use portcullis_proto::hex;
use portcullis_proto::payload::{MAX_DECOMPRESSED, SignedScript, SigningKey};

use super::{Os, builtin_script, script_file_name};
use crate::model::Protocol;

/// Where a script came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ScriptOrigin {
    /// The script built into the broker.
    BuiltIn,
    /// The operator's file of the same name in `scripts_dir`.
    File(PathBuf),
}

/// Why the scripts could not be loaded. Every message names the directory or file.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The scripts directory cannot be listed.
    #[error("cannot read the scripts directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A script file cannot be read.
    #[error("cannot read the launcher script {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A script file is empty or holds only white space.
    #[error("the launcher script {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A script file is not UTF-8 text.
    #[error(
        "the launcher script {} is not UTF-8 text (invalid byte at offset {offset})",
        path.display()
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A script file is larger than a launcher accepts.
    #[error("the launcher script {} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// Signing failed.
    #[error("cannot sign the launcher script {name}: {source}")]
    Sign {
        /// The script's file name.
        name: String,
        /// The signing error.
        #[source]
        source: portcullis_proto::Error,
    },
}

/// One signed script for every protocol and operating system, looked up by
/// ([`Protocol`], [`Os`]). Built once at start; cheap to share (the scripts are
/// reference-counted).
#[derive(Clone, Debug)]
pub struct ScriptSet {
    /// Indexed by [`index`]: every (protocol, OS) pair exactly once.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    script: SignedScript,
    origin: ScriptOrigin,
}

/// Position of the (protocol, OS) pair in [`ScriptSet::entries`].
fn index(protocol: Protocol, os: Os) -> usize {
    protocol as usize * Os::ALL.len() + os as usize
}

impl ScriptSet {
    /// Loads and signs every script with `key`.
    ///
    /// A file in `scripts_dir` named like a built-in script ([`script_file_name`], such as
    /// `rdp-windows.js`) replaces it; it must be non-empty UTF-8 of at most
    /// [`MAX_DECOMPRESSED`] bytes. Other `.js` files there are ignored with a warning (a
    /// misspelled name would otherwise silently keep the built-in script).
    pub fn load(scripts_dir: Option<&Path>, key: &SigningKey) -> Result<Self, ScriptError> {
        let mut files = match scripts_dir {
            Some(dir) => list_dir(dir)?,
            None => BTreeSet::new(),
        };
        let mut entries = Vec::with_capacity(Protocol::ALL.len() * Os::ALL.len());
        for protocol in Protocol::ALL {
            for os in Os::ALL {
                let name = script_file_name(protocol, os);
                // Taken out of `files`, so that what remains there is unrecognized.
                let replacement = files
                    .take(&name)
                    .and(scripts_dir)
                    .map(|dir| dir.join(&name));
                let (script, origin) = match replacement {
                    Some(path) => (read_script(&path)?, ScriptOrigin::File(path)),
                    None => (
                        builtin_script(protocol, os).as_bytes().to_vec(),
                        ScriptOrigin::BuiltIn,
                    ),
                };
                let script = SignedScript::sign(script, key)
                    .map_err(|source| ScriptError::Sign { name, source })?;
                if let ScriptOrigin::File(path) = &origin {
                    tracing::info!(
                        path = %path.display(),
                        sha256 = %hex::encode(script.digest()),
                        "using the operator's launcher script"
                    );
                }
                debug_assert_eq!(entries.len(), index(protocol, os));
                entries.push(Entry { script, origin });
            }
        }
        for name in files.iter().filter(|name| name.ends_with(".js")) {
            tracing::warn!(
                file = %name,
                "ignoring a script whose name is not <protocol>-<os>.js \
                 (protocols: rdp, ssh, vnc, tcp; systems: linux, windows, macos)"
            );
        }
        Ok(Self { entries })
    }

    /// The script for `protocol` on `os`.
    pub fn get(&self, protocol: Protocol, os: Os) -> &SignedScript {
        &self.entry(protocol, os).script
    }

    /// Where the script for `protocol` on `os` came from.
    pub fn origin(&self, protocol: Protocol, os: Os) -> &ScriptOrigin {
        &self.entry(protocol, os).origin
    }

    /// Every script with its protocol, OS and origin.
    pub fn iter(&self) -> impl Iterator<Item = (Protocol, Os, &SignedScript, &ScriptOrigin)> {
        Protocol::ALL
            .into_iter()
            .flat_map(|protocol| Os::ALL.into_iter().map(move |os| (protocol, os)))
            .map(|(protocol, os)| {
                let entry = self.entry(protocol, os);
                (protocol, os, &entry.script, &entry.origin)
            })
    }

    fn entry(&self, protocol: Protocol, os: Os) -> &Entry {
        // `load` pushes one entry per pair, in `index` order, so this never panics.
        &self.entries[index(protocol, os)]
    }
}

/// The names of the entries of `dir`.
fn list_dir(dir: &Path) -> Result<BTreeSet<String>, ScriptError> {
    let dir_error = |source| ScriptError::Dir {
        path: dir.to_owned(),
        source,
    };
    fs::read_dir(dir)
        .map_err(dir_error)?
        .map(|entry| {
            entry
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .map_err(dir_error)
        })
        .collect()
}

/// Reads an operator script, checking that it is non-empty UTF-8 within the size limit.
fn read_script(path: &Path) -> Result<Vec<u8>, ScriptError> {
    let read_error = |source| ScriptError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| {
            file.take(MAX_DECOMPRESSED as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(read_error)?;
    if bytes.len() > MAX_DECOMPRESSED {
        return Err(ScriptError::TooLarge {
            path: path.to_owned(),
            max: MAX_DECOMPRESSED,
        });
    }
    let text = core::str::from_utf8(&bytes).map_err(|error| ScriptError::NotUtf8 {
        path: path.to_owned(),
        offset: error.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(ScriptError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}
