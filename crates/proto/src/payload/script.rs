//! Launcher scripts, signed once when the broker loads them.

use core::fmt;
use std::sync::Arc;

use super::compress;
use super::signing::{SigningKey, VerifyingKey};
use crate::{Error, b64, kdf};

/// A launcher script with everything the payload needs that does not change between
/// exchanges: its ML-DSA-65 signature and its compressed base64 form.
///
/// Build it once per script and key ([`SignedScript::sign`]) and reuse it for every ticket
/// exchange; cloning is cheap (the contents are shared).
#[derive(Clone)]
pub struct SignedScript(Arc<Inner>);

struct Inner {
    script: Vec<u8>,
    digest: [u8; 32],
    script_b64: String,
    signature: Vec<u8>,
    signature_b64: String,
    signer: VerifyingKey,
}

impl SignedScript {
    /// Signs `script` (the uncompressed bytes, ML-DSA-65, empty context) and compresses it.
    pub fn sign(script: Vec<u8>, key: &SigningKey) -> Result<Self, Error> {
        let signature = key.sign(&script)?;
        Self::from_parts(script, signature, key.verifying_key())
    }

    /// Wraps a script with a signature made earlier (for example stored beside it), after
    /// checking that the signature verifies under `signer`. Scripts are limited to
    /// [`MAX_DECOMPRESSED`](super::MAX_DECOMPRESSED) bytes, what a launcher accepts.
    pub fn from_parts(
        script: Vec<u8>,
        signature: Vec<u8>,
        signer: &VerifyingKey,
    ) -> Result<Self, Error> {
        if script.len() > compress::MAX_DECOMPRESSED {
            return Err(Error::TooLarge {
                what: "script",
                got: script.len(),
                max: compress::MAX_DECOMPRESSED,
            });
        }
        signer.verify(&script, &signature, "script")?;
        let script_b64 = b64::encode(&compress::compress(&script)?);
        let signature_b64 = b64::encode(&signature);
        Ok(Self(Arc::new(Inner {
            digest: kdf::sha256(&script),
            script,
            script_b64,
            signature,
            signature_b64,
            signer: signer.clone(),
        })))
    }

    /// The uncompressed script.
    pub fn script(&self) -> &[u8] {
        &self.0.script
    }

    /// SHA-256 of the uncompressed script.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0.digest
    }

    /// The ML-DSA-65 signature of the uncompressed script.
    pub fn signature(&self) -> &[u8] {
        &self.0.signature
    }

    /// The key that made the signature.
    pub fn signer(&self) -> &VerifyingKey {
        &self.0.signer
    }

    /// The payload's `script` field: `b64(bzip2(script))`.
    pub(crate) fn script_b64(&self) -> &str {
        &self.0.script_b64
    }

    /// The payload's `signature` field.
    pub(crate) fn signature_b64(&self) -> &str {
        &self.0.signature_b64
    }
}

impl fmt::Debug for SignedScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedScript")
            .field("len", &self.0.script.len())
            .field("sha256", &crate::hex::encode(&self.0.digest))
            .field("signer", &self.0.signer)
            .finish()
    }
}
