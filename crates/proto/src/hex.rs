//! Lowercase hex, for the few fields the APIs carry as hex.

use crate::Error;

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex (either case) into `out`, which fixes the expected length.
pub(crate) fn decode_into(text: &str, out: &mut [u8], what: &'static str) -> Result<(), Error> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 || digits.len() / 2 != out.len() {
        return Err(Error::WrongLength {
            what,
            expected: out.len(),
            got: digits.len() / 2,
        });
    }
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = nibble(pair[0]).ok_or(Error::Invalid {
            what,
            reason: "not hex",
        })?;
        let low = nibble(pair[1]).ok_or(Error::Invalid {
            what,
            reason: "not hex",
        })?;
        *slot = (high << 4) | low;
    }
    Ok(())
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes of hex.
pub fn decode_array<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    decode_into(text, &mut out, what)?;
    Ok(out)
}
