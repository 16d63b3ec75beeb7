//! Every way a launch fails, as one sentence for the user (what happened, what to do) and
//! a distinct exit code (docs/launcher.md lists them).

use std::fmt;

/// Why a launch failed; the exit code follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command line or the link is wrong (exit 2).
    Usage,
    /// The broker's key is unknown and was not confirmed (exit 3).
    Untrusted,
    /// The broker presents another key than the one pinned for it, or than the
    /// fingerprint given with `--trust-fingerprint` (exit 9).
    KeyChanged,
    /// The broker cannot be reached, or its certificate is not trusted (exit 4).
    Unreachable,
    /// The broker refused: ticket expired or used, no access, service not ready (exit 5).
    Refused,
    /// The answer does not decrypt or is malformed: tampered with on the way (exit 6).
    Tampered,
    /// The script's signature is missing or wrong (exit 10).
    ScriptSignature,
    /// The payload's signature (over script, params, ticket and key) is missing or wrong
    /// (exit 11).
    PayloadSignature,
    /// The launch script failed (exit 7).
    Script,
    /// The tunnel could not be opened or was lost (exit 8).
    Tunnel,
    /// An administrator ended the connection at the broker (exit 12).
    EndedByAdministrator,
    /// Anything else (exit 1).
    Internal,
}

impl Kind {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::Usage => 2,
            Self::Untrusted => 3,
            Self::Unreachable => 4,
            Self::Refused => 5,
            Self::Tampered => 6,
            Self::Script => 7,
            Self::Tunnel => 8,
            Self::KeyChanged => 9,
            Self::ScriptSignature => 10,
            Self::PayloadSignature => 11,
            Self::EndedByAdministrator => 12,
        }
    }
}

/// A failed launch: its kind and the sentence shown to the user (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: Kind,
    /// One or two sentences for the user.
    pub message: String,
}

impl Failure {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A wrong command line or link.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    /// An untrusted broker key.
    pub fn untrusted(message: impl Into<String>) -> Self {
        Self::new(Kind::Untrusted, message)
    }

    /// The broker refused, with its own message.
    pub fn refused(message: impl Into<String>) -> Self {
        let message = message.into();
        let hint = if message.to_ascii_lowercase().contains("ticket") {
            " Start the connection again from the portal."
        } else {
            ""
        };
        Self::new(
            Kind::Refused,
            format!("The broker refused: {message}.{hint}"),
        )
    }

    /// A broker key other than the one trusted or expected.
    pub fn key_changed(message: impl Into<String>) -> Self {
        Self::new(Kind::KeyChanged, message)
    }

    /// A decryption or format failure of the answer.
    pub fn tampered(what: impl fmt::Display) -> Self {
        Self::verification(Kind::Tampered, what)
    }

    /// The payload failed verification with `error`: a signature failure gets its own kind.
    pub fn unverified(error: &portcullis_proto::Error) -> Self {
        let kind = match error {
            portcullis_proto::Error::BadSignature("script")
            | portcullis_proto::Error::Unsupported { .. } => Kind::ScriptSignature,
            portcullis_proto::Error::BadSignature(_)
            | portcullis_proto::Error::MissingSignature(_) => Kind::PayloadSignature,
            _ => Kind::Tampered,
        };
        Self::verification(kind, error)
    }

    fn verification(kind: Kind, what: impl fmt::Display) -> Self {
        Self::new(
            kind,
            format!(
                "The connection instructions failed verification ({what}). Nothing was run; \
                 tell your administrator."
            ),
        )
    }

    /// Whether the broker's answer failed a check of its signatures.
    pub fn is_signature_failure(&self) -> bool {
        matches!(self.kind, Kind::ScriptSignature | Kind::PayloadSignature)
    }

    /// The broker cannot be reached (from a transport error). The request's URL, which
    /// holds the ticket, is dropped from the error first: it is never shown or logged.
    pub fn unreachable(host: &str, error: reqwest::Error) -> Self {
        let error = error.without_url();
        let text = error_chain(&error);
        let message = if text.contains("certificate") || text.contains("UnknownIssuer") {
            format!(
                "The broker {host}'s certificate is not trusted ({text}). If your \
                 administrator uses a private CA, pass it with --ca-file."
            )
        } else if error.is_timeout() {
            format!("The broker {host} did not answer in time. Check your network and try again.")
        } else {
            format!("Cannot reach the broker {host} ({text}). Check your network and try again.")
        };
        Self::new(Kind::Unreachable, message)
    }

    /// The broker answered something unusable.
    pub fn unreachable_text(message: impl Into<String>) -> Self {
        Self::new(Kind::Unreachable, message)
    }

    /// The launch script failed.
    pub fn script(message: impl Into<String>) -> Self {
        Self::new(Kind::Script, message)
    }

    /// A tunnel failure.
    pub fn tunnel(message: impl Into<String>) -> Self {
        Self::new(Kind::Tunnel, message)
    }

    /// An administrator ended the connection (the tunnel server said so, docs/protocol.md
    /// §8.9 reason 4).
    pub fn ended_by_administrator() -> Self {
        Self::new(
            Kind::EndedByAdministrator,
            "The administrator ended this connection.",
        )
    }

    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = cause_source(source);
    }
    text
}

fn cause_source<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(std::error::Error::source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            Kind::Internal,
            Kind::Usage,
            Kind::Untrusted,
            Kind::KeyChanged,
            Kind::Unreachable,
            Kind::Refused,
            Kind::Tampered,
            Kind::ScriptSignature,
            Kind::PayloadSignature,
            Kind::Script,
            Kind::Tunnel,
            Kind::EndedByAdministrator,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|kind| kind.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
    }

    #[test]
    fn an_expired_ticket_says_to_start_again() {
        let failure = Failure::refused("The ticket is unknown or expired");
        assert_eq!(failure.kind, Kind::Refused);
        assert!(failure.message.contains("from the portal"), "{failure}");
    }
}
