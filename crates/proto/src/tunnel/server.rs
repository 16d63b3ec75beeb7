//! The tunnel server side of the handshake.
//!
//! ```text
//! start(hello) ─ Test ──▶ "OK" appended, Tested (close)
//!      └ Open/Attach/Resume: Challenge appended ──▶ AwaitProof ──proof──▶ ProofReceived
//!   ProofReceived::Open   ── broker redeems (ticket, randoms, proof) ──▶ complete(secret, …)
//!   ProofReceived::Attach ── caller looks up the session key ──────────▶ complete(key, …)
//!   ProofReceived::Resume ── caller looks up key and connection ───────▶ complete(key, …)
//!   ProofReceived::Hold   ── caller looks up the session key ──────────▶ verify, accept
//!   complete: proof checked, Accept appended ──▶ Opened (Open), Established (others)
//! ```
//!
//! Every step consumes the state, so an error ends the handshake; the caller then sends a
//! `Refuse` ([`refuse`], with [`crate::tunnel::ErrorCode::for_error`]) and closes.

use crate::tunnel::key_schedule::{Accepted, Transcript};
use crate::tunnel::{
    ClientHello, Command, ErrorCode, MAC_LEN, Random, RecordOpener, RecordSealer, ServerMessage,
    SessionKey,
};
use crate::{ConnectionId, Error, SessionId, SharedSecret, TicketId};

/// Appends a `Refuse` with `code` to `out`; the server then closes the connection.
pub fn refuse(code: ErrorCode, out: &mut Vec<u8>) {
    ServerMessage::Refuse(code).encode(out);
}

/// What follows a client hello.
#[derive(Debug)]
pub enum Start {
    /// A `Test` hello: `"OK"` was appended; close the connection once it is written.
    Tested,
    /// A `Challenge` was appended; read the client's 32-byte proof next.
    AwaitProof(AwaitProof),
}

/// Handles a decoded client hello with a fresh `server_random`.
pub fn start(hello: ClientHello, server_random: Random, out: &mut Vec<u8>) -> Start {
    let transcript = Transcript::new(&hello, &server_random);
    let request = match hello {
        ClientHello::Test => {
            ServerMessage::TestAnswer.encode(out);
            return Start::Tested;
        }
        ClientHello::Open {
            ticket,
            client_random,
        } => Request::Open {
            ticket,
            client_random,
        },
        ClientHello::Attach {
            session_id,
            client_random,
        } => Request::Attach {
            session_id,
            client_random,
        },
        ClientHello::Resume {
            session_id,
            connection_id,
            received,
            client_random,
        } => Request::Resume {
            session_id,
            connection_id,
            client_received: received,
            client_random,
        },
        ClientHello::Hold {
            session_id,
            client_random,
        } => Request::Hold {
            session_id,
            client_random,
        },
    };
    ServerMessage::Challenge { server_random }.encode(out);
    Start::AwaitProof(AwaitProof {
        request,
        server_random,
        transcript,
    })
}

/// What a hello other than `Test` asked for.
#[derive(Debug)]
enum Request {
    Open {
        ticket: TicketId,
        client_random: Random,
    },
    Attach {
        session_id: SessionId,
        client_random: Random,
    },
    Resume {
        session_id: SessionId,
        connection_id: ConnectionId,
        client_received: u64,
        client_random: Random,
    },
    Hold {
        session_id: SessionId,
        client_random: Random,
    },
}

/// Challenge sent; waiting for the client's proof (32 raw bytes).
#[derive(Debug)]
pub struct AwaitProof {
    request: Request,
    server_random: Random,
    transcript: Transcript,
}

impl AwaitProof {
    /// The command of the hello this handshake started with.
    pub fn command(&self) -> Command {
        match self.request {
            Request::Open { .. } => Command::Open,
            Request::Attach { .. } => Command::Attach,
            Request::Resume { .. } => Command::Resume,
            Request::Hold { .. } => Command::Hold,
        }
    }

    /// Takes the client's proof; it is checked when the handshake completes.
    pub fn receive_proof(self, proof: [u8; MAC_LEN]) -> ProofReceived {
        let pending = Pending {
            server_random: self.server_random,
            transcript: self.transcript,
            proof,
        };
        match self.request {
            Request::Open {
                ticket,
                client_random,
            } => ProofReceived::Open(OpenProof {
                ticket,
                client_random,
                pending,
            }),
            Request::Attach {
                session_id,
                client_random,
            } => ProofReceived::Attach(AttachProof {
                session_id,
                client_random,
                pending,
            }),
            Request::Resume {
                session_id,
                connection_id,
                client_received,
                client_random,
            } => ProofReceived::Resume(ResumeProof {
                session_id,
                connection_id,
                client_received,
                client_random,
                pending,
            }),
            Request::Hold {
                session_id,
                client_random,
            } => ProofReceived::Hold(HoldProof {
                session_id,
                client_random,
                pending,
            }),
        }
    }
}

