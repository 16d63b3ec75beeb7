//! ML-KEM-768 (FIPS 203): the launcher's ephemeral key pair, encapsulation at the broker.

use aws_lc_rs::kem::{self, ML_KEM_768};

use crate::{Error, SharedSecret};

/// Length of an ML-KEM-768 encapsulation (public) key.
pub const ENCAPSULATION_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 decapsulation (private) key in its expanded form.
pub const DECAPSULATION_KEY_LEN: usize = 2400;
/// Length of an ML-KEM-768 ciphertext.
pub const CIPHERTEXT_LEN: usize = 1088;

/// An ML-KEM-768 encapsulation key, as sent by a launcher or tunnel server.
#[derive(Clone, PartialEq, Eq)]
pub struct EncapsulationKey(Box<[u8; ENCAPSULATION_KEY_LEN]>);

/// The ML-KEM modulus.
const Q: u16 = 3329;
/// Bytes of the key's encoded polynomial vector (k = 3 polynomials of 384 bytes); the
/// 32-byte seed ρ follows.
const VECTOR_LEN: usize = 3 * 384;

/// The FIPS 203 input check of an encapsulation key (the "modulus check"): every 12-bit
/// coefficient of its `ByteEncode12`-encoded vector is below q. aws-lc's parse does not
/// look at them, and nobody can encapsulate to a key that fails.
fn passes_modulus_check(key: &[u8; ENCAPSULATION_KEY_LEN]) -> bool {
    key[..VECTOR_LEN].chunks_exact(3).all(|bytes| {
        let (b0, b1, b2) = (
            u16::from(bytes[0]),
            u16::from(bytes[1]),
            u16::from(bytes[2]),
        );
        let low = b0 | ((b1 & 0x0f) << 8);
        let high = (b1 >> 4) | (b2 << 4);
        low < Q && high < Q
    })
}

impl EncapsulationKey {
    /// Checks and wraps 1184 received bytes: the length, the FIPS 203 modulus check, and
    /// aws-lc's parse, so that a key nobody can encapsulate to is refused as invalid input
    /// here rather than failing later at encapsulation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; ENCAPSULATION_KEY_LEN] =
            bytes.try_into().map_err(|_| Error::WrongLength {
                what: "ML-KEM-768 encapsulation key",
                expected: ENCAPSULATION_KEY_LEN,
                got: bytes.len(),
            })?;
        if !passes_modulus_check(&array) {
            return Err(Error::Invalid {
                what: "ML-KEM-768 encapsulation key",
                reason: "a coefficient is not below q = 3329 (FIPS 203 modulus check)",
            });
        }
        // Parse once so a malformed key is refused here rather than at encapsulation.
        kem::EncapsulationKey::new(&ML_KEM_768, &array).map_err(|_| Error::Invalid {
            what: "ML-KEM-768 encapsulation key",
            reason: "rejected by ML-KEM key checks",
        })?;
        Ok(Self(Box::new(array)))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; ENCAPSULATION_KEY_LEN] {
        &self.0
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate(&self) -> Result<(Ciphertext, SharedSecret), Error> {
        let key = kem::EncapsulationKey::new(&ML_KEM_768, self.0.as_slice())
            .map_err(|_| Error::Crypto("ML-KEM-768 encapsulation key"))?;
        let (ciphertext, secret) = key
            .encapsulate()
            .map_err(|_| Error::Crypto("ML-KEM-768 encapsulation"))?;
        let ciphertext = Ciphertext::from_bytes(ciphertext.as_ref())?;
        let secret = SharedSecret::from_slice(secret.as_ref())?;
        Ok((ciphertext, secret))
    }
}

impl core::fmt::Debug for EncapsulationKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EncapsulationKey(ML-KEM-768)")
    }
}

/// An ML-KEM-768 ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext(Box<[u8; CIPHERTEXT_LEN]>);

impl Ciphertext {
    /// Checks the length of and wraps received ciphertext bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; CIPHERTEXT_LEN] = bytes.try_into().map_err(|_| Error::WrongLength {
            what: "ML-KEM-768 ciphertext",
            expected: CIPHERTEXT_LEN,
            got: bytes.len(),
        })?;
        Ok(Self(Box::new(array)))
    }

    /// The raw ciphertext bytes.
    pub fn as_bytes(&self) -> &[u8; CIPHERTEXT_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ciphertext(ML-KEM-768)")
    }
}

/// An ML-KEM-768 key pair. The launcher makes one per ticket exchange and drops it after.
///
/// The private half lives inside aws-lc, which clears it when the key is freed.
pub struct DecapsulationKey {
    private: kem::DecapsulationKey,
    public: EncapsulationKey,
}

impl DecapsulationKey {
    /// Generates a fresh key pair.
    pub fn generate() -> Result<Self, Error> {
        let private = kem::DecapsulationKey::generate(&ML_KEM_768)
            .map_err(|_| Error::Crypto("ML-KEM-768 key generation"))?;
        let public_bytes = private
            .encapsulation_key()
            .and_then(|key| key.key_bytes().map(|bytes| bytes.as_ref().to_vec()))
            .map_err(|_| Error::Crypto("ML-KEM-768 key generation"))?;
        let public = EncapsulationKey::from_bytes(&public_bytes)?;
        Ok(Self { private, public })
    }

