//! What the database holds instead of ticket ids and shared secrets.
//!
//! - A ticket row is keyed by [`ticket_hash`]:
//!   `SHA-256("portcullis ticket id v1" || 0x00 || the id's 48 ASCII bytes)`.
//! - A tunnel ticket's shared secret is stored as [`seal_secret`] makes it:
//!   `nonce (12) || AES-256-GCM(key, nonce, aad = ticket hash, secret) || tag (16)`, with
//!   `key = HKDF-SHA256(salt = "portcullis ticket secret v1", IKM = the id's 48 bytes,
//!   info = "secret key", 32 bytes)`.
//!
//! A dump of the database therefore yields neither usable ticket ids (a hash cannot be
//! presented to the broker) nor shared secrets (they open only with the id itself).

use core::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf};
use portcullis_proto::{SharedSecret, TicketId};
use zeroize::Zeroizing;

/// Domain separation for [`ticket_hash`].
const HASH_LABEL: &[u8] = b"portcullis ticket id v1";
/// HKDF salt for the secret-sealing key.
const SEAL_SALT: &[u8] = b"portcullis ticket secret v1";
/// HKDF info for the secret-sealing key.
const SEAL_INFO: &[u8] = b"secret key";
/// Length of an AES-256-GCM tag.
const TAG_LEN: usize = 16;

/// Length of a sealed secret: nonce, ciphertext and tag.
pub const SEALED_SECRET_LEN: usize = NONCE_LEN + SharedSecret::LEN + TAG_LEN;

/// The database key of a ticket: a SHA-256 hash of its id.
///
/// Not a credential (the broker never accepts a hash in place of an id), but it still
/// identifies a live ticket, so `Debug` shows only its first four bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketHash([u8; TicketHash::LEN]);

impl TicketHash {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 bytes read back from the database.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The hash bytes, as stored.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Debug for TicketHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TicketHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Why a secret could not be sealed or opened. Never carries secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// The AEAD backend refused to seal (does not happen with valid lengths).
    #[error("sealing the ticket secret failed")]
    Seal,
    /// The sealed bytes do not open under this ticket: wrong ticket, or tampered data.
    #[error("the ticket secret does not open under this ticket")]
    Open,
    /// The sealed bytes do not have the length of a sealed secret.
    #[error("a sealed ticket secret is {SEALED_SECRET_LEN} bytes, got {0}")]
    Length(usize),
}

/// The database key of `id`.
pub fn ticket_hash(id: &TicketId) -> TicketHash {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(HASH_LABEL);
    context.update(&[0]);
    context.update(id.as_bytes());
    let mut out = [0u8; TicketHash::LEN];
    out.copy_from_slice(context.finish().as_ref());
    TicketHash(out)
}

/// The AES-256-GCM key that seals the secret of ticket `id`.
fn sealing_key(id: &TicketId) -> Result<LessSafeKey, SecretError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT).extract(id.as_bytes());
    let okm = prk
        .expand(&[SEAL_INFO], &AES_256_GCM)
        .map_err(|_| SecretError::Seal)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seals `secret` for storage in the row of ticket `id` (see the module documentation).
pub fn seal_secret(id: &TicketId, secret: &SharedSecret) -> Result<Vec<u8>, SecretError> {
    let key = sealing_key(id)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretError::Random)?;
    let hash = ticket_hash(id);

    let mut sealed = Vec::with_capacity(SEALED_SECRET_LEN);
    sealed.extend_from_slice(&nonce);
    let mut body = Zeroizing::new(secret.expose().to_vec());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(hash.as_bytes()),
        &mut *body,
    )
    .map_err(|_| SecretError::Seal)?;
    sealed.extend_from_slice(&body);
    Ok(sealed)
}

/// Opens a secret sealed by [`seal_secret`] for ticket `id`.
pub fn open_secret(id: &TicketId, sealed: &[u8]) -> Result<SharedSecret, SecretError> {
    if sealed.len() != SEALED_SECRET_LEN {
        return Err(SecretError::Length(sealed.len()));
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
    let key = sealing_key(id)?;
    let hash = ticket_hash(id);
    let mut buffer = Zeroizing::new(body.to_vec());
    let plain = key
        .open_in_place(nonce, Aad::from(hash.as_bytes()), &mut buffer)
        .map_err(|_| SecretError::Open)?;
    SharedSecret::from_slice(plain).map_err(|_| SecretError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> TicketId {
        TicketId::parse(&text.repeat(48 / text.len())).unwrap()
    }

    #[test]
    fn hash_is_fixed_and_domain_separated() {
        let ticket = id("A");
        let hash = ticket_hash(&ticket);
        assert_eq!(hash, ticket_hash(&ticket));
        assert_ne!(hash, ticket_hash(&id("B")));
        // Not the plain SHA-256 of the id: the label and separator come first.
        let plain = digest::digest(&digest::SHA256, ticket.as_bytes());
        assert_ne!(hash.as_bytes().as_slice(), plain.as_ref());
        let mut manual = b"portcullis ticket id v1\0".to_vec();
        manual.extend_from_slice(ticket.as_bytes());
        assert_eq!(
            hash.as_bytes().as_slice(),
            digest::digest(&digest::SHA256, &manual).as_ref()
        );
    }

    #[test]
    fn debug_shows_a_prefix_only() {
        let hash = TicketHash::from_bytes([0xab; 32]);
        assert_eq!(format!("{hash:?}"), "TicketHash(abababab…)");
    }

    #[test]
    fn seal_open_round_trip() {
        let ticket = TicketId::generate().unwrap();
        let secret = SharedSecret::generate().unwrap();
        let sealed = seal_secret(&ticket, &secret).unwrap();
        assert_eq!(sealed.len(), SEALED_SECRET_LEN);
        assert!(open_secret(&ticket, &sealed).unwrap() == secret);
        // The secret bytes do not appear in the sealed form.
        assert!(
            !sealed
                .windows(SharedSecret::LEN)
                .any(|window| window == secret.expose())
        );
        // Fresh nonce each time.
        assert_ne!(sealed, seal_secret(&ticket, &secret).unwrap());
    }

    #[test]
    fn wrong_ticket_does_not_open() {
        let secret = SharedSecret::generate().unwrap();
        let sealed = seal_secret(&id("A"), &secret).unwrap();
        assert_eq!(
            open_secret(&id("B"), &sealed).unwrap_err(),
            SecretError::Open
        );
    }

    #[test]
    fn tampering_is_detected() {
        let ticket = id("Ab1");
        let sealed = seal_secret(&ticket, &SharedSecret::generate().unwrap()).unwrap();
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                open_secret(&ticket, &tampered).unwrap_err(),
                SecretError::Open,
                "byte {index}"
            );
        }
        assert_eq!(
            open_secret(&ticket, &sealed[..sealed.len() - 1]).unwrap_err(),
            SecretError::Length(SEALED_SECRET_LEN - 1)
        );
    }
}
