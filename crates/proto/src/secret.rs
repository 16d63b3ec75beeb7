//! Secret byte strings: fixed-size, zeroized on drop, never printed, compared in constant time.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// Compares two byte strings in constant time (for equal lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The 32-byte shared secret of an ML-KEM-768 exchange.
///
/// It keys the payload envelope and, for tunneled services, the tunnel session. It has no
/// `Clone` and no `Debug` that shows bytes; it is zeroized on drop; `==` compares in
/// constant time.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret([u8; SharedSecret::LEN]);

impl PartialEq for SharedSecret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SharedSecret {}

impl SharedSecret {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; Self::LEN] = bytes.try_into().map_err(|_| Error::WrongLength {
            what: "shared secret",
            expected: Self::LEN,
            got: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// Parses the 64 lowercase or uppercase hex digits of the tunnel-server API.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let mut out = [0u8; Self::LEN];
        crate::hex::decode_into(text, &mut out, "shared secret")?;
        Ok(Self(out))
    }

    /// Draws a fresh random secret (tests, and secrets not born from a KEM).
    pub fn generate() -> Result<Self, Error> {
        crate::random::array().map(Self)
    }

    /// The 64 lowercase hex digits of the tunnel-server API, in a buffer zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::hex::encode(&self.0))
    }

    /// The secret bytes. Never log them.
    pub fn expose(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// A copy that is zeroized independently; use where two owners really need the secret.
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_by_value() {
        assert!(SharedSecret::from_bytes([1; 32]) == SharedSecret::from_bytes([1; 32]));
        let mut other = [1; 32];
        other[31] = 2;
        assert!(SharedSecret::from_bytes([1; 32]) != SharedSecret::from_bytes(other));
    }

    #[test]
    fn debug_shows_no_bytes() {
        let secret = SharedSecret::from_bytes([0x41; 32]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains("41") && !shown.contains("65"), "{shown}");
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let secret = SharedSecret::generate().unwrap();
        assert!(SharedSecret::from_hex(&secret.to_hex()).unwrap() == secret);
        assert_eq!(
            SharedSecret::from_hex("00").unwrap_err(),
            Error::WrongLength {
                what: "shared secret",
                expected: 32,
                got: 1
            }
        );
        assert!(SharedSecret::from_hex(&"zz".repeat(32)).is_err());
    }
}
