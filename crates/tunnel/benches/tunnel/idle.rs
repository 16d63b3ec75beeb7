//! Resident memory per idle tunnel connection: open many connections through a few
//! sessions, relay a few bytes on each (an echo), let them sit, and compare RSS.
//!
//! The process holds both ends (forwarder, tunnel server, echo target and the bench's
//! sockets), so the figure is an upper bound for the tunnel server alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::measure::rss_bytes;
use crate::support::Stack;
use crate::targets;

/// How long the connections sit idle before RSS is read: longer than the relay's 1 s after
/// which a quiet link gives its buffers back.
pub(crate) const IDLE: Duration = Duration::from_secs(3);
/// Bytes echoed through each connection.
const HELLO: &[u8; 16] = b"idle connection\n";

#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) connections: usize,
    pub(crate) sessions: usize,
    /// Links the tunnel server was relaying when RSS was read (its connections gauge).
    pub(crate) relaying: i64,
    pub(crate) rss_before: u64,
    /// RSS as soon as every connection echoed, before the idle wait.
    pub(crate) rss_opened: u64,
    pub(crate) rss_after: u64,
    pub(crate) open_secs: f64,
    pub(crate) close_secs: f64,
}

impl Results {
    pub(crate) fn per_connection(&self) -> f64 {
        (self.rss_after.saturating_sub(self.rss_before)) as f64 / self.connections as f64
    }
}

pub(crate) async fn run(stack: &Stack, connections: usize, per_session: usize) -> Results {
    let target = targets::echo().await;
    let sessions = connections.div_ceil(per_session);
    let mut forwarders = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        forwarders.push(stack.forwarder(target).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, forwarder) in forwarders.iter().enumerate() {
        let addr = forwarder.local_addr();
        let count = per_session.min(connections - index * per_session);
        tasks.spawn(async move {
            let mut streams = Vec::with_capacity(count);
            for _ in 0..count {
                streams.push(echo_once(addr).await);
            }
            streams
        });
    }
    let mut streams = Vec::with_capacity(connections);
    while let Some(opened) = tasks.join_next().await {
        streams.extend(opened.unwrap());
    }
    let open_secs = started.elapsed().as_secs_f64();
    let rss_opened = rss_bytes();
    tokio::time::sleep(IDLE).await;
    let rss_after = rss_bytes();
    let shared = stack.tunnel().shared();
    let relaying = shared.metrics.connections.get();

    let started = Instant::now();
    drop(streams);
    for forwarder in forwarders {
        assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
        let _ = forwarder.end_session().await;
    }
    portcullis_testkit::eventually("idle sessions ended", Duration::from_secs(60), || {
        shared.sessions.is_empty() && shared.metrics.connections.get() == 0
    })
    .await;
    Results {
        connections,
        sessions,
        relaying,
        rss_before,
        rss_opened,
        rss_after,
        open_secs,
        close_secs: started.elapsed().as_secs_f64(),
    }
}

/// Connects through the forwarder and echoes a few bytes, so both directions relayed.
async fn echo_once(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HELLO).await.unwrap();
    let mut back = [0u8; HELLO.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, HELLO);
    stream
}
