//! The `portcullis` binary as operators and users meet it, in one test binary: the admin
//! commands and `portcullis dev` (`commands`), two brokers on one PostgreSQL
//! (`two_brokers`), the whole product in a real headless Chromium (`browser`), and
//! OpenID Connect sign-in against a real provider (`oidc`), and two tunnel servers behind a
//! real HAProxy (`balancer`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod balancer;
mod browser;
mod commands;
mod credentials;
mod oidc;
mod support;
mod two_brokers;
