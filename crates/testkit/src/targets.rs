//! Far ends for throughput measurements on 127.0.0.1: a sink that counts what it read, a
//! source that writes what it is asked for, the accept loop under both, and the near ends
//! that send to the one and fetch from the other.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Buffer size of these ends' reads and writes.
pub const CHUNK: usize = 64 * 1024;

/// Listens on a fresh loopback port and runs `serve` on each connection in its own task,
/// until the test's runtime ends.
pub async fn serve_each<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// Reads every connection to its end; reports each connection's byte count at its end.
pub async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<u64>) {
    let (report, reports) = mpsc::unbounded_channel();
    let addr = serve_each(move |mut stream| {
        let report = report.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                total += n as u64;
            }
            let _ = report.send(total);
        }
    })
    .await;
    (addr, reports)
}

/// Reads an 8-byte big-endian length, writes that many bytes, then closes.
pub async fn source() -> SocketAddr {
    serve_each(|mut stream| async move {
        let mut len = [0u8; 8];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut left = u64::from_be_bytes(len);
        let buf = vec![0x5Au8; CHUNK];
        while left > 0 {
            let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            if stream.write_all(&buf[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = stream.shutdown().await;
    })
    .await
}

/// Writes `bytes` to `addr` (a [`sink`], or something in front of one), closes, and waits
/// for the sink's count of that connection, which must be `bytes`.
pub async fn send_to_sink(
    addr: SocketAddr,
    bytes: u64,
    reports: &mut mpsc::UnboundedReceiver<u64>,
) {
    let buf = vec![0xA5u8; CHUNK];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        stream.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    stream.shutdown().await.unwrap();
    let received = reports.recv().await.unwrap();
    assert_eq!(
        received, bytes,
        "upload to {addr}: the sink got {received} bytes"
    );
}

/// Asks `addr` (a [`source`], or something in front of one) for `bytes` and reads them to
/// the end; there must be exactly `bytes`.
pub async fn fetch_from_source(addr: SocketAddr, bytes: u64) {
    let mut buf = vec![0u8; CHUNK];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes.to_be_bytes()).await.unwrap();
    let mut received = 0u64;
    loop {
        match stream.read(&mut buf).await.unwrap() {
            0 => break,
            n => received += n as u64,
        }
    }
    assert_eq!(
        received, bytes,
        "download from {addr}: got {received} bytes"
    );
}
