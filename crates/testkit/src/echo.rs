//! An echo target on 127.0.0.1: what a tunnel or a launcher test connects through to, and
//! that says when each of its connections closed (how a test sees that an end reached the
//! target).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An echo server on 127.0.0.1, alive until the test's runtime ends.
pub struct EchoTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    closed: mpsc::UnboundedReceiver<Instant>,
}

impl EchoTarget {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tell = tell.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                    let _ = tell.send(Instant::now());
                });
            }
        });
        Self { addr, closed }
    }

    /// When a connection next closed at or after `since`, waiting at most `limit`; earlier
    /// closes (a broker's readiness checks) are passed over.
    pub async fn closed_after(&mut self, since: Instant, limit: Duration) -> Instant {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let closed = tokio::time::timeout_at(deadline, self.closed.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("the echo target's connection did not close within {limit:?}")
                })
                .unwrap();
            if closed >= since {
                return closed;
            }
        }
    }
}

/// Awaits `future`, failing the test with `what` when it takes longer than `limit`: every
/// wait of a network test stops by itself.
pub async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}
