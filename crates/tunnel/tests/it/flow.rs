//! Flow control through real sockets (docs/protocol.md §8.12.2): a window grows over a long
//! round trip up to its cap, send windows larger than what the TCP buffers on the way hold
//! never let one direction block the other, and a link's last records survive its end.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_link::client::{ClientConfig, handshake_at};
use portcullis_proto::tunnel::{Connection, ConnectionConfig, Event, client};
use portcullis_testkit::{Hop, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{STEP, Stack};

/// A fixed send window far above the TCP buffers on the way.
const WINDOW: usize = 4 * 1024 * 1024;

/// An echo that reads only while it can write (as many request–response servers do), with
/// small socket buffers: when its writes block, it stops reading.
async fn tight_echo() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let socket = socket2::SockRef::from(&stream);
            socket.set_recv_buffer_size(1 << 16).unwrap();
            socket.set_send_buffer_size(1 << 16).unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = read.read(&mut buf).await {
                    if write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_that_stops_reading_while_it_cannot_write_never_blocks_both_directions() {
    // The server's window: fixed at WINDOW, so it fills long before the TCP buffers do.
    let stack = Stack::with(|config| {
        config.limits.replay_buffer_bytes = WINDOW;
        config.limits.max_window_bytes = WINDOW;
    })
    .await;
    let echo = tight_echo().await;
    let client = ClientConfig {
        connection: ConnectionConfig {
            replay_capacity: WINDOW,
            max_window: WINDOW,
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    };
    let forwarder = stack.forwarder_with(echo, client).await;
    let local = tokio::net::TcpStream::connect(forwarder.local_addr())
        .await
        .unwrap();
    let total: usize = 32 << 20;
    let data: Arc<Vec<u8>> = Arc::new((0..total).map(|i| (i % 251) as u8).collect());
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
    bounded("32 MiB through an echo that stops reading", STEP, async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = read.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    sender.await.unwrap();
    assert_eq!(back.len(), total);
    assert!(back == *data, "the bytes came back in order, intact");
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    forwarder.end_session().await.unwrap();
}

/// A target that sends without end; reports when its connection fails (the tunnel server
/// closed it).
async fn endless_source() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let ended = ended.clone();
            tokio::spawn(async move {
                let chunk = vec![0x42u8; 1 << 16];
                while stream.write_all(&chunk).await.is_ok() {}
                let _ = ended.send(());
            });
        }
    });
    (addr, ends)
}

/// A forwarder for a new ticket to `target` whose tunnel connections cross a hop with
/// 10 ms each way: the launcher's last records and its closing then arrive apart.
async fn forwarder_over_a_hop(
    stack: &Stack,
    target: SocketAddr,
) -> (portcullis_link::client::Forwarder, Hop) {
    let hop = Hop::spawn(stack.tunnel_addr(), Duration::from_millis(10), 4 << 20).await;
    let (ticket, secret) = stack.ticket_to(target).await;
    let mut address = stack.address();
    address.port = hop.addr.port();
    let forwarder =
        portcullis_link::client::Forwarder::start(address, ticket, secret, ClientConfig::default())
            .await
            .unwrap();
    (forwarder, hop)
}

