//! The tunnel link both ends run, and nothing of either end's server side: the launcher
//! links this crate and not the tunnel server's (no HTTP server, no metrics, no broker
//! client, no configuration file).
//!
//! Every byte on the wire comes from [`portcullis_proto::tunnel`]; this crate only moves
//! bytes (docs/protocol.md §8):
//!
//! - [`stream`]: the byte stream a link runs over (TCP or TLS over TCP);
//! - [`relay`]: one tunnel link's records between the tunnel and a local socket, used by
//!   the tunnel server towards its target and by the launcher towards a local program;
//! - [`client`]: the launcher's end: a local listener whose connections open, attach and
//!   resume tunnel connections, and the hold that keeps the session alive.

#![forbid(unsafe_code)]

pub mod client;
pub mod relay;
pub mod stream;

pub use stream::{AsyncStream, TunnelStream};
