//! The OpenUDS 5 ticket key schedule and encrypted envelope.
//!
//! Both the client API (broker → launcher) and the tunnel-server API (broker → tunnel
//! server) answer with an [`Envelope`]: an ML-KEM-768 ciphertext to the requester's key and
//! the AES-256-GCM encryption of a JSON document under keys derived from the KEM shared
//! secret with HKDF-SHA256, salted with the ticket id:
//!
//! ```text
//! OKM = HKDF-SHA256(salt = ticket id (48 ASCII bytes), IKM = shared secret,
//!                   info = "openuds-ticket-crypt", L = 108)
//! payload key = OKM[0..32]   client→server key = OKM[32..64]
//! server→client key = OKM[64..96]   payload nonce = OKM[96..108]
//! data = AES-256-GCM(payload key, payload nonce, AAD = empty, plaintext) || tag
//! ```

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kem::{Ciphertext, DecapsulationKey, EncapsulationKey};
use crate::{Error, SharedSecret, TicketId, b64, kdf};

/// HKDF info string of the OpenUDS 5 ticket key schedule.
pub const KEY_SCHEDULE_INFO: &[u8] = b"openuds-ticket-crypt";
/// Total HKDF output length of the key schedule.
pub const KEY_SCHEDULE_LEN: usize = 108;
/// The only algorithm name an envelope may carry.
pub const ENVELOPE_ALGORITHM: &str = "AES-256-GCM";
/// Length of the AES-256-GCM tag appended to `data`.
pub const TAG_LEN: usize = 16;

/// The four outputs of the OpenUDS 5 ticket key schedule. Zeroized on drop.
///
/// The payload key is used with a nonce fixed by the key schedule, so it must encrypt one
/// message only: a second AES-GCM message under the same key and nonce would reveal the XOR
/// of both plaintexts and let anyone forge tags. [`TicketKeys::encrypt_payload`] and
/// [`TicketKeys::decrypt_payload`] therefore take the keys by value: each derivation
/// seals or opens one payload, and a second use does not compile.
///
/// ```compile_fail,E0382
/// # use portcullis_proto::openuds::TicketKeys;
/// fn seal_twice(keys: TicketKeys) {
///     let _ = keys.encrypt_payload(b"first");
///     let _ = keys.encrypt_payload(b"second"); // the same key and nonce again
/// }
/// ```
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TicketKeys {
    payload_key: [u8; 32],
    client_to_server: [u8; 32],
    server_to_client: [u8; 32],
    payload_nonce: [u8; 12],
}

impl TicketKeys {
    /// Derives the keys from a shared secret and a salt (the ticket id's ASCII bytes).
    pub fn derive(secret: &SharedSecret, salt: &[u8]) -> Result<Self, Error> {
        let prk = kdf::extract(salt, secret.expose());
        let mut okm = Zeroizing::new([0u8; KEY_SCHEDULE_LEN]);
        kdf::expand(&prk, &[KEY_SCHEDULE_INFO], okm.as_mut_slice())?;
        let mut keys = Self {
            payload_key: [0; 32],
            client_to_server: [0; 32],
            server_to_client: [0; 32],
            payload_nonce: [0; 12],
        };
        keys.payload_key.copy_from_slice(&okm[0..32]);
        keys.client_to_server.copy_from_slice(&okm[32..64]);
        keys.server_to_client.copy_from_slice(&okm[64..96]);
        keys.payload_nonce.copy_from_slice(&okm[96..108]);
        Ok(keys)
    }

    /// The key that encrypts the envelope's `data` (for test vectors: seal and open with
    /// [`Self::encrypt_payload`] and [`Self::decrypt_payload`]).
    pub fn payload_key(&self) -> &[u8; 32] {
        &self.payload_key
    }

    /// OpenUDS 5's client→server tunnel key (`key_send`). Portcullis tunnels do not use it.
    pub fn client_to_server(&self) -> &[u8; 32] {
        &self.client_to_server
    }

    /// OpenUDS 5's server→client tunnel key (`key_receive`). Portcullis tunnels do not use it.
    pub fn server_to_client(&self) -> &[u8; 32] {
        &self.server_to_client
    }

    /// The nonce of the envelope's `data`.
    pub fn payload_nonce(&self) -> &[u8; 12] {
        &self.payload_nonce
    }

    fn payload_cipher(&self) -> Result<LessSafeKey, Error> {
        UnboundKey::new(&AES_256_GCM, &self.payload_key)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Crypto("AES-256-GCM key"))
    }

    /// Encrypts a payload: ciphertext with the 16-byte tag appended. Consumes the keys: the
    /// payload nonce is fixed, so the payload key may encrypt one message only.
    pub fn encrypt_payload(self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut data = Vec::with_capacity(plaintext.len() + TAG_LEN);
        data.extend_from_slice(plaintext);
        self.payload_cipher()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(self.payload_nonce),
                Aad::empty(),
                &mut data,
            )
            .map_err(|_| Error::Crypto("AES-256-GCM seal"))?;
        Ok(data)
    }

    /// Decrypts and authenticates a payload (ciphertext with the tag appended). Consumes
    /// the keys, as [`Self::encrypt_payload`] does: one derivation, one payload.
    pub fn decrypt_payload(self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if data.len() < TAG_LEN {
            return Err(Error::DecryptFailed);
        }
        let mut buffer = Zeroizing::new(data.to_vec());
        let plaintext_len = self
            .payload_cipher()?
            .open_in_place(
                Nonce::assume_unique_for_key(self.payload_nonce),
                Aad::empty(),
                buffer.as_mut_slice(),
            )
            .map_err(|_| Error::DecryptFailed)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }
}

