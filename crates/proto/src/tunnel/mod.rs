//! Tunnel protocol v1: handshake, key schedule, records and resume.
//!
//! A launcher reaches a target through a tunnel server over one TCP connection per local
//! connection. Every connection starts with a fixed-size [`ClientHello`]:
//!
//! - `Test` is a health check; the server answers `OK` and closes.
//! - `Open` carries a tunnel ticket and creates a session; the tunnel server redeems the
//!   ticket at the broker, which checks the client's proof before consuming the ticket.
//! - `Attach` adds a connection to a live session; `Resume` re-attaches a dropped connection
//!   and both sides state how many bytes they received, so nothing is lost or duplicated.
//! - `Hold` keeps a session alive between data connections and tells the launcher when it
//!   ended ([`HoldLink`]); it dials nothing.
//!
//! The server answers a [`ServerMessage::Challenge`] with its random, the client proves
//! possession of the session key with an HMAC over the transcript, and the server answers
//! [`ServerMessage::Accept`] with a confirmation MAC (or [`ServerMessage::Refuse`]).
//!
//! ```text
//! client                                   server
//!   ClientHello (magic, version, command) -->
//!                                    <-- Challenge (server random)
//!   proof = HMAC(k_proof, transcript)  -->
//!                                    <-- Accept (session, connection, received, confirm)
//!   records (AES-256-GCM) <==========================> records
//! ```
//!
//! The [`SessionKey`] is `HKDF-Extract(salt = ticket id, IKM = shared secret)`; every
//! connection derives fresh AES-256-GCM keys and base IVs from it and both randoms, so no
//! (key, nonce) pair ever repeats. Records are sealed and opened in place in the caller's
//! buffers by a [`RecordSealer`] and a [`RecordOpener`]; a [`ReplayBuffer`] keeps sent but
//! unacknowledged bytes for resume, at most a send window that grows with the measured
//! bandwidth-delay product within a [`WindowBudget`]. After the handshake a [`Connection`] drives one
//! connection id's data stream (acknowledgements, ping, close, resume) on both sides.
//!
//! Handshake states ([`client`], [`server`]) consume `self` at every step, so an error ends
//! the handshake for good; an `Open` ends in [`client::Opened`] / [`server::Opened`] (with
//! the session's credentials or key), the other commands in `Established`. Nothing here
//! performs I/O or reads a clock: timeouts such as [`HANDSHAKE_TIMEOUT`] are applied by the
//! caller. A [`Connection`] keeps no timers (it takes `now` only to time its window
//! samples; pings and idle timeouts are the caller's); the one timer, the hold's keep-alive,
//! is driven through [`HoldLink::poll_timeout`] and [`HoldLink::handle_timeout`]. `docs/protocol.md` (section 8) is the
//! byte-exact specification.

use core::time::Duration;

pub mod client;
mod codec;
mod connection;
mod end_reason;
mod hello;
mod hold;
mod key_schedule;
mod params;
mod record;
mod replay;
pub mod server;
mod server_message;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod vectors;
mod window;

pub use crate::error_code::ErrorCode;
pub use connection::{Connection, ConnectionConfig, Event};
pub use end_reason::EndReason;
pub use hello::{ClientHello, Command};
pub use hold::{HOLD_PING_INTERVAL, HOLD_TIMEOUT, HoldEvent, HoldLink};
pub use key_schedule::{
    SessionCredentials, SessionKey, TUNNEL_SECRET_LABEL, compute_open_proof, derive_tunnel_secret,
    verify_open_proof,
};
pub use params::{TunnelParams, TunnelProtocol, UnknownTunnelProtocol};
pub use record::{
    Control, DEFAULT_PLAINTEXT, DEFAULT_RECORD_LIMIT, HEADER_LEN, MAX_ERROR_MESSAGE, MAX_PLAINTEXT,
    MAX_RECORD_LEN, OVERHEAD, PAYLOAD_OFFSET, Record, RecordOpener, RecordSealer, TAG_LEN,
};
pub use replay::{DEFAULT_REPLAY_CAPACITY, ReplayBuffer};
pub use server_message::ServerMessage;
pub use window::{BudgetReservation, DEFAULT_WINDOW_BUDGET, MAX_WINDOW, WindowBudget};

/// The four bytes every client hello starts with: `"PCTN"`.
pub const MAGIC: [u8; 4] = *b"PCTN";
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;
/// Length of the client and server randoms.
pub const RANDOM_LEN: usize = 32;
/// Length of the client's proof and of the server's confirmation.
pub const MAC_LEN: usize = 32;
/// The bytes a server answers to a `Test` hello before it closes.
pub const TEST_ANSWER: [u8; 2] = *b"OK";

/// How long a server waits for a complete handshake (hello to proof).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a tunnel server waits for the broker to redeem a ticket.
pub const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits from its hello for `Accept` before it gives up: clearly more
/// than the server's [`HANDSHAKE_TIMEOUT`] plus [`BROKER_CALL_TIMEOUT`], so a server that
/// redeemed the ticket late still reaches a waiting client.
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a tunnel server waits for the target's TCP connection.
pub const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a tunnel server keeps a session that has no hold and no connection left (none
/// connected, none held for resume) before it ends it.
pub const EMPTY_SESSION_LINGER: Duration = Duration::from_secs(10);
/// How long a cluster member waits for the TCP connection to the member that holds a
/// session before it answers `Busy` (docs/protocol.md §8.16).
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections a session admits at once unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// A client or server random: 32 bytes from the CSPRNG, fresh for every connection.
pub type Random = [u8; RANDOM_LEN];

/// Draws a fresh random for a handshake (a convenience over [`crate::random::array`]).
pub fn fresh_random() -> Result<Random, crate::Error> {
    crate::random::array()
}
