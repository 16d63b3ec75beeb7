//! The launcher payload as it appears in JSON.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The only script type this implementation runs.
pub const SCRIPT_TYPE_JAVASCRIPT: &str = "javascript";
/// The only script signature algorithm this implementation verifies.
pub const SIGNATURE_ALGORITHM_MLDSA65: &str = "MLDSA65";
/// The log level the broker sends unless told otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The `log` object of the payload: how verbosely the launcher logs, and the ticket with
/// which it may upload its log to the broker (`null` when log upload is off).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSettings {
    /// `"debug"`, `"info"`, `"warning"` or `"error"`; unknown levels are kept as data.
    pub level: String,
    /// The log-upload ticket, or `None` (JSON `null`, always written out).
    pub ticket: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            ticket: None,
        }
    }
}

impl fmt::Debug for LogSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The log ticket is a bearer credential for the upload endpoint.
        let ticket = self.ticket.as_ref().map(|_| "<redacted>");
        f.debug_struct("LogSettings")
            .field("level", &self.level)
            .field("ticket", &ticket)
            .finish()
    }
}

/// The launcher payload exactly as carried in JSON: the plaintext of the client-API
/// [`Envelope`](crate::openuds::Envelope).
///
/// Binary fields are standard, padded base64; `script` and `params` are bzip2 streams.
/// Unknown fields are ignored, so later brokers can add fields.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePayload {
    /// `b64(bzip2(script))`.
    pub script: String,
    /// The script language; `"javascript"`.
    #[serde(rename = "type")]
    pub script_type: String,
    /// The script signature algorithm; `"MLDSA65"`.
    pub signature_algorithm: String,
    /// `b64(ML-DSA-65 signature over the uncompressed script)`.
    pub signature: String,
    /// `b64(bzip2(params JSON))`.
    pub params: String,
    /// Log settings.
    pub log: LogSettings,
    /// Portcullis extension: `b64(ML-DSA-65 signature over the canonical payload message)`.
    /// Absent from payloads for OpenUDS 5 launchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_signature: Option<String>,
}

impl fmt::Debug for WirePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WirePayload")
            .field(
                "script",
                &format_args!("<{} base64 chars>", self.script.len()),
            )
            .field("type", &self.script_type)
            .field("signature_algorithm", &self.signature_algorithm)
            .field(
                "signature",
                &format_args!("<{} base64 chars>", self.signature.len()),
            )
            .field("params", &format_args!("<redacted>"))
            .field("log", &self.log)
            .field(
                "payload_signature",
                &self.payload_signature.as_ref().map(|_| "<present>"),
            )
            .finish()
    }
}

/// The same document with borrowed fields, so the broker does not copy the (large) script
/// for every exchange. Serializes identically to [`WirePayload`].
#[derive(Serialize)]
pub(crate) struct WirePayloadRef<'a> {
    pub(crate) script: &'a str,
    #[serde(rename = "type")]
    pub(crate) script_type: &'a str,
    pub(crate) signature_algorithm: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) params: &'a str,
    pub(crate) log: &'a LogSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) payload_signature: Option<&'a str>,
}
