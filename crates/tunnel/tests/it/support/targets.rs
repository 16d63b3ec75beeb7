//! TCP targets on 127.0.0.1: an echo server, and a port nothing listens on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A read of exactly these bytes makes [`Echo`] echo them and then half-close its side, so
/// the target ends first.
pub const CLOSE_TARGET: &[u8] = b"portcullis test: the target closes now";

/// Echoes every byte back; half-closes its side when the peer half-closes, or right after
/// echoing [`CLOSE_TARGET`].
pub struct Echo {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Connections whose tunnel side ended (end of stream or error) so far.
    pub closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let ends = Arc::clone(&closed);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let ends = Arc::clone(&ends);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut writing = true;
                    loop {
                        let n = match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if writing {
                            if write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            if buf[..n] == *CLOSE_TARGET {
                                let _ = write.shutdown().await;
                                writing = false;
                            }
                        }
                    }
                    ends.fetch_add(1, Ordering::SeqCst);
                    let _ = write.shutdown().await;
                });
            }
        });
        Self {
            addr,
            accepted,
            closed,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose tunnel side ended so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address where nothing listens (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap()
}
