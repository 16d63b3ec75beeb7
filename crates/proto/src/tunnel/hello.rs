//! The client hello: the first bytes of every tunnel connection.

use crate::tunnel::codec::{Reader, put_u32, put_u64};
use crate::tunnel::{MAGIC, RANDOM_LEN, Random, VERSION};
use crate::{ConnectionId, Error, SessionId, TicketId};

/// Length of magic, version and command.
const PREFIX_LEN: usize = MAGIC.len() + 2;

/// What a client hello asks for. Sent as one byte after magic and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Health check: the server answers `OK` and closes.
    Test,
    /// Open a session with a tunnel ticket.
    Open,
    /// Add a connection to a live session.
    Attach,
    /// Re-attach a dropped connection of a live session.
    Resume,
    /// Hold a live session: a connection that dials nothing and carries control records
    /// only (docs/protocol.md §8.7.7).
    Hold,
}

impl Command {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Test => 0x01,
            Self::Open => 0x02,
            Self::Attach => 0x03,
            Self::Resume => 0x04,
            Self::Hold => 0x05,
        }
    }

    /// Maps a wire value; `None` for an unknown command.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x01 => Some(Self::Test),
            0x02 => Some(Self::Open),
            0x03 => Some(Self::Attach),
            0x04 => Some(Self::Resume),
            0x05 => Some(Self::Hold),
            _ => None,
        }
    }

    /// The total length of a hello with this command (6, 86, 54, 66 or 54 bytes).
    pub const fn hello_len(self) -> usize {
        PREFIX_LEN
            + match self {
                Self::Test => 0,
                Self::Open => TicketId::LEN + RANDOM_LEN,
                Self::Attach | Self::Hold => SessionId::LEN + RANDOM_LEN,
                Self::Resume => SessionId::LEN + 4 + 8 + RANDOM_LEN,
            }
    }
}

/// The first message of every tunnel connection, client → server.
///
/// `magic "PCTN" || version 0x01 || command u8 || body`, where the body has a fixed size
/// per command. See [`Command::hello_len`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// Health check.
    Test,
    /// Open a session: `ticket [48] || client_random [32]`.
    Open {
        /// The tunnel ticket the broker issued.
        ticket: TicketId,
        /// The client's fresh random.
        client_random: Random,
    },
    /// Add a connection: `session_id [16] || client_random [32]`.
    Attach {
        /// The session to join.
        session_id: SessionId,
        /// The client's fresh random.
        client_random: Random,
    },
    /// Re-attach a connection:
    /// `session_id [16] || connection_id u32 || received u64 || client_random [32]`.
    Resume {
        /// The session of the connection.
        session_id: SessionId,
        /// The connection to resume.
        connection_id: ConnectionId,
        /// Data bytes the client received from the server on this connection since it was
        /// opened (over all its resumes).
        received: u64,
        /// The client's fresh random.
        client_random: Random,
    },
    /// Hold a session: `session_id [16] || client_random [32]`, laid out like `Attach`.
    Hold {
        /// The session to hold.
        session_id: SessionId,
        /// The client's fresh random.
        client_random: Random,
    },
}

impl ClientHello {
    /// The longest hello (an `Open`).
    pub const MAX_LEN: usize = Command::Open.hello_len();

    /// The command of this hello.
    pub fn command(&self) -> Command {
        match self {
            Self::Test => Command::Test,
            Self::Open { .. } => Command::Open,
            Self::Attach { .. } => Command::Attach,
            Self::Resume { .. } => Command::Resume,
            Self::Hold { .. } => Command::Hold,
        }
    }

    /// The client random, for every command but `Test`.
    pub fn client_random(&self) -> Option<&Random> {
        match self {
            Self::Test => None,
            Self::Open { client_random, .. }
            | Self::Attach { client_random, .. }
            | Self::Resume { client_random, .. }
            | Self::Hold { client_random, .. } => Some(client_random),
        }
    }