/// The encrypted answer of the client and tunnel-server APIs, as it appears in JSON.
///
/// `ciphertext` and `data` are standard padded base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always `"AES-256-GCM"`.
    pub algorithm: String,
    /// Base64 of the 1088-byte ML-KEM-768 ciphertext.
    pub ciphertext: String,
    /// Base64 of the AES-256-GCM output with the tag appended.
    pub data: String,
}

impl Envelope {
    /// Broker side: encapsulates to `recipient`, derives the keys with `ticket` as salt and
    /// encrypts `plaintext`. Returns the envelope and the shared secret (which a tunnel
    /// ticket keeps).
    pub fn seal(
        recipient: &EncapsulationKey,
        ticket: &TicketId,
        plaintext: &[u8],
    ) -> Result<(Self, SharedSecret), Error> {
        let (ciphertext, secret) = recipient.encapsulate()?;
        let keys = TicketKeys::derive(&secret, ticket.as_bytes())?;
        let data = keys.encrypt_payload(plaintext)?;
        let envelope = Self {
            algorithm: ENVELOPE_ALGORITHM.to_owned(),
            ciphertext: b64::encode(ciphertext.as_bytes()),
            data: b64::encode(&data),
        };
        Ok((envelope, secret))
    }

    /// Requester side: checks the algorithm, decapsulates, derives the keys with `ticket`
    /// as salt and decrypts. Returns the plaintext and the shared secret.
    pub fn open(
        &self,
        key: &DecapsulationKey,
        ticket: &TicketId,
    ) -> Result<(Zeroizing<Vec<u8>>, SharedSecret), Error> {
        if self.algorithm != ENVELOPE_ALGORITHM {
            return Err(Error::Unsupported {
                what: "envelope algorithm",
                value: self.algorithm.chars().take(32).collect(),
            });
        }
        let ciphertext = b64::decode(&self.ciphertext, "envelope ciphertext")?;
        let ciphertext = Ciphertext::from_bytes(&ciphertext)?;
        let data = b64::decode(&self.data, "envelope data")?;
        let secret = key.decapsulate(&ciphertext)?;
        let keys = TicketKeys::derive(&secret, ticket.as_bytes())?;
        let plaintext = keys.decrypt_payload(&data)?;
        Ok((plaintext, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> (DecapsulationKey, TicketId, Envelope) {
        let pair = DecapsulationKey::generate().unwrap();
        let ticket = TicketId::generate().unwrap();
        let (envelope, _) = Envelope::seal(pair.encapsulation_key(), &ticket, b"{}").unwrap();
        (pair, ticket, envelope)
    }

    #[test]
    fn seal_then_open() {
        let pair = DecapsulationKey::generate().unwrap();
        let ticket = TicketId::generate().unwrap();
        let (envelope, sent) =
            Envelope::seal(pair.encapsulation_key(), &ticket, b"{\"a\":1}").unwrap();
        let (plaintext, received) = envelope.open(&pair, &ticket).unwrap();
        assert_eq!(plaintext.as_slice(), b"{\"a\":1}");
        assert!(sent == received);
    }

    #[test]
    fn wrong_ticket_salt_fails() {
        let (pair, _, envelope) = sealed();
        let other = TicketId::generate().unwrap();
        assert_eq!(
            envelope.open(&pair, &other).unwrap_err(),
            Error::DecryptFailed
        );
    }

    #[test]
    fn flipped_bits_fail() {
        let (pair, ticket, envelope) = sealed();
        let data = b64::decode(&envelope.data, "data").unwrap();
        for index in [0, data.len() - 1] {
            let mut forged = data.clone();
            forged[index] ^= 0x80;
            let forged = Envelope {
                data: b64::encode(&forged),
                ..envelope.clone()
            };
            assert_eq!(
                forged.open(&pair, &ticket).unwrap_err(),
                Error::DecryptFailed
            );
        }
        let mut ct = b64::decode(&envelope.ciphertext, "ct").unwrap();
        ct[10] ^= 1;
        let forged = Envelope {
            ciphertext: b64::encode(&ct),
            ..envelope.clone()
        };
        assert_eq!(
            forged.open(&pair, &ticket).unwrap_err(),
            Error::DecryptFailed
        );
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        let (pair, ticket, envelope) = sealed();
        let bad_alg = Envelope {
            algorithm: "NONE".into(),
            ..envelope.clone()
        };
        assert!(matches!(
            bad_alg.open(&pair, &ticket),
            Err(Error::Unsupported { .. })
        ));
        let bad_b64 = Envelope {
            data: "***".into(),
            ..envelope.clone()
        };
        assert_eq!(
            bad_b64.open(&pair, &ticket).unwrap_err(),
            Error::Base64("envelope data")
        );
        let short_ct = Envelope {
            ciphertext: b64::encode(&[0; 10]),
            ..envelope.clone()
        };
        assert!(matches!(
            short_ct.open(&pair, &ticket),
            Err(Error::WrongLength { .. })
        ));
        let truncated = Envelope {
            data: b64::encode(&[0; 5]),
            ..envelope
        };
        assert_eq!(
            truncated.open(&pair, &ticket).unwrap_err(),
            Error::DecryptFailed
        );
    }
}
