//! The sans-io core of Portcullis.
//!
//! Every byte the broker, the tunnel server and the launcher exchange is encoded, parsed,
//! derived, sealed and opened here, as pure and deterministic code: no sockets, no files,
//! no async runtime, no clocks (time is an argument). The servers and the launcher only
//! move bytes between sockets and these functions.
//!
//! - [`TicketId`], [`Scrambler`], [`SessionId`], [`ConnectionId`]: identifiers.
//! - [`kem`]: ML-KEM-768 key pairs, encapsulation and decapsulation.
//! - [`openuds`]: the OpenUDS 5 ticket key schedule and the encrypted [`openuds::Envelope`].
//! - [`payload`]: the launcher payload (signed script and parameters) and its signatures.
//! - [`credential`]: credentials sealed at rest; [`ssh`]: OpenSSH Ed25519 public key lines.
//! - [`api`]: the JSON bodies of the client and tunnel-server HTTP APIs.
//! - [`tunnel`]: tunnel protocol v1 (handshake, key schedule, records, resume).
//! - [`proxy_v2`]: the PROXY protocol v2 header a load balancer sends first.
//! - [`SourceKey`]: the principal a client address counts as in per-address budgets.
//!
//! `docs/protocol.md` in the repository is the normative specification of all of it.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod b64;
pub mod credential;
mod error;
mod error_code;
pub mod hex;
mod ids;
mod kdf;
pub mod kem;
mod network;
pub mod openuds;
pub mod payload;
pub mod proxy_v2;
pub mod random;
mod secret;
mod source;
pub mod ssh;
pub mod tunnel;

pub use error::{Error, ErrorKind};
pub use ids::{ConnectionId, NodeId, Scrambler, SessionId, TicketId};
pub use network::IpNetwork;
pub use secret::{SharedSecret, constant_time_eq};
pub use source::SourceKey;
