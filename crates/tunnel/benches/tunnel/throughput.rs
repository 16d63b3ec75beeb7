//! Throughput of one connection, each way, through three paths measured in the same run:
//! direct (client → target), a plain two-hop relay, and the tunnel (client → forwarder,
//! sealing → tunnel server, opening → target).

use std::net::SocketAddr;
use std::time::Instant;

use portcullis_testkit::targets::{fetch_from_source, send_to_sink};
use tokio::sync::mpsc;

use crate::measure::cpu_seconds;
use crate::support::Stack;
use crate::targets::{self, CHUNK};

/// Upload: the bench writes, the target sinks. Download: the target writes, the bench reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Upload,
    Download,
}

/// The paths, in the order they are printed. "2 plain relays" has the tunnel path's hop
/// count (bench → forwarder → tunnel server → target) without the crypto and the protocol.
pub(crate) const PATHS: [&str; 4] = ["direct", "plain relay", "2 plain relays", "tunnel"];
/// The index of the plain relay, the budget's reference.
pub(crate) const RELAY: usize = 1;
/// The index of the relay chain with the tunnel's hop count.
pub(crate) const CHAIN: usize = 2;

/// One transfer's wall time and the whole process's CPU time during it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) secs: f64,
    pub(crate) cpu: f64,
}

/// The median transfer (by wall time) of each path and direction.
#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) bytes: u64,
    pub(crate) rounds: usize,
    /// `(direction, path index, median transfer)`.
    pub(crate) rows: Vec<(Direction, usize, Transfer)>,
}

/// Runs `rounds` interleaved rounds of `bytes` per transfer.
pub(crate) async fn run(stack: &Stack, bytes: u64, rounds: usize) -> Results {
    let (sink, mut reports) = targets::sink().await;
    let source = targets::source().await;
    let relay_sink = targets::plain_relay(sink).await;
    let relay_source = targets::plain_relay(source).await;
    let chain_sink = targets::plain_relay(relay_sink).await;
    let chain_source = targets::plain_relay(relay_source).await;
    let tunnel_sink = stack.forwarder(sink).await;
    let tunnel_source = stack.forwarder(source).await;
    let uploads = [sink, relay_sink, chain_sink, tunnel_sink.local_addr()];
    let downloads = [
        source,
        relay_source,
        chain_source,
        tunnel_source.local_addr(),
    ];
    // Warm-up: opens the tunnel sessions (later connections attach) and the relays.
    for path in 0..PATHS.len() {
        upload(uploads[path], CHUNK as u64, &mut reports).await;
        download(downloads[path], CHUNK as u64).await;
    }
    let mut samples: Vec<(Direction, usize, Vec<Transfer>)> = Vec::new();
    for direction in [Direction::Upload, Direction::Download] {
        for path in 0..PATHS.len() {
            samples.push((direction, path, Vec::new()));
        }
    }
    for _ in 0..rounds {
        for (direction, path, transfers) in &mut samples {
            let transfer = match direction {
                Direction::Upload => upload(uploads[*path], bytes, &mut reports).await,
                Direction::Download => download(downloads[*path], bytes).await,
            };
            transfers.push(transfer);
        }
    }
    let rows = samples
        .into_iter()
        .map(|(direction, path, mut transfers)| {
            transfers.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            (direction, path, transfers[transfers.len() / 2])
        })
        .collect();
    for forwarder in [tunnel_sink, tunnel_source] {
        assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
        let _ = forwarder.end_session().await;
    }
    Results {
        bytes,
        rounds,
        rows,
    }
}

/// Writes `bytes` to `addr`, closes, and waits for the sink's count.
async fn upload(
    addr: SocketAddr,
    bytes: u64,
    reports: &mut mpsc::UnboundedReceiver<u64>,
) -> Transfer {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    send_to_sink(addr, bytes, reports).await;
    Transfer {
        secs: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu,
    }
}

/// Asks `addr` for `bytes` and reads them to the end.
async fn download(addr: SocketAddr, bytes: u64) -> Transfer {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    fetch_from_source(addr, bytes).await;
    Transfer {
        secs: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu,
    }
}
