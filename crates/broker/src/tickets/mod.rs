//! One-use tickets: client tickets, tunnel tickets and notify tickets.
//!
//! [`crypto`] fixes how a ticket id is kept out of the database: rows are keyed by a hash
//! of the id, and a tunnel ticket's shared secret is sealed under a key derived from the id.

pub mod crypto;
