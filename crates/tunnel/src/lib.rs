//! The Portcullis tunnel server: accepts tunnel protocol v1 connections, redeems tickets at
//! the broker and relays records to targets.
//!
//! This crate is the tunnel server's home in the workspace; its server is not built yet.
//! The protocol it will speak lives in [`portcullis_proto::tunnel`].

#![forbid(unsafe_code)]

pub use portcullis_proto as proto;
