//! The byte stream a tunnel link runs over: plain TCP, or TLS over TCP, on either end.

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream between a launcher and a tunnel server: plain TCP or TLS over TCP.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug> AsyncStream for T {}

/// A tunnel connection after the PROXY header and TLS.
pub type TunnelStream = Box<dyn AsyncStream>;
