//! The error codes of the tunnel protocol, carried by `Refuse` handshake messages and
//! `Error` control records (re-exported as `tunnel::ErrorCode`). A module of its own at
//! the crate's ground floor, so that [`crate::Error`] can name a refusal's code without the
//! error type depending on the tunnel module. Which code an [`crate::Error`] maps to is
//! decided beside the error type (`ErrorCode::for_error`).

use core::fmt;

/// Why a tunnel server refused a handshake or ended a connection. Sent as a `u16`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The client speaks a protocol version this server does not.
    UnsupportedVersion,
    /// The message was not a valid handshake or record.
    Malformed,
    /// The ticket is unknown, used or expired, or the proof is wrong. Deliberately one code.
    AccessDenied,
    /// The broker could not be reached or did not answer in time; retrying may work.
    BrokerUnavailable,
    /// The target refused the connection or could not be reached in time.
    TargetUnreachable,
    /// The session already has its maximum number of connections.
    TooManyConnections,
    /// The session is unknown, ended, or expired.
    SessionUnknown,
    /// The connection is unknown or has ended, or the bytes needed to resume it are no
    /// longer buffered.
    ResumeImpossible,
    /// The tunnel server is shutting down.
    ShuttingDown,
    /// The session reached its idle timeout or maximum duration.
    SessionExpired,
    /// The record counter of a direction is exhausted.
    CounterExhausted,
    /// Anything else; details are in the server log.
    Internal,
    /// The tunnel server is at one of its handshake limits (handshakes waiting on the
    /// broker, in total or from this address, or handshakes per second from this address);
    /// retrying after a short wait may work.
    Busy,
    /// The session was ended at the broker's request: an administrator ended the
    /// connection, disabled the user or took their access away (docs/protocol.md §7.8).
    EndedByAdministrator,
    /// A code this implementation does not know.
    Unknown(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::UnsupportedVersion => 1,
            Self::Malformed => 2,
            Self::AccessDenied => 3,
            Self::BrokerUnavailable => 4,
            Self::TargetUnreachable => 5,
            Self::TooManyConnections => 6,
            Self::SessionUnknown => 7,
            Self::ResumeImpossible => 8,
            Self::ShuttingDown => 9,
            Self::SessionExpired => 10,
            Self::CounterExhausted => 11,
            Self::Internal => 12,
            Self::Busy => 13,
            Self::EndedByAdministrator => 14,
            Self::Unknown(code) => code,
        }
    }

    /// Maps a wire value; unknown values are kept, not refused.
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::UnsupportedVersion,
            2 => Self::Malformed,
            3 => Self::AccessDenied,
            4 => Self::BrokerUnavailable,
            5 => Self::TargetUnreachable,
            6 => Self::TooManyConnections,
            7 => Self::SessionUnknown,
            8 => Self::ResumeImpossible,
            9 => Self::ShuttingDown,
            10 => Self::SessionExpired,
            11 => Self::CounterExhausted,
            12 => Self::Internal,
            13 => Self::Busy,
            14 => Self::EndedByAdministrator,
            other => Self::Unknown(other),
        }
    }

    /// Whether the client may try the same operation again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::BrokerUnavailable | Self::ShuttingDown | Self::Busy
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::Malformed => "malformed message",
            Self::AccessDenied => "access denied",
            Self::BrokerUnavailable => "broker unavailable",
            Self::TargetUnreachable => "target unreachable",
            Self::TooManyConnections => "too many connections in this session",
            Self::SessionUnknown => "unknown or ended session",
            Self::ResumeImpossible => {
                "cannot resume: the connection has ended, or its data is no longer buffered"
            }
            Self::ShuttingDown => "tunnel server shutting down",
            Self::SessionExpired => "session expired",
            Self::CounterExhausted => "record counter exhausted",
            Self::Internal => "internal error",
            Self::Busy => "tunnel server busy",
            Self::EndedByAdministrator => "an administrator ended the session",
            Self::Unknown(code) => return write!(f, "error code {code}"),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip() {
        for value in 0..=20u16 {
            assert_eq!(ErrorCode::from_u16(value).to_u16(), value);
        }
        assert_eq!(ErrorCode::from_u16(3), ErrorCode::AccessDenied);
        assert_eq!(ErrorCode::from_u16(13), ErrorCode::Busy);
        assert!(ErrorCode::Busy.is_retryable());
        assert_eq!(ErrorCode::from_u16(14), ErrorCode::EndedByAdministrator);
        assert!(!ErrorCode::EndedByAdministrator.is_retryable());
        assert!(!ErrorCode::Unknown(15).is_retryable());
        assert_eq!(ErrorCode::Unknown(999).to_string(), "error code 999");
    }
}
