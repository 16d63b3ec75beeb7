//! The built-in `tcp-linux.js` through the tunnel with parallel local connections, and the
//! tunnel's TCP connections cut in the middle of the transfer: the launcher resumes them
//! without the local programs noticing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_launcher::launch::launch;
use portcullis_launcher::ui::Ui;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Setup, Stack, TestUi, bounded, local_address, sha256};

/// Local connections at once.
const CONNECTIONS: u64 = 4;
/// Bytes each connection sends and reads back: 64 MiB in all.
const PER_CONNECTION: u64 = 16 << 20;
const CHUNK: usize = 1 << 20;

/// Chunk `index` of connection `connection`'s data: different bytes per connection and
/// per position, so a swapped, lost or repeated chunk changes the digest.
fn chunk(connection: u64, index: u64) -> Vec<u8> {
    let seed = connection.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index;
    (0..CHUNK as u64)
        .map(|i| (seed.wrapping_add(i).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Sends this connection's data through `local` and reads the echo; the SHA-256 of each.
async fn echo_through(
    local: std::net::SocketAddr,
    connection: u64,
    received: Arc<AtomicU64>,
) -> (Vec<u8>, Vec<u8>) {
    let stream = TcpStream::connect(local).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        let mut digest = sha256();
        for index in 0..PER_CONNECTION / CHUNK as u64 {
            let data = chunk(connection, index);
            digest.update(&data);
            write.write_all(&data).await.unwrap();
        }
        write.shutdown().await.unwrap();
        digest.finish().as_ref().to_vec()
    });
    let mut digest = sha256();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = read.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        total += n as u64;
        received.fetch_add(n as u64, Ordering::Relaxed);
    }
    assert_eq!(total, PER_CONNECTION, "connection {connection}: bytes back");
    (sender.await.unwrap(), digest.finish().as_ref().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_linux_js_with_parallel_connections_survives_a_cut_tunnel() {
    let stack = Stack::with(Setup {
        cuttable: true,
        ..Setup::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let options = stack.trusting_options(stack.link().await, &home);
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let local = local_address(&ui.first_message().await);

    let received = Arc::new(AtomicU64::new(0));
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|connection| tokio::spawn(echo_through(local, connection, Arc::clone(&received))))
        .collect();
    // Half-way through, every tunnel connection is cut at once.
    let total = CONNECTIONS * PER_CONNECTION;
    bounded("half of the data back", Duration::from_secs(120), async {
        while received.load(Ordering::Relaxed) < total / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let cutter = stack.cutter.as_ref().unwrap();
    let before_cut = cutter.accepted();
    cutter.cut_all();
    for (connection, task) in connections.into_iter().enumerate() {
        let (sent, back) = bounded("the echo", Duration::from_secs(120), task)
            .await
            .unwrap();
        assert_eq!(
            sent, back,
            "connection {connection}: SHA-256 of what came back"
        );
    }
    assert!(
        cutter.accepted() > before_cut,
        "the launcher resumed through the relay"
    );

    ui.disconnect();
    bounded("the launcher's end", Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap();
    // Counted once at the tunnel server: retransmissions after the cut are not bytes.
    let stopped = stack.tunnel_stopped().await;
    assert_eq!(stopped["sent"], total, "{stopped}");
    assert_eq!(stopped["recv"], total, "{stopped}");
}