/// The proof arrived; what completes the handshake depends on the command.
#[derive(Debug)]
pub enum ProofReceived {
    /// Redeem the ticket at the broker, then [`OpenProof::complete`].
    Open(OpenProof),
    /// Look up the session, then [`AttachProof::complete`].
    Attach(AttachProof),
    /// Look up the session and the connection, then [`ResumeProof::complete`].
    Resume(ResumeProof),
    /// Look up the session, then [`HoldProof::verify`] and [`VerifiedHold::accept`].
    Hold(HoldProof),
}

/// State shared by the three ways to complete.
#[derive(Debug)]
struct Pending {
    server_random: Random,
    transcript: Transcript,
    proof: [u8; MAC_LEN],
}

impl Pending {
    /// Checks the proof alone.
    fn verify(&self, key: &SessionKey) -> Result<(), Error> {
        key.handshake_keys()?
            .verify_proof(&self.transcript, &self.proof)
    }

    /// Checks the proof, then appends `Accept` and derives the connection's record keys.
    fn complete(
        self,
        key: &SessionKey,
        client_random: &Random,
        accepted: Accepted,
        out: &mut Vec<u8>,
    ) -> Result<(RecordSealer, RecordOpener), Error> {
        let handshake_keys = key.handshake_keys()?;
        handshake_keys.verify_proof(&self.transcript, &self.proof)?;
        let confirm = handshake_keys.confirm(&self.transcript, &self.proof, &accepted);
        let records = key
            .connection_keys(client_random, &self.server_random)?
            .server_side()?;
        ServerMessage::Accept {
            session_id: accepted.session_id,
            connection_id: accepted.connection_id,
            server_received: accepted.server_received,
            confirm,
        }
        .encode(out);
        Ok(records)
    }
}

/// An `Open` proof: what the broker's redemption needs.
#[derive(Debug)]
pub struct OpenProof {
    ticket: TicketId,
    client_random: Random,
    pending: Pending,
}

impl OpenProof {
    /// The tunnel ticket to redeem.
    pub fn ticket(&self) -> &TicketId {
        &self.ticket
    }

    /// The client random.
    pub fn client_random(&self) -> &Random {
        &self.client_random
    }

    /// The server random.
    pub fn server_random(&self) -> &Random {
        &self.pending.server_random
    }

    /// The client's proof.
    pub fn proof(&self) -> &[u8; MAC_LEN] {
        &self.pending.proof
    }

    /// Completes with the shared secret the broker returned: checks the proof locally
    /// (`Error::BadProof("proof")`), appends `Accept` to `out` and yields the connection
    /// with the new session's key.
    pub fn complete(
        self,
        secret: &SharedSecret,
        session_id: SessionId,
        connection_id: ConnectionId,
        out: &mut Vec<u8>,
    ) -> Result<Opened, Error> {
        let key = SessionKey::derive(secret, &self.ticket);
        let accepted = Accepted {
            session_id,
            connection_id,
            server_received: 0,
        };
        let (sealer, opener) = self
            .pending
            .complete(&key, &self.client_random, accepted, out)?;
        let connection = Established {
            session_id,
            connection_id,
            client_received: 0,
            sealer,
            opener,
        };
        Ok(Opened {
            connection,
            session_key: key,
        })
    }
}

/// An `Attach` proof.
#[derive(Debug)]
pub struct AttachProof {
    session_id: SessionId,
    client_random: Random,
    pending: Pending,
}

impl AttachProof {
    /// The session to join.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// Completes with the session's key and a new connection id: checks the proof
    /// (`Error::BadProof("proof")`), appends `Accept` to `out` and yields the connection.
    pub fn complete(
        self,
        key: &SessionKey,
        connection_id: ConnectionId,
        out: &mut Vec<u8>,
    ) -> Result<Established, Error> {
        let session_id = self.session_id;
        let accepted = Accepted {
            session_id,
            connection_id,
            server_received: 0,
        };
        let (sealer, opener) = self
            .pending
            .complete(key, &self.client_random, accepted, out)?;
        Ok(Established {
            session_id,
            connection_id,
            client_received: 0,
            sealer,
            opener,
        })
    }
}

impl AttachProof {
    /// Checks the proof with the session's key (`Error::BadProof("proof")`) before the
    /// server looks at the session's state: only a holder of the session key learns, for
    /// example, that the session is at its connection limit (docs/protocol.md §8.7.3).
    pub fn verify(self, key: &SessionKey) -> Result<VerifiedAttach, Error> {
        self.pending.verify(key)?;
        Ok(VerifiedAttach(self))
    }
}

/// An `Attach` whose proof verified; [`VerifiedAttach::accept`] assigns its connection id.
#[derive(Debug)]
pub struct VerifiedAttach(AttachProof);

