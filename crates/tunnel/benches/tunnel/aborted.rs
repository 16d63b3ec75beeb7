//! Aborted handshakes leave nothing behind: connect, send half an `Open` hello or a whole
//! one (with an unknown ticket), close before the proof; then count sessions, the
//! connections gauge and the connections the limits still hold, and compare RSS.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_proto::tunnel::{client, fresh_random};
use portcullis_proto::{SharedSecret, TicketId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::measure::rss_bytes;
use crate::support::Stack;

/// Handshakes in flight at once.
const CONCURRENCY: usize = 32;

#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) handshakes: usize,
    pub(crate) sessions_left: usize,
    pub(crate) connections_gauge: i64,
    /// TCP connections the server's limits still count.
    pub(crate) connections_held: usize,
    pub(crate) rss_start: u64,
    pub(crate) rss_end: u64,
}

impl Results {
    /// RSS change in percent of where it started.
    pub(crate) fn rss_change(&self) -> f64 {
        (self.rss_end as f64 - self.rss_start as f64) * 100.0 / self.rss_start as f64
    }

    pub(crate) fn ok(&self) -> bool {
        self.sessions_left == 0
            && self.connections_gauge == 0
            && self.connections_held == 0
            && self.rss_change().abs() <= 5.0
    }
}

/// A warm-up round of `warmup`, then `handshakes` measured.
pub(crate) async fn run(stack: &Stack, warmup: usize, handshakes: usize) -> Results {
    let server = stack.tunnel_addr();
    abort_many(stack, server, warmup).await;
    let rss_start = rss_bytes();
    abort_many(stack, server, handshakes).await;
    let shared = stack.tunnel().shared();
    Results {
        handshakes,
        sessions_left: shared.sessions.len(),
        connections_gauge: shared.metrics.connections.get(),
        connections_held: shared.limits.connections(),
        rss_start,
        rss_end: rss_bytes(),
    }
}

/// Runs `count` aborted handshakes, then waits until the server let go of every one.
async fn abort_many(stack: &Stack, server: SocketAddr, count: usize) {
    let mut tasks = JoinSet::new();
    for index in 0..count {
        if tasks.len() >= CONCURRENCY {
            tasks.join_next().await.unwrap().unwrap();
        }
        tasks.spawn(abort_one(server, index % 2 == 0));
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let limits = &stack.tunnel().shared().limits;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while limits.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One connection that sends an `Open` hello (all of it, or half) and closes.
async fn abort_one(server: SocketAddr, whole: bool) {
    let mut hello = Vec::new();
    let ticket = TicketId::generate().unwrap();
    let secret = SharedSecret::generate().unwrap();
    let _ = client::open(&ticket, &secret, fresh_random().unwrap(), &mut hello);
    let len = if whole { hello.len() } else { hello.len() / 2 };
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(&hello[..len]).await.unwrap();
    drop(stream);
}
