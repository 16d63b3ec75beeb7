//! Standard, padded, single-line base64: the only base64 the APIs use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// Encodes with the standard alphabet and padding.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard, padded base64; `what` names the field in the error.
pub fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(|_| Error::Base64(what))
}

/// Decodes base64 that must hold exactly `len` bytes.
pub fn decode_exact(text: &str, len: usize, what: &'static str) -> Result<Vec<u8>, Error> {
    let bytes = decode(text, what)?;
    if bytes.len() != len {
        return Err(Error::WrongLength {
            what,
            expected: len,
            got: bytes.len(),
        });
    }
    Ok(bytes)
}
