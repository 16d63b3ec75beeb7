//! Lowercase hex, for the few fields the APIs carry as hex (the `hex` crate, with this
//! crate's errors).

use crate::Error;

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Decodes hex (either case) into `out`, which fixes the expected length.
pub(crate) fn decode_into(text: &str, out: &mut [u8], what: &'static str) -> Result<(), Error> {
    if text.len() % 2 != 0 || text.len() / 2 != out.len() {
        return Err(Error::WrongLength {
            what,
            expected: out.len(),
            got: text.len() / 2,
        });
    }
    ::hex::decode_to_slice(text, out).map_err(|_| Error::Invalid {
        what,
        reason: "not hex",
    })
}

/// Decodes exactly `N` bytes of hex.
pub fn decode_array<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    decode_into(text, &mut out, what)?;
    Ok(out)
}