impl VerifiedAttach {
    /// Appends `Accept` for the new `connection_id` to `out` and yields the connection.
    pub fn accept(
        self,
        key: &SessionKey,
        connection_id: ConnectionId,
        out: &mut Vec<u8>,
    ) -> Result<Established, Error> {
        self.0.complete(key, connection_id, out)
    }
}

/// A `Resume` proof.
#[derive(Debug)]
pub struct ResumeProof {
    session_id: SessionId,
    connection_id: ConnectionId,
    client_received: u64,
    client_random: Random,
    pending: Pending,
}

impl ResumeProof {
    /// The session of the connection.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// The connection to resume.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection_id
    }

    /// Data bytes the client says it received from the server on this connection.
    pub fn client_received(&self) -> u64 {
        self.client_received
    }

    /// Completes with the session's key and the Data bytes the server received from the
    /// client on this connection: checks the proof (`Error::BadProof("proof")`), appends
    /// `Accept` to `out` and yields the connection.
    pub fn complete(
        self,
        key: &SessionKey,
        server_received: u64,
        out: &mut Vec<u8>,
    ) -> Result<Established, Error> {
        let (session_id, connection_id) = (self.session_id, self.connection_id);
        let accepted = Accepted {
            session_id,
            connection_id,
            server_received,
        };
        let (sealer, opener) = self
            .pending
            .complete(key, &self.client_random, accepted, out)?;
        Ok(Established {
            session_id,
            connection_id,
            client_received: self.client_received,
            sealer,
            opener,
        })
    }
}

impl ResumeProof {
    /// Checks the proof with the session's key (`Error::BadProof("proof")`): `received`
    /// is authenticated only by it, so nothing may act on it before (docs/protocol.md
    /// §8.7.4).
    pub fn verify(self, key: &SessionKey) -> Result<VerifiedResume, Error> {
        self.pending.verify(key)?;
        Ok(VerifiedResume(self))
    }
}

/// A `Resume` whose proof verified: check [`VerifiedResume::client_received`] against the
/// connection's replay buffer, take the connection over from any older TCP connection,
/// then [`VerifiedResume::accept`] with the server's receive counter.
#[derive(Debug)]
pub struct VerifiedResume(ResumeProof);

impl VerifiedResume {
    /// The connection to resume.
    pub fn connection_id(&self) -> ConnectionId {
        self.0.connection_id
    }

    /// Data bytes the client received from the server on this connection (authenticated).
    pub fn client_received(&self) -> u64 {
        self.0.client_received
    }

    /// Appends `Accept` with `server_received` to `out` and yields the connection.
    pub fn accept(
        self,
        key: &SessionKey,
        server_received: u64,
        out: &mut Vec<u8>,
    ) -> Result<Established, Error> {
        self.0.complete(key, server_received, out)
    }
}

/// A `Hold` proof (docs/protocol.md §8.7.7).
#[derive(Debug)]
pub struct HoldProof {
    session_id: SessionId,
    client_random: Random,
    pending: Pending,
}

impl HoldProof {
    /// The session to hold.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// Checks the proof with the session's key (`Error::BadProof("proof")`) before the
    /// server replaces the session's hold: only the key's holder can displace it.
    pub fn verify(self, key: &SessionKey) -> Result<VerifiedHold, Error> {
        self.pending.verify(key)?;
        Ok(VerifiedHold(self))
    }
}

/// A `Hold` whose proof verified: replace the session's hold, then
/// [`VerifiedHold::accept`].
#[derive(Debug)]
pub struct VerifiedHold(HoldProof);

impl VerifiedHold {
    /// Appends `Accept` (connection id 0, nothing received) to `out` and yields the hold's
    /// record keys.
    pub fn accept(self, key: &SessionKey, out: &mut Vec<u8>) -> Result<Established, Error> {
        let HoldProof {
            session_id,
            client_random,
            pending,
        } = self.0;
        let accepted = Accepted {
            session_id,
            connection_id: ConnectionId::HOLD,
            server_received: 0,
        };
        let (sealer, opener) = pending.complete(key, &client_random, accepted, out)?;
        Ok(Established {
            session_id,
            connection_id: ConnectionId::HOLD,
            client_received: 0,
            sealer,
            opener,
        })
    }
}

/// A server connection after a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The session the connection belongs to.
    pub session_id: SessionId,
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// For `Resume`: Data bytes the client received; retransmit everything sent after that
    /// (see [`crate::tunnel::ReplayBuffer::retransmit_from`]). 0 otherwise.
    pub client_received: u64,
    /// Seals server → client records.
    pub sealer: RecordSealer,
    /// Opens client → server records.
    pub opener: RecordOpener,
}

/// The first connection of a new session, after a successful `Open`.
#[derive(Debug)]
pub struct Opened {
    /// The connection.
    pub connection: Established,
    /// The new session's key, to keep for its attaches, resumes and holds.
    pub session_key: SessionKey,
}
