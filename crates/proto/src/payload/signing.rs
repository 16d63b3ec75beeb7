//! ML-DSA-65 (FIPS 204): the broker's signing key and the launcher's pinned verifying key.
//!
//! All signatures are "pure" ML-DSA-65 with the empty context string. The broker stores
//! only the 32-byte seed of its key ([`SigningKey::seed`]); the key pair is re-derived from
//! it deterministically. Operators and launchers identify the key by the base64 of its raw
//! 1952-byte public key ([`VerifyingKey::to_base64`]) or by its
//! [fingerprint](VerifyingKey::fingerprint).

use core::fmt;

use aws_lc_rs::signature::{
    KeyPair as _, ML_DSA_65, ML_DSA_65_SIGNING, ParsedPublicKey, PqdsaKeyPair,
};
use zeroize::Zeroizing;

use crate::{Error, b64, hex, kdf, random};

/// Length of an ML-DSA-65 seed.
pub const SEED_LEN: usize = 32;
/// Length of a raw ML-DSA-65 public key.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Length of an ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = 3309;

/// The broker's ML-DSA-65 key pair, derived from a 32-byte seed.
///
/// The seed is zeroized on drop; the expanded private key lives inside aws-lc, which
/// clears it when the key is freed. No `Clone`; `Debug` shows only the fingerprint.
pub struct SigningKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    pair: PqdsaKeyPair,
    verifying: VerifyingKey,
}

impl SigningKey {
    /// Draws a fresh seed from the system CSPRNG and derives the key pair from it.
    pub fn generate() -> Result<Self, Error> {
        let seed = Zeroizing::new(random::array::<SEED_LEN>()?);
        Self::from_seed(&seed)
    }

    /// Derives the key pair from a stored seed (FIPS 204 `ML-DSA.KeyGen_internal`):
    /// the same seed always gives the same key pair.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, Error> {
        let pair = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, seed)
            .map_err(|_| Error::Crypto("ML-DSA-65 key derivation"))?;
        let verifying = VerifyingKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self {
            seed: Zeroizing::new(*seed),
            pair,
            verifying,
        })
    }

    /// The seed, for storage. Never log it.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// Signs `message` (ML-DSA-65, empty context). Signing is randomized: two signatures
    /// of one message differ, and both verify.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut signature = vec![0u8; SIGNATURE_LEN];
        let written = self
            .pair
            .sign(message, &mut signature)
            .map_err(|_| Error::Crypto("ML-DSA-65 signing"))?;
        if written != SIGNATURE_LEN {
            return Err(Error::Crypto("ML-DSA-65 signing"));
        }
        Ok(signature)
    }

    /// The public half, to publish and to pin in launchers.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(ML-DSA-65, {}, <redacted>)",
            self.verifying.fingerprint()
        )
    }
}

/// An ML-DSA-65 public key: the raw 1952-byte FIPS 204 encoding.
///
/// The key is parsed once when it is created, so verification does not parse it again.
#[derive(Clone)]
pub struct VerifyingKey {
    bytes: Box<[u8; PUBLIC_KEY_LEN]>,
    parsed: ParsedPublicKey,
}

impl VerifyingKey {
    /// Checks and wraps a raw 1952-byte public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| Error::WrongLength {
            what: "ML-DSA-65 public key",
            expected: PUBLIC_KEY_LEN,
            got: bytes.len(),
        })?;
        let parsed = ParsedPublicKey::new(&ML_DSA_65, array).map_err(|_| Error::Invalid {
            what: "ML-DSA-65 public key",
            reason: "rejected by ML-DSA key checks",
        })?;
        Ok(Self {
            bytes: Box::new(array),
            parsed,
        })
    }

    /// Parses the standard, padded base64 of the raw public key (as `portcullis admin keys
    /// show` prints it). Surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        Self::from_bytes(&b64::decode(text.trim(), "ML-DSA-65 public key")?)
    }

    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The standard, padded base64 of the raw public key (2604 characters).
    pub fn to_base64(&self) -> String {
        b64::encode(self.bytes.as_slice())
    }

    /// The fingerprint: lowercase hex of SHA-256 over the raw public key (64 characters).
    pub fn fingerprint(&self) -> String {
        hex::encode(&kdf::sha256(self.bytes.as_slice()))
    }

    /// Verifies an ML-DSA-65 signature (empty context) of `message`.
    ///
    /// Any failure, including a signature of the wrong length, is
    /// [`Error::BadSignature`] naming `what`.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), Error> {
        if signature.len() != SIGNATURE_LEN {
            return Err(Error::BadSignature(what));
        }
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| Error::BadSignature(what))
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey(ML-DSA-65, {})", self.fingerprint())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_backend() {
        assert_eq!(ML_DSA_65_SIGNING.public_key_len(), PUBLIC_KEY_LEN);
        assert_eq!(ML_DSA_65_SIGNING.signature_len(), SIGNATURE_LEN);
        assert_eq!(ML_DSA_65_SIGNING.seed_len(), SEED_LEN);
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::generate().unwrap();
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), SIGNATURE_LEN);
        key.verifying_key()
            .verify(b"message", &signature, "test")
            .unwrap();
        assert_eq!(
            key.verifying_key()
                .verify(b"messagf", &signature, "test")
                .unwrap_err(),
            Error::BadSignature("test")
        );
        let mut forged = signature.clone();
        forged[100] ^= 1;
        assert!(
            key.verifying_key()
                .verify(b"message", &forged, "test")
                .is_err()
        );
        assert!(
            key.verifying_key()
                .verify(b"message", &signature[1..], "test")
                .is_err()
        );
        let other = SigningKey::generate().unwrap();
        assert!(
            other
                .verifying_key()
                .verify(b"message", &signature, "test")
                .is_err()
        );
    }

    #[test]
    fn the_seed_determines_the_key() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_seed(key.seed()).unwrap();
        assert_eq!(key.verifying_key(), again.verifying_key());
        let other = SigningKey::from_seed(&[1; 32]).unwrap();
        assert_ne!(key.verifying_key(), other.verifying_key());
    }

    #[test]
    fn base64_and_fingerprint() {
        let key = SigningKey::from_seed(&[7; 32]).unwrap();
        let public = key.verifying_key();
        let text = public.to_base64();
        assert_eq!(text.len(), 2604);
        assert_eq!(
            &VerifyingKey::from_base64(&format!(" {text}\n")).unwrap(),
            public
        );
        let fingerprint = public.fingerprint();
        assert_eq!(fingerprint.len(), 64);
        assert!(
            fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(
            VerifyingKey::from_base64("AAAA").unwrap_err(),
            Error::WrongLength {
                what: "ML-DSA-65 public key",
                expected: 1952,
                got: 3
            }
        );
        assert_eq!(
            VerifyingKey::from_base64("@@").unwrap_err(),
            Error::Base64("ML-DSA-65 public key")
        );
    }

    #[test]
    fn debug_hides_the_seed() {
        let key = SigningKey::from_seed(&[0xab; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("abababab"), "{shown}");
        assert!(shown.contains(&key.verifying_key().fingerprint()));
    }
}
