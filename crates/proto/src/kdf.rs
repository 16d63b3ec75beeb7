//! HKDF-SHA256 (RFC 5869) and HMAC-SHA256 on top of aws-lc-rs.

use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::Error;

/// Output length of SHA-256, and so of a pseudorandom key.
pub(crate) const PRK_LEN: usize = 32;

/// Output length requested from HKDF-Expand.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Extract: `PRK = HMAC-SHA256(salt, ikm)`.
pub(crate) fn extract(salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; PRK_LEN]> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut prk = Zeroizing::new([0u8; PRK_LEN]);
    prk.copy_from_slice(tag.as_ref());
    prk
}

/// HKDF-Expand of `prk` with the concatenation of `info` into `out` (at most 8160 bytes).
pub(crate) fn expand(prk: &[u8; PRK_LEN], info: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk)
        .expand(info, OutputLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Misuse("HKDF output longer than 255 hashes"))
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}
