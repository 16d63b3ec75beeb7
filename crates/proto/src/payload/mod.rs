//! The launcher payload: the signed script and its parameters, the plaintext of the
//! client-API [`Envelope`](crate::openuds::Envelope).
//!
//! ```text
//! {"script": b64(bzip2(script)), "type": "javascript",
//!  "signature_algorithm": "MLDSA65", "signature": b64(ML-DSA-65(script)),
//!  "params": b64(bzip2(params JSON)), "log": {"level": "info", "ticket": null},
//!  "payload_signature": b64(ML-DSA-65(canonical message))}      <- Portcullis only
//! ```
//!
//! - The script signature covers the uncompressed script bytes; scripts are signed once
//!   when the broker loads them ([`SignedScript`]).
//! - The payload signature (docs/protocol.md §9, difference 5) covers digests of the
//!   script and the params, the client ticket and a digest of the launcher's ML-KEM-768
//!   key, in the canonical encoding of [`payload_signature_message`]. It is made for every exchange,
//!   and only for launchers that announce the `payload-signature` capability: OpenUDS 5
//!   launchers get exactly the OpenUDS 5 document.
//! - Both are ML-DSA-65 with the empty context, under the broker's key ([`SigningKey`]),
//!   which a launcher pins as a [`VerifyingKey`].
//!
//! The broker calls [`build`]; the launcher calls [`decode`] and then
//! [`DecodedPayload::verify`], whose [`VerifiedPayload`] is the only readable form.

mod compress;
mod message;
mod script;
mod signing;
mod wire;

use core::fmt;

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

pub use compress::{MAX_DECOMPRESSED, compress, decompress, decompress_with_limit};
pub use message::{
    PAYLOAD_SIGNATURE_LABEL, PAYLOAD_SIGNATURE_MESSAGE_LEN, payload_signature_message,
};
pub use script::SignedScript;
pub use signing::{PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN, SigningKey, VerifyingKey};
pub use wire::{
    DEFAULT_LOG_LEVEL, LogSettings, SCRIPT_TYPE_JAVASCRIPT, SIGNATURE_ALGORITHM_MLDSA65,
    WirePayload,
};

use crate::kem::EncapsulationKey;
use crate::{Error, TicketId, b64, kdf};

/// For whom [`build`] makes a payload, and whether it adds the payload signature.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions<'a> {
    /// The client ticket being exchanged (also the HKDF salt of the envelope).
    pub ticket: &'a TicketId,
    /// The launcher's ML-KEM-768 key from the ticket request (the envelope's recipient).
    pub client_key: &'a EncapsulationKey,
    /// Add `payload_signature`: true exactly when the launcher announced the
    /// `payload-signature` capability.
    pub payload_signature: bool,
}

/// Broker side: builds the payload JSON for one exchange.
///
/// `params` is the JSON document handed to the script (it must be valid JSON, at most
/// [`MAX_DECOMPRESSED`] bytes); it usually holds credentials, so the result is zeroized on
/// drop. `key` must be the key that signed `script`; it also makes the payload signature
/// when `options.payload_signature` is set.
pub fn build(
    script: &SignedScript,
    params: &[u8],
    log: &LogSettings,
    key: &SigningKey,
    options: &BuildOptions<'_>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if script.signer() != key.verifying_key() {
        return Err(Error::Misuse(
            "the script was signed with another key than the payload",
        ));
    }
    if params.len() > MAX_DECOMPRESSED {
        return Err(Error::TooLarge {
            what: "params",
            got: params.len(),
            max: MAX_DECOMPRESSED,
        });
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(params)
        .map_err(|error| json_error("params", &error))?;
    let params_b64 = Zeroizing::new(b64::encode(&Zeroizing::new(compress(params)?)));
    let payload_signature = if options.payload_signature {
        let message = message::message_from_digests(
            script.digest(),
            &kdf::sha256(params),
            options.ticket,
            &kdf::sha256(options.client_key.as_bytes()),
        );
        Some(b64::encode(&key.sign(&message)?))
    } else {
        None
    };
    let wire = wire::WirePayloadRef {
        script: script.script_b64(),
        script_type: SCRIPT_TYPE_JAVASCRIPT,
        signature_algorithm: SIGNATURE_ALGORITHM_MLDSA65,
        signature: script.signature_b64(),
        params: &params_b64,
        log,
        payload_signature: payload_signature.as_deref(),
    };
    serde_json::to_vec(&wire)
        .map(Zeroizing::new)
        .map_err(|error| json_error("launcher payload", &error))
}

