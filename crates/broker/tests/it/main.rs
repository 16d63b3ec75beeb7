//! The broker's integration tests, in one binary: storage on SQLite and a real PostgreSQL
//! (`store_*`), the HTTP APIs and the portal over real HTTPS on loopback (`http_*`), and
//! the signed launcher scripts in a mock runtime (`launcher_scripts`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod audit_export;
mod http_abuse;
mod http_admin;
mod http_client_refusals;
mod http_concurrency;
mod http_control;
mod http_credentials;
mod http_exchange;
mod http_log_scan;
mod http_ops;
mod http_portal;
mod http_tunnel_api;
mod http_user_api;
mod launcher_scripts;
mod store_connections;
mod store_model;
mod store_tickets;
