//! An echo target on 127.0.0.1: what a tunnel or a launcher test connects through to, and
//! that counts the connections it accepted and says when each closed (how a test sees that
//! an end reached the target, or did not).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A read of exactly these bytes makes [`EchoTarget`] echo them and then half-close its
/// side, so the target ends first.
pub const CLOSE_TARGET: &[u8] = b"portcullis test: the target closes now";

/// An echo server on 127.0.0.1, alive until the test's runtime ends. It half-closes its
/// side when the peer half-closes, or right after echoing [`CLOSE_TARGET`].
pub struct EchoTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<Instant>,
}

impl EchoTarget {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, closed) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (counter, ends) = (Arc::clone(&accepted), Arc::clone(&ended));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (tell, ends) = (tell.clone(), Arc::clone(&ends));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut writing = true;
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if writing {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            if buf[..n] == *CLOSE_TARGET {
                                let _ = stream.shutdown().await;
                                writing = false;
                            }
                        }
                    }
                    ends.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.shutdown().await;
                    let _ = tell.send(Instant::now());
                });
            }
        });
        Self {
            addr,
            accepted,
            ended,
            closed,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose peer's side ended (end of stream or error) so far.
    pub fn closed(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
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
