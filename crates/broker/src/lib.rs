//! The Portcullis broker: users, services, one-use tickets, the OpenUDS-5-compatible client
//! and tunnel-server APIs, the portal and the admin API.
//!
//! This crate is the broker's home in the workspace; its server is not built yet. The wire
//! formats it will speak live in [`portcullis_proto`].

#![forbid(unsafe_code)]

pub use portcullis_proto as proto;
