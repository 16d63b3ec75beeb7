//! The one error type of the protocol crate.

use crate::error_code::ErrorCode;

/// Everything that can go wrong in `portcullis-proto`.
///
/// Variants fall into the kinds reported by [`Error::kind`]: malformed input, a peer that
/// misbehaves (bad authentication, wrong state), API misuse by the caller, and failures of
/// the crypto backend. "Need more bytes" is never an error: incremental parsers return
/// `Ok(None)` for it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A text field (ticket id, scrambler, hex, …) does not have the required form.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A binary field has the wrong length.
    #[error("{what} must be {expected} bytes, got {got}")]
    WrongLength {
        /// What was being parsed.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A field is not valid standard, padded base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// A JSON document does not have the expected structure.
    #[error("invalid JSON in {what}: {detail}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's message (never contains secret material: it names a position).
        detail: String,
    },
    /// A bzip2 stream is corrupt.
    #[error("{0} is not valid bzip2 data")]
    Decompress(&'static str),
    /// A bzip2 stream expands beyond the allowed size.
    #[error("{what} decompresses to more than {limit} bytes")]
    DecompressedTooLarge {
        /// Which field.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// An algorithm, type or version this implementation does not speak.
    #[error("unsupported {what}: {value}")]
    Unsupported {
        /// What kind of value.
        what: &'static str,
        /// The value received (never secret).
        value: String,
    },
    /// A tunnel hello of another protocol version than this implementation's. A variant of
    /// its own because tunnel servers answer it with a code of its own
    /// ([`ErrorCode::UnsupportedVersion`]).
    #[error("unsupported tunnel protocol version: {0}")]
    UnsupportedTunnelVersion(u8),
    /// AEAD decryption failed: wrong key, wrong ticket salt, or tampered data.
    #[error("decryption failed (wrong key or ticket, or tampered data)")]
    DecryptFailed,
    /// A signature does not verify under the given key.
    #[error("the {0} signature does not verify")]
    BadSignature(&'static str),
    /// A signature that is required here is absent (a stripped signature is a downgrade).
    #[error("the {0} signature is missing")]
    MissingSignature(&'static str),
    /// A handshake proof or confirmation MAC does not verify.
    #[error("the tunnel handshake {0} does not verify")]
    BadProof(&'static str),
    /// A tunnel message or record of a kind that is not allowed here.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// A length prefix announces more than the protocol allows.
    #[error("{what} of {got} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was announced.
        what: &'static str,
        /// The announced size.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The record counter of one direction reached its limit; the connection must close.
    #[error("record counter limit reached: the connection must be closed and resumed")]
    CounterExhausted,
    /// The peer refused the handshake with this error code.
    #[error("the tunnel server refused the connection: {0}")]
    Refused(ErrorCode),
    /// The peer asked for bytes this side no longer keeps (or never sent).
    #[error("cannot resume: {0}")]
    Resume(&'static str),
    /// The caller passed a buffer or argument that cannot work.
    #[error("API misuse: {0}")]
    Misuse(&'static str),
    /// The crypto backend failed (key generation, RNG): not caused by input.
    #[error("crypto backend failure in {0}")]
    Crypto(&'static str),
    /// The peer sent nothing for longer than the protocol allows (a hold's keep-alive).
    #[error("the peer was silent too long: {0}")]
    Silent(&'static str),
}

impl ErrorCode {
    /// The code a tunnel server sends (in `Refuse` or an `Error` record) for a protocol
    /// error: the one place errors map to wire codes.
    ///
    /// The code follows from the variant alone, never from its text, and the match lists
    /// every variant so that a new one needs a decision here.
    pub fn for_error(error: &Error) -> Self {
        match error {
            Error::UnsupportedTunnelVersion(_) => Self::UnsupportedVersion,
            Error::BadProof(_) => Self::AccessDenied,
            Error::Resume(_) => Self::ResumeImpossible,
            Error::CounterExhausted => Self::CounterExhausted,
            Error::Refused(code) => *code,
            Error::Invalid { .. }
            | Error::WrongLength { .. }
            | Error::Unsupported { .. }
            | Error::TooLarge { .. }
            | Error::DecryptFailed
            | Error::Unexpected(_) => Self::Malformed,
            // Not errors of a tunnel message: they come from the broker's answer (JSON,
            // base64, payload signatures) or from this side, which the client cannot fix.
            Error::Base64(_)
            | Error::Json { .. }
            | Error::Decompress(_)
            | Error::DecompressedTooLarge { .. }
            | Error::BadSignature(_)
            | Error::MissingSignature(_)
            | Error::Misuse(_)
            | Error::Crypto(_)
            // A silent peer is closed, never told: no code goes on the wire.
            | Error::Silent(_) => Self::Internal,
        }
    }
}

/// Coarse classification of an [`Error`], for logging and mapping to wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Input that does not parse.
    Malformed,
    /// Input that parses but fails authentication or breaks the protocol's rules.
    Peer,
    /// A limit of this implementation was reached.
    Limit,
    /// The caller used the API wrongly.
    Misuse,
    /// The crypto backend failed.
    Internal,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. }
            | Self::WrongLength { .. }
            | Self::Base64(_)
            | Self::Json { .. }
            | Self::Decompress(_)
            | Self::Unsupported { .. }
            | Self::UnsupportedTunnelVersion(_) => ErrorKind::Malformed,
            Self::DecryptFailed
            | Self::BadSignature(_)
            | Self::MissingSignature(_)
            | Self::BadProof(_)
            | Self::Unexpected(_)
            | Self::Refused(_)
            | Self::Resume(_)
            | Self::Silent(_) => ErrorKind::Peer,
            Self::DecompressedTooLarge { .. } | Self::TooLarge { .. } | Self::CounterExhausted => {
                ErrorKind::Limit
            }
            Self::Misuse(_) => ErrorKind::Misuse,
            Self::Crypto(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes() {
        let version = Error::UnsupportedTunnelVersion(7);
        assert_eq!(
            ErrorCode::for_error(&version),
            ErrorCode::UnsupportedVersion
        );
        // The variant decides, not the text: another error that happens to name the
        // tunnel protocol version is not an unsupported version.
        let lookalike = Error::Unsupported {
            what: "tunnel protocol version",
            value: "7".into(),
        };
        assert_eq!(lookalike.to_string(), version.to_string());
        assert_eq!(ErrorCode::for_error(&lookalike), ErrorCode::Malformed);
        assert_eq!(
            ErrorCode::for_error(&Error::BadProof("proof")),
            ErrorCode::AccessDenied
        );
        assert_eq!(
            ErrorCode::for_error(&Error::Resume("x")),
            ErrorCode::ResumeImpossible
        );
        assert_eq!(
            ErrorCode::for_error(&Error::Crypto("x")),
            ErrorCode::Internal
        );
    }
}
