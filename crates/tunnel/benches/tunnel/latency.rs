//! Open and Attach latency: local TCP connect at the forwarder → first byte at the target.
//!
//! Each sample has a fresh ticket and a fresh forwarder, so its first connection is a full
//! `Open` (broker `start` over HTTP, SQLite); its second connection `Attach`es to the
//! session (no broker call). Issuing the ticket and ending the session are not timed.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::Stack;
use crate::targets;

/// Latency samples of each kind.
#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) open: Vec<Duration>,
    pub(crate) attach: Vec<Duration>,
}

pub(crate) async fn run(stack: &Stack, samples: usize) -> Results {
    let (target, mut arrivals) = targets::first_byte().await;
    let mut results = Results {
        open: Vec::with_capacity(samples),
        attach: Vec::with_capacity(samples),
    };
    for _ in 0..samples {
        let forwarder = stack.forwarder(target).await;
        let (first, open) = first_byte(forwarder.local_addr(), &mut arrivals).await;
        let (second, attach) = first_byte(forwarder.local_addr(), &mut arrivals).await;
        results.open.push(open);
        results.attach.push(attach);
        drop((first, second));
        assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
        forwarder.end_session().await.unwrap();
    }
    results
}

/// Connects, writes one byte, and waits for the target to see it.
async fn first_byte(
    addr: std::net::SocketAddr,
    arrivals: &mut mpsc::UnboundedReceiver<Instant>,
) -> (TcpStream, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
        .await
        .expect("the first byte within 30 s")
        .unwrap();
    (stream, arrived.duration_since(started))
}
