//! The far ends on 127.0.0.1: a sink, a source, a listener that timestamps first bytes, a
//! small echo server, and the plain two-hop relay the tunnel is compared with.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Buffer size of the bench's own readers and writers.
pub(crate) const CHUNK: usize = 64 * 1024;

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts forever, running `serve` on each connection in its own task.
async fn serve_each<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = listen().await;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// Reads every connection to its end; reports each connection's byte count at EOF.
pub(crate) async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<u64>) {
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
pub(crate) async fn source() -> SocketAddr {
    serve_each(|mut stream| async move {
        let mut len = [0u8; 8];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut left = u64::from_be_bytes(len);
        let buf = vec![0x5Au8; CHUNK];
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            if stream.write_all(&buf[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = stream.shutdown().await;
    })
    .await
}

/// Reports the instant each connection's first bytes arrive, then drains it.
pub(crate) async fn first_byte() -> (SocketAddr, mpsc::UnboundedReceiver<Instant>) {
    let (report, reports) = mpsc::unbounded_channel();
    let addr = serve_each(move |mut stream| {
        let report = report.clone();
        async move {
            let mut buf = [0u8; 256];
            if let Ok(1..) = stream.read(&mut buf).await {
                let _ = report.send(Instant::now());
            }
            while let Ok(1..) = stream.read(&mut buf).await {}
        }
    })
    .await;
    (addr, reports)
}

/// Echoes with a 256-byte buffer, so an idle target connection holds almost nothing.
pub(crate) async fn echo() -> SocketAddr {
    serve_each(|mut stream| async move {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            if stream.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A plain, unencrypted two-hop relay to `target`: `tokio::io::copy_bidirectional` (8 KiB
/// buffers each way), `TCP_NODELAY` on both sockets like the tunnel server.
pub(crate) async fn plain_relay(target: SocketAddr) -> SocketAddr {
    serve_each(move |mut client| async move {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            return;
        };
        portcullis_link::relay::tune(&client);
        portcullis_link::relay::tune(&upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    })
    .await
}
