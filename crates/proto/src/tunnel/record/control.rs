//! Control records: everything inside a record that is not application data.

use super::content_type;
use crate::Error;
use crate::tunnel::codec::{Reader, put_u16, put_u64};
use crate::tunnel::{EndReason, ErrorCode};

/// The longest message of an `Error` control record, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// A typed control record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `0x01`: total Data bytes received on this connection so far (`u64`). The peer may drop
    /// them from its replay buffer.
    Ack {
        /// Data bytes received on this connection since it was opened.
        received: u64,
    },
    /// `0x02`: a keep-alive or latency probe with an opaque `u64`; answered by a `Pong`.
    Ping(u64),
    /// `0x03`: the answer to a `Ping`, echoing its value.
    Pong(u64),
    /// `0x04`: this connection ends normally and will not be resumed. No body.
    Close,
    /// `0x05`: the launcher ends the whole session. No body.
    EndSession,
    /// `0x06`: `code u16 || message length u16 || UTF-8 message (≤ 1024 bytes)`.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// A human-readable explanation (never secret).
        message: String,
    },
    /// `0x07`: `reason u16`; the server ended the session (on the hold only).
    SessionEnded(EndReason),
}

impl Control {
    /// An `Error` record, its message cut to [`MAX_ERROR_MESSAGE`] bytes at a character
    /// boundary.
    pub fn error(code: ErrorCode, message: &str) -> Self {
        let mut end = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self::Error {
            code,
            message: message[..end].to_owned(),
        }
    }

    /// The content type byte.
    pub(crate) fn content_type(&self) -> u8 {
        match self {
            Self::Ack { .. } => content_type::ACK,
            Self::Ping(_) => content_type::PING,
            Self::Pong(_) => content_type::PONG,
            Self::Close => content_type::CLOSE,
            Self::EndSession => content_type::END_SESSION,
            Self::Error { .. } => content_type::ERROR,
            Self::SessionEnded(_) => content_type::SESSION_ENDED,
        }
    }

    /// Appends the body (without content type).
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Self::Ack { received: value } | Self::Ping(value) | Self::Pong(value) => {
                put_u64(out, *value);
            }
            Self::Close | Self::EndSession => {}
            Self::SessionEnded(reason) => put_u16(out, reason.to_u16()),
            Self::Error { code, message } => {
                let len = u16::try_from(message.len())
                    .ok()
                    .filter(|&len| usize::from(len) <= MAX_ERROR_MESSAGE)
                    .ok_or(Error::TooLarge {
                        what: "tunnel error message",
                        got: message.len(),
                        max: MAX_ERROR_MESSAGE,
                    })?;
                put_u16(out, code.to_u16());
                put_u16(out, len);
                out.extend_from_slice(message.as_bytes());
            }
        }
        Ok(())
    }

    /// Decodes the body of a control record of type `content_type`.
    pub(crate) fn decode(content_type: u8, body: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(body, "tunnel control record");
        let control = match content_type {
            content_type::ACK => Self::Ack {
                received: reader.u64()?,
            },
            content_type::PING => Self::Ping(reader.u64()?),
            content_type::PONG => Self::Pong(reader.u64()?),
            content_type::CLOSE => Self::Close,
            content_type::END_SESSION => Self::EndSession,
            content_type::SESSION_ENDED => Self::SessionEnded(EndReason::from_u16(reader.u16()?)),
            content_type::ERROR => {
                let code = ErrorCode::from_u16(reader.u16()?);
                let len = usize::from(reader.u16()?);
                if len > MAX_ERROR_MESSAGE {
                    return Err(Error::TooLarge {
                        what: "tunnel error message",
                        got: len,
                        max: MAX_ERROR_MESSAGE,
                    });
                }
                let message =
                    core::str::from_utf8(reader.take(len)?).map_err(|_| Error::Invalid {
                        what: "tunnel error message",
                        reason: "not UTF-8",
                    })?;
                Self::Error {
                    code,
                    message: message.to_owned(),
                }
            }
            other => {
                return Err(Error::Unsupported {
                    what: "tunnel record content type",
                    value: format!("0x{other:02x}"),
                });
            }
        };
        reader.finish()?;
        Ok(control)
    }
}
