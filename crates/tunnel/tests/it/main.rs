//! The tunnel server end to end on loopback: a real broker, the tunnel server, the client
//! end of the protocol, TCP targets (docs/protocol.md §7–§8).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cluster;
mod control;
mod faults;
mod flow;
mod hold;
mod lifecycle;
mod relay;
mod security;
mod ssh;
