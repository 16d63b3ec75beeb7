//! The client (launcher) side of the tunnel handshake.
//!
//! ```text
//! open / attach / resume / hold ──hello──▶ AwaitChallenge ──Challenge, proof──▶ AwaitAccept
//!        │                                │ Refuse: Error::Refused          │ Accept
//!        │                                ▼                                 ▼
//!        │                              error            open: Opened; others: Established
//! test ──hello──▶ AwaitTestAnswer ──"OK"──▶ done
//! ```
//!
//! Each step consumes the state, so an error ends the handshake. The states carry the type
//! the command ends in: an `Open` yields [`Opened`] (the connection and the new session's
//! [`SessionCredentials`]), `Attach`, `Resume` and `Hold` yield an [`Established`]
//! connection of a session whose credentials the caller already has. The caller decodes
//! server bytes with [`ServerMessage::decode`] and writes what the steps append to `out`.

use core::marker::PhantomData;

use crate::tunnel::key_schedule::{Accepted, Transcript};
use crate::tunnel::{
    ClientHello, MAC_LEN, Random, RecordOpener, RecordSealer, ServerMessage, SessionCredentials,
    SessionKey,
};
use crate::{ConnectionId, Error, SessionId, SharedSecret, TicketId};

/// Starts a session: appends an `Open` hello for `ticket` to `out`.
pub fn open(
    ticket: &TicketId,
    secret: &SharedSecret,
    client_random: Random,
    out: &mut Vec<u8>,
) -> AwaitChallenge<Opened> {
    let hello = ClientHello::Open {
        ticket: ticket.clone(),
        client_random,
    };
    AwaitChallenge::start(hello, SessionKey::derive(secret, ticket), out)
}

/// Adds a connection to a live session: appends an `Attach` hello to `out`.
pub fn attach(
    credentials: &SessionCredentials,
    client_random: Random,
    out: &mut Vec<u8>,
) -> AwaitChallenge<Established> {
    let hello = ClientHello::Attach {
        session_id: credentials.session_id(),
        client_random,
    };
    AwaitChallenge::start(hello, credentials.key().duplicate(), out)
}

/// Re-attaches a dropped connection: appends a `Resume` hello to `out`, stating the Data
/// bytes received from the server on this connection since it was first opened.
pub fn resume(
    credentials: &SessionCredentials,
    connection_id: ConnectionId,
    received: u64,
    client_random: Random,
    out: &mut Vec<u8>,
) -> AwaitChallenge<Established> {
    let hello = ClientHello::Resume {
        session_id: credentials.session_id(),
        connection_id,
        received,
        client_random,
    };
    AwaitChallenge::start(hello, credentials.key().duplicate(), out)
}

/// Holds a live session (docs/protocol.md §8.7.7): appends a `Hold` hello to `out`. The
/// established connection has connection id 0 and carries control records only
/// ([`crate::tunnel::HoldLink`]).
pub fn hold(
    credentials: &SessionCredentials,
    client_random: Random,
    out: &mut Vec<u8>,
) -> AwaitChallenge<Established> {
    let hello = ClientHello::Hold {
        session_id: credentials.session_id(),
        client_random,
    };
    AwaitChallenge::start(hello, credentials.key().duplicate(), out)
}

/// Health check: appends a `Test` hello to `out`.
pub fn test(out: &mut Vec<u8>) -> AwaitTestAnswer {
    ClientHello::Test.encode(out);
    AwaitTestAnswer(())
}

/// Waiting for the server's `"OK"`.
#[derive(Debug)]
pub struct AwaitTestAnswer(());

impl AwaitTestAnswer {
    /// Handles the server's answer: `Ok(())` for `"OK"`.
    pub fn handle(self, message: ServerMessage) -> Result<(), Error> {
        match message {
            ServerMessage::TestAnswer => Ok(()),
            ServerMessage::Refuse(code) => Err(Error::Refused(code)),
            _ => Err(Error::Unexpected(
                "tunnel handshake message instead of the test answer",
            )),
        }
    }
}

/// What a handshake ends in: [`Opened`] for `Open`, [`Established`] for the others.
pub trait Outcome: sealed::Outcome {}

impl Outcome for Opened {}
impl Outcome for Established {}

mod sealed {
    use crate::tunnel::SessionKey;

    /// Builds the outcome from the accepted connection and the session key it proved.
    pub trait Outcome {
        fn finish(connection: super::Established, key: SessionKey) -> Self;
    }

    impl Outcome for super::Opened {
        fn finish(connection: super::Established, key: SessionKey) -> Self {
            let credentials = crate::tunnel::SessionCredentials::new(connection.session_id, key);
            Self {
                connection,
                credentials,
            }
        }
    }

    impl Outcome for super::Established {
        /// The caller holds the session's credentials already; this copy of the key goes.
        fn finish(connection: super::Established, _key: SessionKey) -> Self {
            connection
        }
    }
}

/// Hello sent; waiting for the server's `Challenge`. `T` is what the handshake ends in.
#[derive(Debug)]
pub struct AwaitChallenge<T> {
    hello: ClientHello,
    key: SessionKey,
    outcome: PhantomData<fn() -> T>,
}

