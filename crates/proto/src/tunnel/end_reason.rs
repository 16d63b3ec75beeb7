//! Why a session ended: the reason a `SessionEnded` record carries on the hold
//! (docs/protocol.md §8.9).

use core::fmt;

/// Why the tunnel server ended a session. Sent as a `u16` in a `SessionEnded` record.
///
/// New reasons are added without a new protocol version: a receiver keeps an unknown value
/// as [`EndReason::Unknown`] and treats it as "the session ended".
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No application byte moved and no data connection was connected for the idle
    /// timeout.
    IdleTimeout,
    /// The session reached its maximum duration.
    MaxDuration,
    /// The tunnel server shut down.
    ShuttingDown,
    /// The broker asked the tunnel server to end the session (docs/protocol.md §7.8): an
    /// administrator ended the connection, disabled the user or took their access away.
    EndedByAdministrator,
    /// A reason this implementation does not know.
    Unknown(u16),
}

impl EndReason {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::IdleTimeout => 1,
            Self::MaxDuration => 2,
            Self::ShuttingDown => 3,
            Self::EndedByAdministrator => 4,
            Self::Unknown(code) => code,
        }
    }

    /// Maps a wire value; unknown values are kept, not refused.
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::IdleTimeout,
            2 => Self::MaxDuration,
            3 => Self::ShuttingDown,
            4 => Self::EndedByAdministrator,
            other => Self::Unknown(other),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdleTimeout => f.write_str("it was idle too long"),
            Self::MaxDuration => f.write_str("it reached its maximum duration"),
            Self::ShuttingDown => f.write_str("the tunnel server shut down"),
            Self::EndedByAdministrator => f.write_str("an administrator ended it"),
            Self::Unknown(code) => write!(f, "reason {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_unknown_ones_are_kept() {
        for code in 0..=10 {
            assert_eq!(EndReason::from_u16(code).to_u16(), code);
        }
        assert_eq!(EndReason::from_u16(2), EndReason::MaxDuration);
        assert_eq!(EndReason::from_u16(4), EndReason::EndedByAdministrator);
        assert_eq!(EndReason::from_u16(5), EndReason::Unknown(5));
    }
}
