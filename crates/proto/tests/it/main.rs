//! `proto`'s integration tests, in one binary: the OpenUDS 5 and our own known-answer
//! vectors, and the tunnel protocol driven end to end in memory (handshakes, connections,
//! resume, properties).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_support;
mod vector_files;

mod openuds5_vectors;
mod payload_vectors;
mod tunnel_connection;
mod tunnel_pair;
mod tunnel_props;
mod tunnel_resume;