    /// Restores a private key from its 2400-byte expanded form and its public key.
    ///
    /// Only for test vectors and stored keys: a launcher always generates a fresh one.
    pub fn from_bytes(private: &[u8], public: EncapsulationKey) -> Result<Self, Error> {
        if private.len() != DECAPSULATION_KEY_LEN {
            return Err(Error::WrongLength {
                what: "ML-KEM-768 decapsulation key",
                expected: DECAPSULATION_KEY_LEN,
                got: private.len(),
            });
        }
        let private =
            kem::DecapsulationKey::new(&ML_KEM_768, private).map_err(|_| Error::Invalid {
                what: "ML-KEM-768 decapsulation key",
                reason: "rejected",
            })?;
        Ok(Self { private, public })
    }

    /// Restores a private key from its expanded form, taking the public key from inside it
    /// (FIPS 203 stores `ek` at bytes 1152..2336 of `dk`).
    pub fn from_expanded(private: &[u8]) -> Result<Self, Error> {
        const EK_OFFSET: usize = 384 * 3;
        let public = private
            .get(EK_OFFSET..EK_OFFSET + ENCAPSULATION_KEY_LEN)
            .ok_or(Error::WrongLength {
                what: "ML-KEM-768 decapsulation key",
                expected: DECAPSULATION_KEY_LEN,
                got: private.len(),
            })?;
        let public = EncapsulationKey::from_bytes(public)?;
        Self::from_bytes(private, public)
    }

    /// The public key to send to the broker.
    pub fn encapsulation_key(&self) -> &EncapsulationKey {
        &self.public
    }

    /// Recovers the shared secret from a ciphertext.
    ///
    /// ML-KEM decapsulation never fails on a well-formed ciphertext: a forged one yields an
    /// unrelated secret, and the AEAD that follows refuses it.
    pub fn decapsulate(&self, ciphertext: &Ciphertext) -> Result<SharedSecret, Error> {
        let secret = self
            .private
            .decapsulate(kem::Ciphertext::from(ciphertext.as_bytes().as_slice()))
            .map_err(|_| Error::DecryptFailed)?;
        SharedSecret::from_slice(secret.as_ref())
    }
}

impl core::fmt::Debug for DecapsulationKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DecapsulationKey(ML-KEM-768, <redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_with(
        edit: impl FnOnce(&mut [u8; ENCAPSULATION_KEY_LEN]),
    ) -> Result<EncapsulationKey, Error> {
        let pair = DecapsulationKey::generate().unwrap();
        let mut bytes = *pair.encapsulation_key().as_bytes();
        edit(&mut bytes);
        EncapsulationKey::from_bytes(&bytes)
    }

    #[test]
    fn a_key_failing_the_modulus_check_is_invalid_input() {
        let all_ff = EncapsulationKey::from_bytes(&[0xff; ENCAPSULATION_KEY_LEN]);
        assert!(matches!(all_ff, Err(Error::Invalid { .. })), "{all_ff:?}");
        // The second coefficient of the last triple of the vector: bytes 1149..1152.
        let set_high = |value: u16| {
            move |bytes: &mut [u8; ENCAPSULATION_KEY_LEN]| {
                bytes[VECTOR_LEN - 2] =
                    (bytes[VECTOR_LEN - 2] & 0x0f) | ((value as u8 & 0x0f) << 4);
                bytes[VECTOR_LEN - 1] = (value >> 4) as u8;
            }
        };
        assert!(matches!(key_with(set_high(Q)), Err(Error::Invalid { .. })));
        assert!(key_with(set_high(Q - 1)).is_ok());
        // The seed ρ after the vector is not checked: any bytes are fine there.
        assert!(key_with(|bytes| bytes[VECTOR_LEN..].fill(0xff)).is_ok());
        for _ in 0..20 {
            let pair = DecapsulationKey::generate().unwrap();
            assert!(passes_modulus_check(pair.encapsulation_key().as_bytes()));
        }
    }

    #[test]
    fn round_trip() {
        let pair = DecapsulationKey::generate().unwrap();
        let (ct, sent) = pair.encapsulation_key().encapsulate().unwrap();
        let received = pair.decapsulate(&ct).unwrap();
        assert!(sent == received);
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        assert_eq!(
            EncapsulationKey::from_bytes(&[0; 1183]).unwrap_err(),
            Error::WrongLength {
                what: "ML-KEM-768 encapsulation key",
                expected: 1184,
                got: 1183
            }
        );
        assert!(matches!(
            Ciphertext::from_bytes(&[0; 1089]).unwrap_err(),
            Error::WrongLength {
                expected: 1088,
                got: 1089,
                ..
            }
        ));
        assert!(matches!(
            DecapsulationKey::from_expanded(&[0; 100]).unwrap_err(),
            Error::WrongLength { expected: 2400, .. }
        ));
    }

    #[test]
    fn a_forged_ciphertext_gives_another_secret() {
        let pair = DecapsulationKey::generate().unwrap();
        let (ct, sent) = pair.encapsulation_key().encapsulate().unwrap();
        let mut forged = *ct.as_bytes();
        forged[0] ^= 1;
        let received = pair
            .decapsulate(&Ciphertext::from_bytes(&forged).unwrap())
            .unwrap();
        assert!(sent != received);
    }
}
