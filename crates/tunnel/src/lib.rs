//! The Portcullis tunnel server: accepts tunnel protocol v1 connections from launchers,
//! redeems tunnel tickets at the broker and relays AES-256-GCM records to targets.
//!
//! Every byte on the wire comes from [`portcullis_proto::tunnel`]; this crate only moves
//! bytes (docs/protocol.md §7–§8, docs/tunnel.md):
//!
//! - [`config`]: the configuration file, `tunnel.toml`;
//! - [`broker`]: the broker's `start` and `stop` calls over one pooled HTTPS client;
//! - [`control`]: the control channel to the broker (byte reports, ends it asks for);
//! - [`limits`]: what one source address, and everyone together, can make the server hold;
//! - [`session`]: live sessions, their connections and their end (`stop` with byte counts);
//! - [`handshake`]: Test, Open, Attach and Resume on one accepted connection;
//! - `portcullis_link::relay` (a crate of its own, which the launcher uses too): one tunnel
//!   link's records between the tunnel and the target;
//! - [`driver`]: the server's side of one connection id across links (resume);
//! - [`hold`]: the server's side of a session's hold (keeps it alive, tells its end);
//! - [`forward`]: a cluster member forwarding a connection to the session's member;
//! - [`tls`], [`metrics`], [`ops`]: TLS, Prometheus metrics, `/health` and `/metrics`;
//! - [`shared`]: what every connection of one server shares;
//! - [`server`]: listeners, the connection cap, two-phase shutdown.

#![forbid(unsafe_code)]

pub mod broker;
pub mod config;
pub mod control;
pub mod driver;
pub mod forward;
pub mod handshake;
pub mod hold;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod session;
pub mod shared;
pub mod tls;

pub use portcullis_proto as proto;
