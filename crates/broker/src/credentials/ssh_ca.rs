//! The broker's SSH user certificate authority (docs/protocol.md §6.8.4): an Ed25519 key in
//! `<data_dir>/ssh-ca` (OpenSSH private key format, unencrypted, mode 0600) that signs a
//! certificate for each launcher's per-connection key. `sshd` trusts it through
//! `TrustedUserCAKeys` with the line [`SshCa::public_line`] prints.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use portcullis_proto::ssh::Ed25519PublicKey;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{LineEnding, PrivateKey};
use zeroize::Zeroizing;

use super::{CredentialKeyError, PRIVATE_MODE, read_private};
use crate::clock::Millis;
use crate::files::{Existing, write_atomically};

/// The CA's file name in the data directory.
pub const SSH_CA_FILE: &str = "ssh-ca";
/// The comment of the CA's public key line and of every certificate.
const COMMENT: &str = "portcullis";
/// How long before the exchange a certificate is already valid (clock skew).
pub const CLOCK_SKEW_SECS: u64 = 60;
/// The largest CA file read.
const MAX_FILE_LEN: usize = 4096;

/// The SSH user CA.
pub struct SshCa {
    key: PrivateKey,
}

impl core::fmt::Debug for SshCa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SshCa")
            .field("public", &self.public_line())
            .finish()
    }
}

/// One certificate to sign.
#[derive(Debug)]
pub struct CertificateRequest<'a> {
    /// The launcher's key.
    pub key: &'a Ed25519PublicKey,
    /// The one principal the certificate is valid for.
    pub principal: &'a str,
    /// The key id (shown in `sshd`'s log).
    pub key_id: String,
    /// The exchange's time, Unix seconds.
    pub now_secs: u64,
    /// Validity after `now_secs`, in seconds.
    pub validity_secs: u64,
    /// Addresses and networks for `source-address`; empty for none.
    pub source_addresses: &'a [String],
}

/// The path of the CA file in `data_dir`.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SSH_CA_FILE)
}

impl SshCa {
    /// Loads the CA of `data_dir`; `None` when there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, CredentialKeyError> {
        let path = ca_path(data_dir);
        let Some(contents) = read_private(&path, MAX_FILE_LEN)? else {
            return Ok(None);
        };
        let malformed = |reason| CredentialKeyError::Malformed {
            what: path.display().to_string(),
            reason,
        };
        let key = PrivateKey::from_openssh(&*contents)
            .map_err(|_| malformed("not an unencrypted OpenSSH private key"))?;
        if key.key_data().ed25519().is_none() {
            return Err(malformed("not an Ed25519 key"));
        }
        Ok(Some(Self { key }))
    }

    /// Creates the CA in `data_dir` (`portcullis admin ssh-ca init`). An existing CA is
    /// kept unless `force`, which keeps the old file as `ssh-ca.<unix-time>.old` (dated by
    /// `now`): every
    /// `sshd` must then trust the new public key.
    pub fn init(
        data_dir: &Path,
        force: bool,
        now: Millis,
    ) -> Result<(Self, Option<PathBuf>), CredentialKeyError> {
        let path = ca_path(data_dir);
        if !force && path.exists() {
            return Err(CredentialKeyError::AlreadyExists { path });
        }
        let seed = Zeroizing::new(portcullis_proto::random::array::<32>()?);
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(COMMENT);
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|_| CredentialKeyError::Malformed {
                what: "the new SSH CA".to_owned(),
                reason: "could not be encoded",
            })?;
        let mut previous = None;
        if force && path.exists() {
            let old = crate::files::keep_previous(&path, now).map_err(|source| {
                CredentialKeyError::Io {
                    action: "keep",
                    path: path.clone(),
                    source,
                }
            })?;
            previous = Some(old);
        }
        let existing = if force {
            Existing::Replace
        } else {
            Existing::Keep
        };
        write_atomically(&path, pem.as_bytes(), PRIVATE_MODE, existing).map_err(|source| {
            CredentialKeyError::Io {
                action: "write",
                path: path.clone(),
                source,
            }
        })?;
        Ok((Self { key }, previous))
    }

    /// The CA's public key as an OpenSSH line, for `TrustedUserCAKeys`.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| "<unencodable>".to_owned())
    }

    /// Signs a user certificate (docs/protocol.md §6.8.4) and returns its OpenSSH line.
    pub fn sign(&self, request: &CertificateRequest<'_>) -> Result<String, String> {
        let nonce = portcullis_proto::random::array::<32>().map_err(|e| e.to_string())?;
        let serial =
            u64::from_be_bytes(portcullis_proto::random::array::<8>().map_err(|e| e.to_string())?);
        let subject = ssh_key::public::Ed25519PublicKey(*request.key.as_bytes());
        let mut builder = Builder::new(
            nonce.to_vec(),
            subject,
            request.now_secs.saturating_sub(CLOCK_SKEW_SECS),
            request.now_secs.saturating_add(request.validity_secs),
        )
        .map_err(|e| e.to_string())?;
        builder
            .serial(serial)
            .and_then(|b| b.cert_type(CertType::User))
            .and_then(|b| b.key_id(request.key_id.clone()))
            .and_then(|b| b.valid_principal(request.principal))
            .and_then(|b| b.extension("permit-pty", ""))
            .and_then(|b| b.comment(COMMENT))
            .map_err(|e| e.to_string())?;
        if !request.source_addresses.is_empty() {
            builder
                .critical_option("source-address", request.source_addresses.join(","))
                .map_err(|e| e.to_string())?;
        }
        builder
            .sign(&self.key)
            .and_then(|certificate| certificate.to_openssh())
            .map_err(|e| e.to_string())
    }
}

/// Renders a principal template: `{username}` becomes the portal user's name. The result
/// must be a plain name (no control characters, commas or spaces).
pub fn render_principal(template: &str, username: &str) -> Option<String> {
    let principal = template.replace("{username}", username);
    let plain = !principal.is_empty()
        && principal.len() <= 256
        && !principal
            .chars()
            .any(|c| c.is_control() || c == ',' || c.is_whitespace());
    plain.then_some(principal)
}

/// The `source-address` list a service's setting asks for: `client` is the launcher's
/// address as the broker saw it (nothing if it is unknown), `none` nothing, anything else
/// a comma-separated list of addresses and networks given as they are.
pub fn source_addresses(setting: Option<&str>, client: Option<IpAddr>) -> Vec<String> {
    match setting.unwrap_or("client") {
        "none" => Vec::new(),
        "client" => client
            .map(|ip| vec![ip.to_canonical().to_string()])
            .unwrap_or_default(),
        list => list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}
