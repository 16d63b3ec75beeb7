//! Handshake messages from the tunnel server to the client.

use crate::tunnel::codec::{Reader, put_u16, put_u32, put_u64};
use crate::tunnel::{ErrorCode, MAC_LEN, RANDOM_LEN, Random, TEST_ANSWER};
use crate::{ConnectionId, Error, SessionId};

const KIND_CHALLENGE: u8 = 0x01;
const KIND_ACCEPT: u8 = 0x02;
const KIND_REFUSE: u8 = 0x03;
/// `'O'`: the test answer `"OK"` is its own kind byte and tag.
const KIND_TEST_ANSWER: u8 = TEST_ANSWER[0];

/// A handshake message from the server, each starting with a kind byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The answer to a `Test` hello: the two bytes `"OK"`; the server then closes.
    TestAnswer,
    /// `0x01 || server_random [32]`.
    Challenge {
        /// The server's fresh random.
        server_random: Random,
    },
    /// `0x02 || session_id [16] || connection_id u32 || server_received u64 || confirm [32]`.
    Accept {
        /// The session the connection belongs to.
        session_id: SessionId,
        /// The connection's id within the session.
        connection_id: ConnectionId,
        /// Data bytes the server received from the client on this connection since it was
        /// opened; 0 for `Open` and `Attach`.
        server_received: u64,
        /// The server's confirmation MAC.
        confirm: [u8; MAC_LEN],
    },
    /// `0x03 || code u16`; the server then closes.
    Refuse(ErrorCode),
}

impl ServerMessage {
    /// Length of an encoded `Challenge`.
    pub const CHALLENGE_LEN: usize = 1 + RANDOM_LEN;
    /// Length of an encoded `Accept`.
    pub const ACCEPT_LEN: usize = 1 + SessionId::LEN + 4 + 8 + MAC_LEN;
    /// Length of an encoded `Refuse`.
    pub const REFUSE_LEN: usize = 3;

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::TestAnswer => TEST_ANSWER.len(),
            Self::Challenge { .. } => Self::CHALLENGE_LEN,
            Self::Accept { .. } => Self::ACCEPT_LEN,
            Self::Refuse(_) => Self::REFUSE_LEN,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::TestAnswer => out.extend_from_slice(&TEST_ANSWER),
            Self::Challenge { server_random } => {
                out.push(KIND_CHALLENGE);
                out.extend_from_slice(server_random);
            }
            Self::Accept {
                session_id,
                connection_id,
                server_received,
                confirm,
            } => {
                out.push(KIND_ACCEPT);
                out.extend_from_slice(session_id.as_bytes());
                put_u32(out, connection_id.0);
                put_u64(out, *server_received);
                out.extend_from_slice(confirm);
            }
            Self::Refuse(code) => {
                out.push(KIND_REFUSE);
                put_u16(out, code.to_u16());
            }
        }
    }

    /// The whole length of the message whose first byte is `kind`: how much a reader reads
    /// so that it never reads past a message into the records that may follow an `Accept`.
    /// `None` for a byte that starts no server message.
    pub fn len_for_kind(kind: u8) -> Option<usize> {
        match kind {
            KIND_TEST_ANSWER => Some(TEST_ANSWER.len()),
            KIND_CHALLENGE => Some(Self::CHALLENGE_LEN),
            KIND_ACCEPT => Some(Self::ACCEPT_LEN),
            KIND_REFUSE => Some(Self::REFUSE_LEN),
            _ => None,
        }
    }

    /// Decodes a message from the start of `buf`: `Ok(None)` while `buf` is a prefix of a
    /// valid message, an error as soon as it cannot be one.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let len = Self::len_for_kind(kind).ok_or_else(|| Error::Unsupported {
            what: "tunnel server message",
            value: format!("0x{kind:02x}"),
        })?;
        if kind == KIND_TEST_ANSWER && buf.get(1).is_some_and(|&b| b != TEST_ANSWER[1]) {
            return Err(Error::Invalid {
                what: "tunnel test answer",
                reason: "not \"OK\"",
            });
        }
        let Some(message) = buf.get(..len) else {
            return Ok(None);
        };
        let mut reader = Reader::new(&message[1..], "tunnel server message");
        let decoded = match kind {
            KIND_CHALLENGE => Self::Challenge {
                server_random: reader.array()?,
            },
            KIND_ACCEPT => Self::Accept {
                session_id: SessionId::from_bytes(reader.array()?),
                connection_id: ConnectionId(reader.u32()?),
                server_received: reader.u64()?,
                confirm: reader.array()?,
            },
            KIND_REFUSE => Self::Refuse(ErrorCode::from_u16(reader.u16()?)),
            _ => {
                reader.u8()?;
                Self::TestAnswer
            }
        };
        reader.finish()?;
        Ok(Some((decoded, len)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let mut out = Vec::new();
        ServerMessage::TestAnswer.encode(&mut out);
        assert_eq!(out, b"OK");
        out.clear();
        ServerMessage::Refuse(ErrorCode::AccessDenied).encode(&mut out);
        assert_eq!(out, [3, 0, 3]);
        out.clear();
        let accept = ServerMessage::Accept {
            session_id: SessionId::from_bytes([0xaa; 16]),
            connection_id: ConnectionId(5),
            server_received: 6,
            confirm: [0xcc; 32],
        };
        accept.encode(&mut out);
        assert_eq!(out.len(), 61);
        assert_eq!(out[0], 2);
        assert_eq!(&out[17..21], &[0, 0, 0, 5]);
        assert_eq!(&out[21..29], &[0, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(ServerMessage::decode(&out), Ok(Some((accept, 61))));
    }

    #[test]
    fn the_first_byte_names_the_whole_length() {
        let messages = [
            ServerMessage::TestAnswer,
            ServerMessage::Challenge {
                server_random: [1; 32],
            },
            ServerMessage::Accept {
                session_id: SessionId::from_bytes([2; 16]),
                connection_id: ConnectionId(3),
                server_received: 4,
                confirm: [5; 32],
            },
            ServerMessage::Refuse(ErrorCode::Busy),
        ];
        for message in messages {
            let mut out = Vec::new();
            message.encode(&mut out);
            assert_eq!(
                ServerMessage::len_for_kind(out[0]),
                Some(out.len()),
                "{message:?}"
            );
        }
        assert_eq!(ServerMessage::len_for_kind(0x7f), None);
    }

    #[test]
    fn incremental_and_invalid() {
        assert_eq!(ServerMessage::decode(b""), Ok(None));
        assert_eq!(ServerMessage::decode(b"O"), Ok(None));
        assert_eq!(
            ServerMessage::decode(b"OK"),
            Ok(Some((ServerMessage::TestAnswer, 2)))
        );
        assert!(matches!(
            ServerMessage::decode(b"Ox"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            ServerMessage::decode(&[0x09]),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(ServerMessage::decode(&[1; 32]), Ok(None));
        assert_eq!(
            ServerMessage::decode(&[3, 0xff, 0xff]),
            Ok(Some((ServerMessage::Refuse(ErrorCode::Unknown(0xffff)), 3)))
        );
    }
}
