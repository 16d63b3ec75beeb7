//! A TCP relay on 127.0.0.1 that cuts every connection it carries on demand — the network
//! fault a resume or a hold must survive —, whose upstream can be switched, as when a
//! server restarts behind a fixed address, and that can drop chosen connections unrelayed,
//! as an unreachable server would.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The relay; it runs until the test's runtime ends.
pub struct Cutter {
    /// Where it listens.
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    cut: Arc<tokio::sync::Notify>,
    accepted: Arc<AtomicUsize>,
}

impl Cutter {
    /// Listens on a fresh loopback port and relays each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::gated(upstream, 0, |_| true).await
    }

    /// Like [`Cutter::start`], but reads the first `peek` bytes of each connection and
    /// drops it unrelayed when `gate` says no to them (the test's knowledge of the protocol
    /// stays in the test).
    pub async fn gated(
        upstream: SocketAddr,
        peek: usize,
        gate: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let cut = Arc::new(tokio::sync::Notify::new());
        let accepted = Arc::new(AtomicUsize::new(0));
        let (target, signal, counter) = (
            Arc::clone(&upstream),
            Arc::clone(&cut),
            Arc::clone(&accepted),
        );
        let gate = Arc::new(gate);
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let to = *target.lock().unwrap();
                let (signal, gate) = (Arc::clone(&signal), Arc::clone(&gate));
                tokio::spawn(async move {
                    let mut head = vec![0u8; peek];
                    if down.read_exact(&mut head).await.is_err() || !gate(&head) {
                        return;
                    }
                    let Ok(mut up) = TcpStream::connect(to).await else {
                        return;
                    };
                    if up.write_all(&head).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        () = signal.notified() => {}
                    }
                });
            }
        });
        Self {
            addr,
            upstream,
            cut,
            accepted,
        }
    }

    /// TCP connections accepted since the start (relayed or dropped).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Cuts every connection relayed now (both sides see the TCP connection end).
    pub fn cut_all(&self) {
        self.cut.notify_waiters();
    }

    /// Relays new connections to `upstream` from now on.
    pub fn switch_to(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

/// Sends `total` bytes (different at every position) through `local` — a connection to
/// an echo target through a tunnel whose TCP connections `cutter` carries — cutting them
/// `cuts` times along the way; what was sent and what came back.
pub async fn echo_through_cuts(
    local: TcpStream,
    total: usize,
    cutter: &Cutter,
    cuts: usize,
) -> (Arc<Vec<u8>>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data: Arc<Vec<u8>> = Arc::new(
        (0..total)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect(),
    );
    let (mut read, mut write) = local.into_split();
    let sender = {
        let data = Arc::clone(&data);
        tokio::spawn(async move {
            for chunk in data.chunks(1 << 20) {
                write.write_all(chunk).await.unwrap();
            }
            write.shutdown().await.unwrap();
        })
    };
    let mut back = Vec::with_capacity(total);
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0;
    crate::bounded(
        "the transfer through a cut tunnel",
        Duration::from_secs(60),
        async {
            loop {
                let n = read.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
                if done < cuts && back.len() > (done + 1) * total / (cuts + 1) {
                    cutter.cut_all();
                    done += 1;
                }
            }
        },
    )
    .await;
    sender.await.unwrap();
    assert_eq!(done, cuts, "cut {cuts} times");
    (data, back)
}