/// Reads a few MiB through `local` so that the window is in full use.
async fn read_some(local: &mut tokio::net::TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < 8 << 20 {
        got += bounded("the download", STEP, local.read(&mut buf))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_in_the_middle_of_a_download_reaches_the_server() {
    let stack = Stack::start().await;
    let (source, mut ends) = endless_source().await;
    let (forwarder, _hop) = forwarder_over_a_hop(&stack, source).await;
    let mut local = tokio::net::TcpStream::connect(forwarder.local_addr())
        .await
        .unwrap();
    read_some(&mut local).await;
    // The launcher stops reading and ends the session while the server still sends: its
    // EndSession must not be lost when it closes the connection.
    bounded("end_session", STEP, forwarder.end_session())
        .await
        .unwrap();
    let stops = stack.wait_for_stops(1).await;
    assert_eq!(stops.len(), 1);
    bounded("the target's connection closed", STEP, ends.recv())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_resets_its_connection_mid_download_ends_the_target_connection() {
    let stack = Stack::start().await;
    let (source, mut ends) = endless_source().await;
    let (forwarder, _hop) = forwarder_over_a_hop(&stack, source).await;
    let mut local = tokio::net::TcpStream::connect(forwarder.local_addr())
        .await
        .unwrap();
    read_some(&mut local).await;
    // Closed with bytes unread: a reset. The launcher's Error record must reach the server,
    // which closes the target connection rather than holding it for a resume.
    drop(local);
    bounded("the target's connection closed", STEP, ends.recv())
        .await
        .unwrap();
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
}

/// What the launcher's side of one connection has received and acknowledged.
struct RawReceiver {
    stream: portcullis_link::TunnelStream,
    connection: Connection,
    inbox: Vec<u8>,
    filled: usize,
}

impl RawReceiver {
    /// Reads once (at most `wait`) and opens every whole record; Data counts as delivered.
    /// `false` when nothing arrived within `wait`.
    async fn read(&mut self, wait: Duration) -> bool {
        if self.inbox.len() - self.filled < 64 * 1024 {
            self.inbox.resize(self.filled + 128 * 1024, 0);
        }
        let read = tokio::time::timeout(wait, self.stream.read(&mut self.inbox[self.filled..]));
        let Ok(read) = read.await else {
            return false;
        };
        let read = read.unwrap();
        assert!(read > 0, "the tunnel server closed the connection");
        self.filled += read;
        let mut used = 0;
        let now = tokio::time::Instant::now().into_std();
        while let Some((event, length)) = self
            .connection
            .handle_input(&mut self.inbox[used..self.filled], now)
            .unwrap()
        {
            if let Event::Data(data) = event {
                let delivered = data.len();
                self.connection.delivered(delivered);
            }
            used += length;
        }
        self.inbox.copy_within(used..self.filled, 0);
        self.filled -= used;
        true
    }

    /// Sends the `Ack` for everything delivered.
    async fn acknowledge(&mut self) {
        let mut out = Vec::new();
        self.connection.poll_transmit(&mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }
}

/// The send window of a download over a long round trip grows to its cap and no further:
/// a launcher that stops acknowledging receives exactly the server's window (docs/protocol.md
/// §8.12.2). Before windows grew it received 256 KiB and the download crawled at 256 KiB per
/// round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_over_a_long_round_trip_grows_the_window_to_its_cap_and_no_further() {
    // A round trip long enough that the window, not this test's reading (unoptimized, on a
    // busy machine), limits the download: 1 MiB per 100 ms is 10 MiB/s.
    const CAP: usize = 1024 * 1024;
    let stack = Stack::with(|config| config.limits.max_window_bytes = CAP).await;
    let (source, _ends) = endless_source().await;
    let hop = Hop::spawn(stack.tunnel_addr(), Duration::from_millis(50), 4 << 20).await;
    let (ticket, secret) = stack.ticket_to(source).await;
    let mut address = stack.address();
    address.port = hop.addr.port();
    let (stream, opened) = handshake_at(&address, Duration::from_secs(20), |random, out| {
        client::open(&ticket, &secret, random, out)
    })
    .await
    .unwrap();
    let established = opened.connection;
    let mut connection =
        Connection::new_client(established.connection_id, &ConnectionConfig::default());
    connection
        .attach_link(established.sealer, established.opener, 0)
        .unwrap();
    let mut receiver = RawReceiver {
        stream,
        connection,
        inbox: Vec::new(),
        filled: 0,
    };
    // A download acknowledged as the protocol says: after each read's records.
    bounded("12 MiB acknowledged read by read", STEP, async {
        while receiver.connection.received() < 12 << 20 {
            assert!(receiver.read(Duration::from_secs(10)).await, "stalled");
            receiver.acknowledge().await;
        }
    })
    .await;
    // No more Acks: the server sends what its window allows, then stops.
    let acknowledged = receiver.connection.received();
    let unacknowledged = |receiver: &RawReceiver| receiver.connection.received() - acknowledged;
    bounded("the window's worth", STEP, async {
        while unacknowledged(&receiver) < CAP as u64 {
            if !receiver.read(Duration::from_secs(5)).await {
                break;
            }
        }
        // Nothing beyond it comes, however long we wait.
        while receiver.read(Duration::from_millis(300)).await {}
    })
    .await;
    assert_eq!(
        unacknowledged(&receiver),
        CAP as u64,
        "the server's window grew to its cap, and not beyond it"
    );
}

/// A target that reads everything and counts it.
async fn counting_sink() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    counted.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (addr, count)
}

/// The launcher's window grows over a long round trip too (docs/protocol.md §8.12.2): with
/// its records held back on the way to the server while the server's Acks still come
/// back, the launcher sends exactly what its window allows beyond what was acknowledged,
/// its cap, not the initial 256 KiB of a fixed window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_a_long_round_trip_grows_the_launchers_window_to_its_cap() {
    const CAP: usize = 1024 * 1024;
    let stack = Stack::start().await;
    let (sink, received) = counting_sink().await;
    let hop = Hop::spawn(stack.tunnel_addr(), Duration::from_millis(50), 4 << 20).await;
    let (ticket, secret) = stack.ticket_to(sink).await;
    let mut address = stack.address();
    address.port = hop.addr.port();
    let config = ClientConfig {
        connection: ConnectionConfig {
            max_window: CAP,
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    };
    let forwarder = portcullis_link::client::Forwarder::start(address, ticket, secret, config)
        .await
        .unwrap();
    let local = tokio::net::TcpStream::connect(forwarder.local_addr())
        .await
        .unwrap();
    let (_read, mut write) = local.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 1 << 16];
        while write.write_all(&chunk).await.is_ok() {}
    });
    bounded("12 MiB uploaded", STEP, async {
        while received.load(std::sync::atomic::Ordering::SeqCst) < 12 << 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Everything that got through is acknowledged; what the launcher sends beyond it waits
    // in the hop, and it stops there once its window is full.
    hop.hold_upstream(true);
    let mut queued = hop.queued_upstream();
    bounded("the launcher stops", STEP, async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = hop.queued_upstream();
            if now == queued {
                break;
            }
            queued = now;
        }
    })
    .await;
    // Records: 21 bytes of header, type and tag per Data record of at most 16 KiB.
    let records = CAP.div_ceil(16 * 1024) as u64;
    assert!(
        (CAP as u64..=CAP as u64 + 21 * records + 1024).contains(&queued),
        "{queued} bytes of records beyond what was acknowledged: the window is not its \
         cap of {CAP}"
    );
    writer.abort();
    hop.hold_upstream(false);
}
