//! Fixtures for Portcullis's integration tests: the real programs the tests run against (an
//! OpenSSH server with keys generated per test, a PostgreSQL server per test process, an
//! rsyslog per test, an echo target),
//! found or reported missing with the Debian package that provides them.
//!
//! A fixture that cannot be set up fails the test with a message that says how to fix it:
//! nothing here skips.

// Test support: a fixture that fails is a failed test, with the message of the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod echo;
mod net;
pub mod postgres;
mod program;
mod rsyslog;
mod sshd;

pub use echo::{EchoTarget, bounded};
pub use net::unused_loopback_addr;
pub use program::program;
pub use rsyslog::Rsyslog;
pub use sshd::Sshd;
