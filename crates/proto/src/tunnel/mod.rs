//! Tunnel protocol v1.

mod error_code;

pub use error_code::ErrorCode;
