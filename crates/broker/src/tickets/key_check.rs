//! The FIPS 203 input check of an ML-KEM-768 encapsulation key (§7.2, "modulus check"),
//! run when a request arrives, with its other fields: a key that fails it can never be
//! encapsulated to, so the request is refused as invalid before anything is looked up or
//! consumed (issue 7, point 4).
//!
//! The key is `ByteEncode12` of three polynomials of 256 coefficients (384 bytes each),
//! then the 32-byte seed ρ. Every 12-bit coefficient must be below q = 3329; `proto`'s
//! length check and aws-lc's key parsing do not look at them.

use portcullis_proto::kem::EncapsulationKey;

/// The ML-KEM modulus.
const Q: u16 = 3329;
/// Bytes of the encoded polynomial vector (k = 3 polynomials of 384 bytes).
const VECTOR_LEN: usize = 3 * 384;

/// Whether every coefficient of `key` is reduced modulo q (the FIPS 203 modulus check).
pub fn passes_modulus_check(key: &EncapsulationKey) -> bool {
    key.as_bytes()[..VECTOR_LEN].chunks_exact(3).all(|bytes| {
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

#[cfg(test)]
mod tests {
    use portcullis_proto::kem::{DecapsulationKey, ENCAPSULATION_KEY_LEN};

    use super::*;

    fn key_with(edit: impl FnOnce(&mut [u8; ENCAPSULATION_KEY_LEN])) -> Option<EncapsulationKey> {
        let pair = DecapsulationKey::generate().unwrap();
        let mut bytes = *pair.encapsulation_key().as_bytes();
        edit(&mut bytes);
        EncapsulationKey::from_bytes(&bytes).ok()
    }

    #[test]
    fn generated_keys_pass() {
        for _ in 0..20 {
            let pair = DecapsulationKey::generate().unwrap();
            assert!(passes_modulus_check(pair.encapsulation_key()));
        }
    }

    #[test]
    fn all_ff_fails_here_and_at_encapsulation() {
        // proto accepts it (length and aws-lc's parse), but it cannot be encapsulated to.
        let key = EncapsulationKey::from_bytes(&[0xff; ENCAPSULATION_KEY_LEN]).unwrap();
        assert!(!passes_modulus_check(&key));
        assert!(key.encapsulate().is_err());
    }

    #[test]
    fn one_coefficient_at_q_fails_and_q_minus_one_passes() {
        // The second coefficient of the last triple of the vector: bytes 1149..1152.
        let set_high = |value: u16| {
            move |bytes: &mut [u8; ENCAPSULATION_KEY_LEN]| {
                bytes[VECTOR_LEN - 2] =
                    (bytes[VECTOR_LEN - 2] & 0x0f) | ((value as u8 & 0x0f) << 4);
                bytes[VECTOR_LEN - 1] = (value >> 4) as u8;
            }
        };
        let at_q = key_with(set_high(Q)).unwrap();
        assert!(!passes_modulus_check(&at_q));
        let below = key_with(set_high(Q - 1)).unwrap();
        assert!(passes_modulus_check(&below));
        // The seed ρ after the vector is not checked: any bytes are fine there.
        let seed = key_with(|bytes| bytes[VECTOR_LEN..].fill(0xff)).unwrap();
        assert!(passes_modulus_check(&seed));
    }
}
