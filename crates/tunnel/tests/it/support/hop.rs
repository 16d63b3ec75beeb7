//! A network hop with latency, in user space (netem is not available on these machines):
//! a TCP relay that delivers every chunk `delay` after it read it, each way, and lets at
//! most `window` bytes be in flight per direction until their acknowledgement is back
//! (`delay` after delivery), as a TCP path with that round trip and Linux's usual window
//! would. The benchmark runs it on a runtime of its own ([`Hop::start`]), so it never
//! waits behind the bench's work; tests on theirs ([`Hop::spawn`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

/// The most one read takes from the sender.
const CHUNK: usize = 64 * 1024;

/// A running hop; it stops when dropped.
pub struct Hop {
    pub addr: SocketAddr,
    _runtime: Option<tokio::runtime::Runtime>,
    accept: tokio::task::AbortHandle,
}

impl Hop {
    /// Outside a runtime: listens on a fresh loopback port and relays each connection to
    /// `upstream`, on a runtime of its own.
    pub fn start(upstream: SocketAddr, delay: Duration, window: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = runtime
            .spawn(serve(listener, upstream, delay, window))
            .abort_handle();
        Self {
            addr,
            _runtime: Some(runtime),
            accept,
        }
    }

    /// In a runtime: the same hop, on that runtime.
    pub async fn spawn(upstream: SocketAddr, delay: Duration, window: usize) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(serve(listener, upstream, delay, window)).abort_handle();
        Self {
            addr,
            _runtime: None,
            accept,
        }
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr, delay: Duration, window: usize) {
    while let Ok((down, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (down_read, down_write) = down.into_split();
            let (up_read, up_write) = up.into_split();
            tokio::join!(
                carry(down_read, up_write, delay, window),
                carry(up_read, down_write, delay, window),
            );
        });
    }
}

/// One direction: read, hold for `delay`, write; a chunk's bytes count against `window`
/// until `delay` after it was written (the acknowledgement's way back).
async fn carry(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, window: usize) {
    let window = Arc::new(Semaphore::new(window));
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>, OwnedSemaphorePermit)>();
    let (acks, mut acked) = mpsc::unbounded_channel::<(Instant, OwnedSemaphorePermit)>();
    let read = async move {
        loop {
            let Ok(mut permit) = Arc::clone(&window).acquire_many_owned(CHUNK as u32).await else {
                return;
            };
            let mut chunk = vec![0u8; CHUNK];
            let n = match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            chunk.truncate(n);
            // Only the bytes read stay in flight.
            drop(permit.split(CHUNK - n));
            if chunks
                .send((Instant::now() + delay, chunk, permit))
                .is_err()
            {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk, permit)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let _ = acks.send((Instant::now() + delay, permit));
        }
        let _ = to.shutdown().await;
    };
    let release = async move {
        while let Some((at, permit)) = acked.recv().await {
            tokio::time::sleep_until(at).await;
            drop(permit);
        }
    };
    tokio::join!(read, write, release);
}
