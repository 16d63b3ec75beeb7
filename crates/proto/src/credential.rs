//! Credentials at rest: the sealed box and its keys (docs/protocol.md §6.8.1).
//!
//! ```text
//! box    = 0x01 || key_id (8) || nonce (12) || AES-256-GCM(key, nonce, aad, plaintext) || tag
//! key_id = SHA-256("portcullis credential key id v1" || key)[0..8)
//! ```
//!
//! Three kinds of key seal boxes: a login session's ([`CredentialKey::for_session`], split
//! between the session's row and its cookie), a client ticket's
//! ([`CredentialKey::for_ticket`], from the launch link's ticket id and scrambler), and the
//! broker's credential key for stored service credentials ([`CredentialKey::from_bytes`],
//! kept outside the database). The nonce is an argument, so tests have known answers; the
//! broker draws it with [`crate::random`].

use core::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Error, Scrambler, TicketId, kdf};

/// The longest secret a box holds, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;
/// The box format's version byte.
pub const BOX_VERSION: u8 = 0x01;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Length of the AES-256-GCM tag.
const TAG_LEN: usize = 16;
/// Length of a box around an empty secret: version, key id, nonce and tag.
pub const BOX_OVERHEAD: usize = 1 + KEY_ID_LEN + NONCE_LEN + TAG_LEN;

/// Label of the key id hash.
const KEY_ID_LABEL: &[u8] = b"portcullis credential key id v1";
/// HKDF salt of a login session's key.
const SESSION_SALT: &[u8] = b"portcullis session credential v1";
/// HKDF salt of a client ticket's key.
const TICKET_SALT: &[u8] = b"portcullis ticket credential v1";
/// HKDF info of both derived keys.
const KEY_INFO: &[u8] = b"credential key";
/// Label of a stored scrambler's hash.
const SCRAMBLER_LABEL: &[u8] = b"portcullis scrambler v1";

/// A 32-byte AES-256-GCM key that seals credentials: zeroized on drop, no `Clone`, a
/// `Debug` that shows only its key id.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct CredentialKey([u8; CredentialKey::LEN]);

impl CredentialKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 key bytes (the broker's credential key, read from outside the database).
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh random key.
    pub fn generate() -> Result<Self, Error> {
        crate::random::array().map(Self)
    }

    /// The key of a login session's box: `HKDF(salt = "portcullis session credential v1",
    /// IKM = row_share || session_token, info = "credential key")`. `row_share` is kept in
    /// the session's row, `session_token` only in the browser's cookie.
    pub fn for_session(row_share: &[u8; 32], session_token: &[u8]) -> Result<Self, Error> {
        let mut ikm = Zeroizing::new(Vec::with_capacity(32 + session_token.len()));
        ikm.extend_from_slice(row_share);
        ikm.extend_from_slice(session_token);
        Self::derive(SESSION_SALT, &ikm)
    }

    /// The key of a client ticket's box: `HKDF(salt = "portcullis ticket credential v1",
    /// IKM = ticket id (48) || scrambler, info = "credential key")`: both come from the
    /// launch link, which the database never holds.
    pub fn for_ticket(ticket: &TicketId, scrambler: &Scrambler) -> Result<Self, Error> {
        let mut ikm = Zeroizing::new(Vec::with_capacity(TicketId::LEN + Scrambler::MAX_LEN));
        ikm.extend_from_slice(ticket.as_bytes());
        ikm.extend_from_slice(scrambler.as_str().as_bytes());
        Self::derive(TICKET_SALT, &ikm)
    }

    fn derive(salt: &[u8], ikm: &[u8]) -> Result<Self, Error> {
        let prk = kdf::extract(salt, ikm);
        let mut key = Self([0; Self::LEN]);
        kdf::expand(&prk, &[KEY_INFO], &mut key.0)?;
        Ok(key)
    }

    /// The key's id: `SHA-256("portcullis credential key id v1" || key)[0..8)`.
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        let mut input = Zeroizing::new(Vec::with_capacity(KEY_ID_LABEL.len() + Self::LEN));
        input.extend_from_slice(KEY_ID_LABEL);
        input.extend_from_slice(&self.0);
        let digest = kdf::sha256(&input);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        id
    }

    /// The key bytes, to store the broker's credential key. Never log them.
    pub fn expose(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    fn aead(&self) -> Result<LessSafeKey, Error> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Crypto("AES-256-GCM key"))
    }

    /// Seals `secret` for the row `aad` names, with a fresh random nonce.
    pub fn seal(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_with_nonce(crate::random::array()?, aad, secret)
    }

    /// Seals with a given nonce: for known-answer tests. A nonce must never repeat under one
    /// key; use [`CredentialKey::seal`].
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        secret: &[u8],
    ) -> Result<Vec<u8>, Error> {
        if secret.len() > MAX_SECRET_LEN {
            return Err(Error::TooLarge {
                what: "credential",
                got: secret.len(),
                max: MAX_SECRET_LEN,
            });
        }
        let mut body = Zeroizing::new(Vec::with_capacity(secret.len() + TAG_LEN));
        body.extend_from_slice(secret);
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *body,
            )
            .map_err(|_| Error::Crypto("AES-256-GCM seal"))?;
        let mut sealed = Vec::with_capacity(BOX_OVERHEAD + secret.len());
        sealed.push(BOX_VERSION);
        sealed.extend_from_slice(&self.id());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens a box sealed under this key for `aad`.
    ///
    /// Errors: [`Error::Invalid`] for a box too short or of another version,
    /// [`Error::Unsupported`] naming the box's key id when another key sealed it,
    /// [`Error::DecryptFailed`] for a wrong `aad` or tampered bytes.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Secret, Error> {
        let key_id = box_key_id(sealed)?;
        if key_id != self.id() {
            return Err(Error::Unsupported {
                what: "credential key (the box was sealed under key id)",
                value: crate::hex::encode(&key_id),
            });
        }
        let rest = &sealed[1 + KEY_ID_LEN..];
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::DecryptFailed)?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| Error::DecryptFailed)?;
        Ok(Secret(plain.to_vec()))
    }
}

/// The key id a box names, after checking its version and length.
pub fn box_key_id(sealed: &[u8]) -> Result<[u8; KEY_ID_LEN], Error> {
    if sealed.len() < BOX_OVERHEAD {
        return Err(Error::Invalid {
            what: "credential box",
            reason: "shorter than a box around an empty secret",
        });
    }
    if sealed[0] != BOX_VERSION {
        return Err(Error::Invalid {
            what: "credential box",
            reason: "unknown version",
        });
    }
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&sealed[1..=KEY_ID_LEN]);
    Ok(id)
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialKey(id {})", crate::hex::encode(&self.id()))
    }
}

/// An opened secret: zeroized on drop, no `Debug` of its bytes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text (passwords are), in a zeroizing buffer.
    pub fn to_text(&self) -> Result<Zeroizing<String>, Error> {
        core::str::from_utf8(&self.0)
            .map(|text| Zeroizing::new(text.to_owned()))
            .map_err(|_| Error::Invalid {
                what: "credential",
                reason: "not UTF-8",
            })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// What the broker stores to check a launch link's scrambler, instead of the scrambler:
/// `SHA-256("portcullis scrambler v1" || 0x00 || scrambler)`.
pub fn scrambler_hash(scrambler: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(SCRAMBLER_LABEL.len() + 1 + scrambler.len());
    input.extend_from_slice(SCRAMBLER_LABEL);
    input.push(0);
    input.extend_from_slice(scrambler.as_bytes());
    kdf::sha256(&input)
}

#[cfg(test)]
mod tests;
