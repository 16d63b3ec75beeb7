//! OpenSSH Ed25519 public key lines, as a launcher sends its per-request key in
//! `client.ssh_public_key` (docs/protocol.md §6.8.4):
//!
//! ```text
//! ssh-ed25519 <base64 of: string "ssh-ed25519" || string (32-byte key)> [comment]
//! ```
//!
//! `string` is RFC 4251's `u32` big-endian length and bytes.

use core::fmt;

use crate::{Error, b64};

/// The key type name of an Ed25519 key.
pub const ED25519: &str = "ssh-ed25519";
/// The longest public key line accepted, in bytes.
pub const MAX_LINE_LEN: usize = 1024;

/// An Ed25519 public key for SSH.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519PublicKey([u8; 32]);

impl Ed25519PublicKey {
    /// Wraps the 32 bytes of a public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The wire blob: `string "ssh-ed25519" || string key`.
    pub fn blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(4 + ED25519.len() + 4 + 32);
        put_string(&mut blob, ED25519.as_bytes());
        put_string(&mut blob, &self.0);
        blob
    }

    /// The OpenSSH line `ssh-ed25519 <base64>`, without a comment.
    pub fn to_openssh(&self) -> String {
        format!("{ED25519} {}", b64::encode(&self.blob()))
    }

    /// Parses an OpenSSH line: the type, one space, the base64 blob, optionally a space and
    /// a comment (ignored). Refused: other key types, a blob whose type differs from the
    /// line's, a key of another length, trailing bytes, lines over [`MAX_LINE_LEN`].
    pub fn parse_openssh(line: &str) -> Result<Self, Error> {
        const WHAT: &str = "ssh_public_key";
        if line.len() > MAX_LINE_LEN {
            return Err(Error::TooLarge {
                what: WHAT,
                got: line.len(),
                max: MAX_LINE_LEN,
            });
        }
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().unwrap_or_default();
        if kind != ED25519 {
            return Err(Error::Unsupported {
                what: "SSH key type",
                value: kind.chars().take(32).collect(),
            });
        }
        let blob = b64::decode(parts.next().unwrap_or_default(), WHAT)?;
        let mut rest = blob.as_slice();
        let name = take_string(&mut rest)?;
        let key = take_string(&mut rest)?;
        if name != ED25519.as_bytes() || !rest.is_empty() {
            return Err(Error::Invalid {
                what: WHAT,
                reason: "the key blob is not a single ssh-ed25519 key",
            });
        }
        let key: [u8; 32] = key.try_into().map_err(|_| Error::WrongLength {
            what: "Ed25519 public key",
            expected: 32,
            got: key.len(),
        })?;
        Ok(Self(key))
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({})", self.to_openssh())
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_string<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], Error> {
    let malformed = Error::Invalid {
        what: "ssh_public_key",
        reason: "truncated key blob",
    };
    let (len, rest) = input.split_first_chunk::<4>().ok_or(malformed.clone())?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| malformed.clone())?;
    if rest.len() < len {
        return Err(malformed);
    }
    let (value, rest) = rest.split_at(len);
    *input = rest;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -y` of the RFC 8032 test 1 secret key: its public key is
    // d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a.
    const RFC8032_LINE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea";

    #[test]
    fn known_line_round_trips() {
        let key = Ed25519PublicKey::parse_openssh(&format!("{RFC8032_LINE} alice@desk")).unwrap();
        assert_eq!(
            crate::hex::encode(key.as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(key.to_openssh(), RFC8032_LINE);
    }

    #[test]
    fn other_types_and_malformed_lines_are_refused() {
        for line in [
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC",
            "",
            "ssh-ed25519",
            "ssh-ed25519 not-base64!",
            // A blob that says ssh-rsa inside an ssh-ed25519 line.
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAAg12345678901234567890123456789012",
        ] {
            assert!(Ed25519PublicKey::parse_openssh(line).is_err(), "{line}");
        }
        let mut blob = Ed25519PublicKey::from_bytes([7; 32]).blob();
        blob.push(0);
        let trailing = format!("ssh-ed25519 {}", b64::encode(&blob));
        assert!(Ed25519PublicKey::parse_openssh(&trailing).is_err());
        blob.truncate(blob.len() - 2);
        let short = format!("ssh-ed25519 {}", b64::encode(&blob));
        assert!(Ed25519PublicKey::parse_openssh(&short).is_err());
        let long = format!("{RFC8032_LINE} {}", "x".repeat(MAX_LINE_LEN));
        assert!(matches!(
            Ed25519PublicKey::parse_openssh(&long),
            Err(Error::TooLarge { .. })
        ));
    }
}