/// Launcher side: parses a decrypted payload, decoding and decompressing every field.
///
/// Nothing is verified yet, and nothing of it can be read: [`DecodedPayload::verify`] turns
/// it into a [`VerifiedPayload`], which has the accessors. Unknown `type` and
/// `signature_algorithm` values are kept as data (verification refuses an unknown
/// algorithm). Each of `script` and `params` may decompress to at most [`MAX_DECOMPRESSED`]
/// bytes; `params` must be JSON.
pub fn decode(json: &[u8]) -> Result<DecodedPayload, Error> {
    let wire: WirePayload =
        serde_json::from_slice(json).map_err(|error| json_error("launcher payload", &error))?;
    let mut script_z = decompress(&b64::decode(&wire.script, "script")?, "script")?;
    let script = core::mem::take(&mut *script_z);
    let signature = b64::decode(&wire.signature, "signature")?;
    let params_bz = Zeroizing::new(b64::decode(&wire.params, "params")?);
    let params = decompress(&params_bz, "params")?;
    let params_json: Value =
        serde_json::from_slice(&params).map_err(|error| json_error("params", &error))?;
    let payload_signature = wire
        .payload_signature
        .as_deref()
        .map(|text| b64::decode(text, "payload_signature"))
        .transpose()?;
    Ok(DecodedPayload(Contents {
        script,
        script_type: wire.script_type.clone(),
        signature_algorithm: wire.signature_algorithm.clone(),
        signature,
        params,
        params_json,
        log: wire.log.clone(),
        payload_signature,
    }))
}

/// Which payload signatures [`DecodedPayload::verify`] accepts. The script signature is
/// always required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignaturePolicy {
    /// The payload signature must be present and verify: what a launcher that announced the
    /// `payload-signature` capability requires, since a stripped signature is a downgrade.
    Required,
    /// A present payload signature must verify; an absent one is accepted. Only for a
    /// launcher that did not announce the capability (OpenUDS 5), whose broker sends none.
    IfPresent,
}

/// A decoded launcher payload, not verified: its only use is [`DecodedPayload::verify`].
///
/// It offers no accessor, so nothing of an unverified payload (script, params, log
/// settings) can be used by mistake. The params usually hold credentials: `Debug` does not
/// show them, and they are zeroized on drop.
///
/// ```compile_fail,E0599
/// fn run(payload: portcullis_proto::payload::DecodedPayload) {
///     let _ = payload.script(); // not verified: there is nothing to read
/// }
/// ```
#[derive(Debug)]
pub struct DecodedPayload(Contents);

/// A launcher payload whose script signature, and payload signature as the
/// [`SignaturePolicy`] asked, verified under the broker's key: the only way to read one.
///
/// The params (bytes and parsed JSON) usually hold credentials: `Debug` does not show them,
/// and they are zeroized on drop (the strings of the parsed JSON on a best-effort basis:
/// object keys and numbers are not).
#[derive(Debug)]
pub struct VerifiedPayload(Contents);

