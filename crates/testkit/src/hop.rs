//! A network hop with latency, in user space (netem is not available on these machines):
//! a TCP relay that delivers every chunk `delay` after it read it, each way, and lets at
//! most `window` bytes be in flight per direction until their acknowledgement is back
//! (`delay` after delivery), as a TCP path with that round trip and Linux's usual window
//! would. The benchmark runs it on a runtime of its own ([`Hop::start`]), so it never
//! waits behind the bench's work; tests on theirs ([`Hop::spawn`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

/// The most one read takes from the sender.
const CHUNK: usize = 64 * 1024;

/// A running hop; it stops when dropped.
pub struct Hop {
    /// Where it listens.
    pub addr: SocketAddr,
    _runtime: Option<tokio::runtime::Runtime>,
    accept: tokio::task::AbortHandle,
    upstream: Upstream,
}

/// The switch that holds back what goes upstream, and the bytes it holds.
#[derive(Clone)]
struct Upstream {
    held: watch::Receiver<bool>,
    hold: Arc<watch::Sender<bool>>,
    queued: Arc<AtomicU64>,
}

impl Upstream {
    fn new() -> Self {
        let (hold, held) = watch::channel(false);
        Self {
            held,
            hold: Arc::new(hold),
            queued: Arc::new(AtomicU64::new(0)),
        }
    }
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
        let switch = Upstream::new();
        let accept = runtime
            .spawn(serve(listener, upstream, delay, window, switch.clone()))
            .abort_handle();
        Self {
            addr,
            _runtime: Some(runtime),
            accept,
            upstream: switch,
        }
    }

    /// In a runtime: the same hop, on that runtime.
    pub async fn spawn(upstream: SocketAddr, delay: Duration, window: usize) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let switch = Upstream::new();
        let accept =
            tokio::spawn(serve(listener, upstream, delay, window, switch.clone())).abort_handle();
        Self {
            addr,
            _runtime: None,
            accept,
            upstream: switch,
        }
    }

    /// Holds back (`true`) or releases what goes upstream: with a tunnel server upstream,
    /// the launcher's records stop reaching it while its Acks still come back.
    pub fn hold_upstream(&self, hold: bool) {
        self.upstream.hold.send_replace(hold);
    }

    /// Bytes read from the connecting side and not yet written upstream.
    pub fn queued_upstream(&self) -> u64 {
        self.upstream.queued.load(Ordering::SeqCst)
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    delay: Duration,
    window: usize,
    switch: Upstream,
) {
    while let Ok((down, _)) = listener.accept().await {
        let switch = switch.clone();
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (down_read, down_write) = down.into_split();
            let (up_read, up_write) = up.into_split();
            tokio::join!(
                carry(down_read, up_write, delay, window, Some(switch)),
                carry(up_read, down_write, delay, window, None),
            );
        });
    }
}

/// One direction: read, hold for `delay`, write; a chunk's bytes count against `window`
/// until `delay` after it was written (the acknowledgement's way back).
async fn carry(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    window: usize,
    switch: Option<Upstream>,
) {
    let queued = switch.as_ref().map(|switch| Arc::clone(&switch.queued));
    let read_queued = queued.clone();
    let mut held = switch.map(|switch| switch.held);
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
            if let Some(queued) = &read_queued {
                queued.fetch_add(n as u64, Ordering::SeqCst);
            }
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
            if let Some(held) = &mut held {
                if held.wait_for(|held| !held).await.is_err() {
                    return;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            if let Some(queued) = &queued {
                queued.fetch_sub(chunk.len() as u64, Ordering::SeqCst);
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
