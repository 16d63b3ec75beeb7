//! The one source of randomness: the system CSPRNG through aws-lc-rs.

use crate::Error;

/// Fills `out` from the CSPRNG.
pub fn fill(out: &mut [u8]) -> Result<(), Error> {
    aws_lc_rs::rand::fill(out).map_err(|_| Error::Crypto("random number generator"))
}

/// Returns `N` fresh random bytes.
pub fn array<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}