impl DecodedPayload {
    /// Checks the payload's signatures under the broker's pinned key, and gives the payload
    /// readable only if they verify.
    ///
    /// 1. `signature_algorithm` must be `"MLDSA65"` ([`Error::Unsupported`] otherwise).
    /// 2. `signature` must verify over the uncompressed script
    ///    ([`Error::BadSignature`]`("script")`).
    /// 3. If `payload_signature` is present, it must verify over
    ///    [`payload_signature_message`] for this script, these params, `ticket` and
    ///    `client_key` ([`Error::BadSignature`]`("payload")`); if it is absent, `policy`
    ///    [`SignaturePolicy::Required`] gives [`Error::MissingSignature`]`("payload")`.
    ///
    /// `ticket` is the ticket of the launch URL and `client_key` the key the launcher sent
    /// in its request: a payload built for another ticket or key (a man in the middle
    /// that substituted its own key) fails step 3. On failure the payload is dropped
    /// (and its params zeroized).
    pub fn verify(
        self,
        broker_key: &VerifyingKey,
        ticket: &TicketId,
        client_key: &EncapsulationKey,
        policy: SignaturePolicy,
    ) -> Result<VerifiedPayload, Error> {
        let contents = &self.0;
        if contents.signature_algorithm != SIGNATURE_ALGORITHM_MLDSA65 {
            return Err(Error::Unsupported {
                what: "script signature algorithm",
                value: contents.signature_algorithm.chars().take(32).collect(),
            });
        }
        broker_key.verify(&contents.script, &contents.signature, "script")?;
        match (&contents.payload_signature, policy) {
            (Some(signature), _) => {
                let message = payload_signature_message(
                    &contents.script,
                    &contents.params,
                    ticket,
                    client_key,
                );
                broker_key.verify(&message, signature, "payload")?;
            }
            (None, SignaturePolicy::Required) => return Err(Error::MissingSignature("payload")),
            (None, SignaturePolicy::IfPresent) => {}
        }
        Ok(VerifiedPayload(self.0))
    }
}

impl VerifiedPayload {
    /// The uncompressed script.
    pub fn script(&self) -> &[u8] {
        &self.0.script
    }

    /// The script as text; scripts must be UTF-8.
    pub fn script_text(&self) -> Result<&str, Error> {
        core::str::from_utf8(&self.0.script).map_err(|_| Error::Invalid {
            what: "script",
            reason: "not UTF-8",
        })
    }

    /// The `type` field as received (it is not covered by a signature).
    pub fn script_type(&self) -> &str {
        &self.0.script_type
    }

    /// Whether `type` is `"javascript"`, the only type a launcher runs.
    pub fn is_javascript(&self) -> bool {
        self.0.script_type == SCRIPT_TYPE_JAVASCRIPT
    }

    /// The script signature (verified).
    pub fn script_signature(&self) -> &[u8] {
        &self.0.signature
    }

    /// The uncompressed params bytes, exactly as signed.
    pub fn params(&self) -> &[u8] {
        &self.0.params
    }

    /// The params parsed as JSON.
    pub fn params_json(&self) -> &Value {
        &self.0.params_json
    }

    /// The log settings (not covered by a signature).
    pub fn log(&self) -> &LogSettings {
        &self.0.log
    }

    /// The payload signature (verified), if the broker sent one.
    pub fn payload_signature(&self) -> Option<&[u8]> {
        self.0.payload_signature.as_deref()
    }
}

/// The fields of a decoded payload, verified or not.
struct Contents {
    script: Vec<u8>,
    script_type: String,
    signature_algorithm: String,
    signature: Vec<u8>,
    params: Zeroizing<Vec<u8>>,
    params_json: Value,
    log: LogSettings,
    payload_signature: Option<Vec<u8>>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        scrub(&mut self.params_json);
    }
}

/// Zeroizes the strings of a JSON value (object keys cannot be reached mutably).
fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contents")
            .field("script", &format_args!("<{} bytes>", self.script.len()))
            .field("type", &self.script_type)
            .field("signature_algorithm", &self.signature_algorithm)
            .field(
                "signature",
                &format_args!("<{} bytes>", self.signature.len()),
            )
            .field(
                "params",
                &format_args!("<redacted {} bytes>", self.params.len()),
            )
            .field("log", &self.log)
            .field(
                "payload_signature",
                &self.payload_signature.as_ref().map(|_| "<present>"),
            )
            .finish()
    }
}

/// Maps a `serde_json` error to [`Error::Json`] without echoing input: syntax errors give
/// only their position, and structural errors their message only when it quotes no value
/// (messages such as ``missing field `log` `` are kept).
pub(crate) fn json_error(what: &'static str, error: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let message = error.to_string();
    let detail = match error.classify() {
        Category::Data if !message.contains('"') => message,
        Category::Data => format!(
            "wrong type or value at line {} column {}",
            error.line(),
            error.column()
        ),
        Category::Syntax => format!(
            "syntax error at line {} column {}",
            error.line(),
            error.column()
        ),
        Category::Eof => format!(
            "unexpected end at line {} column {}",
            error.line(),
            error.column()
        ),
        Category::Io => "I/O error".to_owned(),
    };
    Error::Json { what, detail }
}

#[cfg(test)]
mod tests;
