//! The Portcullis broker: users, services, one-use tickets, the OpenUDS-5-compatible client
//! and tunnel-server APIs, the user API and the web portal. Operators administer it with
//! the `portcullis admin` command, which works on the database directly.
//!
//! The wire formats live in [`portcullis_proto`]; this crate stores, decides and serves:
//! [`store`] (SQLite or PostgreSQL), [`exchange`] and [`redeem`] (the ticket logic),
//! [`http`] (the routes), [`server`] (TLS, listening, shutdown). `docs/broker.md` is the
//! operator's guide.

#![forbid(unsafe_code)]

pub use portcullis_proto as proto;

pub mod accounts;
pub mod admin;
pub mod audit_export;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod exchange;
pub mod files;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod oidc;
pub mod password;
pub mod proof_limit;
pub mod rate_limit;
pub mod readiness;
pub mod redeem;
pub mod refusal_log;
pub mod scripts;
pub mod server;
pub mod state;
pub mod store;
pub mod tickets;
pub mod tls;
pub mod tunnel_control;