    /// How many bytes of a hello a reader needs before it decodes again, given the bytes
    /// `seen` so far: the fixed prefix (magic, version, command), then the command's whole
    /// length; 0 for an unknown command (which [`Self::decode`] refuses).
    pub fn wanted_len(seen: &[u8]) -> usize {
        const PREFIX: usize = MAGIC.len() + 2;
        match seen.get(PREFIX - 1) {
            None => PREFIX,
            Some(&command) => Command::from_u8(command).map_or(0, Command::hello_len),
        }
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        self.command().hello_len()
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.command().to_u8());
        match self {
            Self::Test => {}
            Self::Open {
                ticket,
                client_random,
            } => {
                out.extend_from_slice(ticket.as_bytes());
                out.extend_from_slice(client_random);
            }
            Self::Attach {
                session_id,
                client_random,
            }
            | Self::Hold {
                session_id,
                client_random,
            } => {
                out.extend_from_slice(session_id.as_bytes());
                out.extend_from_slice(client_random);
            }
            Self::Resume {
                session_id,
                connection_id,
                received,
                client_random,
            } => {
                out.extend_from_slice(session_id.as_bytes());
                put_u32(out, connection_id.0);
                put_u64(out, *received);
                out.extend_from_slice(client_random);
            }
        }
    }

    /// Decodes a hello from the start of `buf`.
    ///
    /// Returns `Ok(None)` while `buf` is a prefix of a valid hello, the hello and the number
    /// of bytes it used once complete, and an error as soon as the bytes seen cannot start a
    /// valid hello. A version other than 1 gives
    /// [`Error::UnsupportedTunnelVersion`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, Error> {
        let seen = buf.len().min(MAGIC.len());
        if buf[..seen] != MAGIC[..seen] {
            return Err(Error::Invalid {
                what: "tunnel hello",
                reason: "wrong magic",
            });
        }
        let Some(&version) = buf.get(MAGIC.len()) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Error::UnsupportedTunnelVersion(version));
        }
        let Some(&command) = buf.get(MAGIC.len() + 1) else {
            return Ok(None);
        };
        let command = Command::from_u8(command).ok_or_else(|| Error::Unsupported {
            what: "tunnel command",
            value: format!("0x{command:02x}"),
        })?;
        let len = command.hello_len();
        if command == Command::Open {
            let ticket_end = buf.len().min(PREFIX_LEN + TicketId::LEN);
            let ticket_seen = buf.get(PREFIX_LEN..ticket_end).unwrap_or_default();
            if !ticket_seen.iter().all(u8::is_ascii_alphanumeric) {
                return Err(Error::Invalid {
                    what: "ticket id",
                    reason: "only A-Z, a-z and 0-9 are allowed",
                });
            }
        }
        let Some(message) = buf.get(..len) else {
            return Ok(None);
        };
        let mut reader = Reader::new(&message[PREFIX_LEN..], "tunnel hello");
        let hello = match command {
            Command::Test => Self::Test,
            Command::Open => Self::Open {
                ticket: TicketId::from_bytes(reader.take(TicketId::LEN)?)?,
                client_random: reader.array()?,
            },
            Command::Attach => Self::Attach {
                session_id: SessionId::from_bytes(reader.array()?),
                client_random: reader.array()?,
            },
            Command::Resume => Self::Resume {
                session_id: SessionId::from_bytes(reader.array()?),
                connection_id: ConnectionId(reader.u32()?),
                received: reader.u64()?,
                client_random: reader.array()?,
            },
            Command::Hold => Self::Hold {
                session_id: SessionId::from_bytes(reader.array()?),
                client_random: reader.array()?,
            },
        };
        reader.finish()?;
        Ok(Some((hello, len)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ticket() -> TicketId {
        TicketId::parse("c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD").unwrap()
    }

    fn samples() -> Vec<ClientHello> {
        vec![
            ClientHello::Test,
            ClientHello::Open {
                ticket: ticket(),
                client_random: [7; 32],
            },
            ClientHello::Attach {
                session_id: SessionId::from_bytes([1; 16]),
                client_random: [8; 32],
            },
            ClientHello::Resume {
                session_id: SessionId::from_bytes([2; 16]),
                connection_id: ConnectionId(0x0102_0304),
                received: 0x0506_0708_090a_0b0c,
                client_random: [9; 32],
            },
            ClientHello::Hold {
                session_id: SessionId::from_bytes([3; 16]),
                client_random: [10; 32],
            },
        ]
    }

    #[test]
    fn a_reader_wants_the_prefix_then_the_whole_hello() {
        for hello in samples() {
            let mut bytes = Vec::new();
            hello.encode(&mut bytes);
            for seen in 0..6 {
                assert_eq!(ClientHello::wanted_len(&bytes[..seen]), 6);
            }
            for seen in 6..=bytes.len() {
                assert_eq!(ClientHello::wanted_len(&bytes[..seen]), bytes.len());
            }
        }
        assert_eq!(ClientHello::wanted_len(b"PCTN\x01\xff"), 0);
    }

    #[test]
    fn lengths_are_fixed_per_command() {
        let lens: Vec<usize> = samples().iter().map(ClientHello::encoded_len).collect();
        assert_eq!(lens, [6, 86, 54, 66, 54]);
        for hello in samples() {
            let mut out = Vec::new();
            hello.encode(&mut out);
            assert_eq!(out.len(), hello.encoded_len());
            assert_eq!(ClientHello::decode(&out).unwrap(), Some((hello, out.len())));
        }
    }

    #[test]
    fn resume_layout() {
        let mut out = Vec::new();
        samples()[3].encode(&mut out);
        assert_eq!(&out[..6], b"PCTN\x01\x04");
        assert_eq!(&out[6..22], &[2; 16]);
        assert_eq!(&out[22..26], &[1, 2, 3, 4]);
        assert_eq!(&out[26..34], &[5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&out[34..], &[9; 32]);
    }

    #[test]
    fn errors_come_as_soon_as_the_bytes_cannot_start_a_hello() {
        assert_eq!(ClientHello::decode(b""), Ok(None));
        assert_eq!(ClientHello::decode(b"PC"), Ok(None));
        assert!(matches!(
            ClientHello::decode(b"PX"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            ClientHello::decode(b"GET / HTTP/1.1"),
            Err(Error::Invalid { .. })
        ));
        assert_eq!(
            ClientHello::decode(b"PCTN\x02"),
            Err(Error::UnsupportedTunnelVersion(2))
        );
        assert_eq!(
            ClientHello::decode(b"PCTN\x01\x09"),
            Err(Error::Unsupported {
                what: "tunnel command",
                value: "0x09".into()
            })
        );
        assert!(matches!(
            ClientHello::decode(b"PCTN\x01\x02abc-"),
            Err(Error::Invalid { .. })
        ));
        assert_eq!(ClientHello::decode(b"PCTN\x01\x02abc"), Ok(None));
    }

    #[test]
    fn trailing_bytes_are_left_to_the_caller() {
        let mut out = Vec::new();
        ClientHello::Test.encode(&mut out);
        out.extend_from_slice(b"more");
        assert_eq!(ClientHello::decode(&out), Ok(Some((ClientHello::Test, 6))));
    }
}
