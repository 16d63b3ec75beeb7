//! Fixtures for Portcullis's integration tests and benchmarks: the real programs the tests
//! run against (an OpenSSH server with keys generated per test, a PostgreSQL server per test
//! process, an rsyslog per test), found or reported missing with the Debian package that
//! provides them; and the generic network pieces on loopback (an echo target, a sink and a
//! source, a relay that cuts its connections, a hop with latency, bounded waits).
//!
//! Nothing here depends on a Portcullis crate: a fixture that needs the broker or the tunnel
//! server stays in that crate's tests.
//!
//! A fixture that cannot be set up fails the test with a message that says how to fix it:
//! nothing here skips.

// Test support: a fixture that fails is a failed test, with the message of the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod cutter;
mod echo;
mod hop;
mod net;
pub mod postgres;
mod program;
mod rsyslog;
mod sshd;
pub mod targets;
mod wait;

pub use bench::{BenchMode, Percentiles};
pub use cutter::{Cutter, echo_through_cuts};
pub use echo::{CLOSE_TARGET, EchoTarget};
pub use hop::Hop;
pub use net::{closed_port, free_port, unused_loopback_addr};
pub use program::program;
pub use rsyslog::Rsyslog;
pub use sshd::Sshd;
pub use wait::{bounded, eventually};