impl<T: Outcome> AwaitChallenge<T> {
    fn start(hello: ClientHello, key: SessionKey, out: &mut Vec<u8>) -> Self {
        hello.encode(out);
        Self {
            hello,
            key,
            outcome: PhantomData,
        }
    }

    /// Handles the server's first message: a `Challenge` appends the proof to `out`; a
    /// `Refuse` is `Error::Refused(code)`.
    pub fn handle(
        self,
        message: ServerMessage,
        out: &mut Vec<u8>,
    ) -> Result<AwaitAccept<T>, Error> {
        let server_random = match message {
            ServerMessage::Challenge { server_random } => server_random,
            ServerMessage::Refuse(code) => return Err(Error::Refused(code)),
            _ => {
                return Err(Error::Unexpected(
                    "tunnel handshake message instead of a challenge",
                ));
            }
        };
        let transcript = Transcript::new(&self.hello, &server_random);
        let proof = self.key.handshake_keys()?.proof(&transcript);
        out.extend_from_slice(&proof);
        Ok(AwaitAccept {
            hello: self.hello,
            key: self.key,
            server_random,
            transcript,
            proof,
            outcome: PhantomData,
        })
    }
}

/// Proof sent; waiting for the server's `Accept`. `T` is what the handshake ends in.
#[derive(Debug)]
pub struct AwaitAccept<T> {
    hello: ClientHello,
    key: SessionKey,
    server_random: Random,
    transcript: Transcript,
    proof: [u8; MAC_LEN],
    outcome: PhantomData<fn() -> T>,
}

impl<T: Outcome> AwaitAccept<T> {
    /// Handles the server's answer to the proof: checks the confirmation of an `Accept` in
    /// constant time (`Error::BadProof("confirm")`) and derives the connection's keys.
    pub fn handle(self, message: ServerMessage) -> Result<T, Error> {
        let (accepted, confirm) = match message {
            ServerMessage::Accept {
                session_id,
                connection_id,
                server_received,
                confirm,
            } => (
                Accepted {
                    session_id,
                    connection_id,
                    server_received,
                },
                confirm,
            ),
            ServerMessage::Refuse(code) => return Err(Error::Refused(code)),
            _ => {
                return Err(Error::Unexpected(
                    "tunnel handshake message instead of accept",
                ));
            }
        };
        let handshake_keys = self.key.handshake_keys()?;
        handshake_keys.verify_confirm(&self.transcript, &self.proof, &accepted, &confirm)?;
        let client_random = match &self.hello {
            ClientHello::Open { client_random, .. } => {
                expect_nothing_received(&accepted)?;
                client_random
            }
            ClientHello::Attach {
                session_id,
                client_random,
            } => {
                expect_session(*session_id, &accepted)?;
                expect_nothing_received(&accepted)?;
                client_random
            }
            ClientHello::Resume {
                session_id,
                connection_id,
                client_random,
                ..
            } => {
                expect_session(*session_id, &accepted)?;
                if *connection_id != accepted.connection_id {
                    return Err(Error::Unexpected("connection id in accept"));
                }
                client_random
            }
            ClientHello::Hold {
                session_id,
                client_random,
            } => {
                expect_session(*session_id, &accepted)?;
                expect_nothing_received(&accepted)?;
                if accepted.connection_id != ConnectionId::HOLD {
                    return Err(Error::Unexpected("connection id in the accept of a hold"));
                }
                client_random
            }
            ClientHello::Test => return Err(Error::Misuse("a test hello has no accept")),
        };
        let (sealer, opener) = self
            .key
            .connection_keys(client_random, &self.server_random)?
            .client_side()?;
        let connection = Established {
            session_id: accepted.session_id,
            connection_id: accepted.connection_id,
            server_received: accepted.server_received,
            sealer,
            opener,
        };
        Ok(T::finish(connection, self.key))
    }
}

fn expect_session(session_id: SessionId, accepted: &Accepted) -> Result<(), Error> {
    if session_id == accepted.session_id {
        Ok(())
    } else {
        Err(Error::Unexpected("session id in accept"))
    }
}

fn expect_nothing_received(accepted: &Accepted) -> Result<(), Error> {
    if accepted.server_received == 0 {
        Ok(())
    } else {
        Err(Error::Unexpected(
            "server_received in accept of a new connection",
        ))
    }
}

/// A client connection after a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The session the connection belongs to.
    pub session_id: SessionId,
    /// The connection's id; resume it with this id.
    pub connection_id: ConnectionId,
    /// Data bytes the server received from the client on this connection: retransmit
    /// everything sent after that (see [`crate::tunnel::ReplayBuffer::retransmit_from`]).
    pub server_received: u64,
    /// Seals client → server records.
    pub sealer: RecordSealer,
    /// Opens server → client records.
    pub opener: RecordOpener,
}

/// The first connection of a new session, after a successful `Open`.
#[derive(Debug)]
pub struct Opened {
    /// The connection.
    pub connection: Established,
    /// What to keep to attach, resume and hold connections of the new session.
    pub credentials: SessionCredentials,
}
