//! The far ends on 127.0.0.1: a sink and a source (portcullis-testkit's), a listener that
//! timestamps first bytes, a small echo server, and the plain two-hop relay the tunnel is
//! compared with.

use std::net::SocketAddr;
use std::time::Instant;

use portcullis_testkit::targets::serve_each;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The sink and the source, shared with the launcher's bench so both measure against the
/// same ends.
pub(crate) use portcullis_testkit::targets::{CHUNK, sink, source};

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
