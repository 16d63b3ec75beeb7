//! The `portcullis` binary as operators and users meet it, in one test binary: the admin
//! commands and `portcullis dev` (`commands`), two brokers on one PostgreSQL
//! (`two_brokers`), the whole product in a real headless Chromium (`browser`) and its
//! administrator's side there (`admin_browser`),
//! OpenID Connect sign-in against a real provider (`oidc`), two tunnel servers behind a
//! real HAProxy (`balancer`), and live connections ended by an administrator
//! (`operators`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_browser;
mod balancer;
mod browser;
mod commands;
mod credentials;
mod oidc;
mod operators;
mod support;
mod two_brokers;
