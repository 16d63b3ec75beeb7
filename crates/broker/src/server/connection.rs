//! One connection: the TLS handshake (bounded), then HTTP/1.1 with hyper's own server
//! (no version detection: HTTP/2 is never spoken), closed when it idles.
//!
//! A connection is in one of three phases ([`Phase`]): idle (no request in flight, no byte
//! of the next one read), reading a request's headers (bytes arrived while idle), or busy
//! (a request is being answered). The watchdog in [`serve_http`] closes an idle connection
//! after `limits.idle_timeout_secs` — before its first request as well as between
//! requests — and one whose headers take longer than `limits.header_read_timeout_secs`
//! from their first byte. hyper's own header-read timer (with a timer set, it runs from
//! the moment hyper waits for a request) backs both up at their sum.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tower::Service;

use super::shutdown_requested;

/// The time limits of one connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnectionLimits {
    /// From accepting to the end of the TLS handshake.
    pub(super) tls_handshake: Duration,
    /// With no request in flight.
    pub(super) idle: Duration,
    /// From a request's first byte to the end of its headers.
    pub(super) headers: Duration,
}

/// What every connection shares.
pub(super) struct Serving {
    /// The application.
    pub(super) router: Router,
    /// TLS, unless the broker serves plain HTTP behind a proxy.
    pub(super) tls: Option<portcullis_tls::TlsAcceptor>,
    /// Its time limits.
    pub(super) limits: ConnectionLimits,
}

/// Serves one accepted connection until it ends, idles out or the broker shuts down.
/// `_permit` is its place under `limits.max_connections`, given back on return.
pub(super) async fn serve(
    serving: Arc<Serving>,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    // Answers are small: send them without waiting for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let Some(tls) = &serving.tls else {
        return serve_http(&serving, stream, peer, shutdown).await;
    };
    let handshake = tokio::select! {
        handshake = timeout(serving.limits.tls_handshake, tls.accept(stream)) => handshake,
        _ = shutdown_requested(&mut shutdown) => return,
    };
    match handshake {
        Ok(Ok(stream)) => serve_http(&serving, stream, peer, shutdown).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// HTTP/1.1 on `io` with keep-alive, under the idle and header watchdog.
async fn serve_http<IO>(
    serving: &Serving,
    io: IO,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<Option<Duration>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = serving.limits;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: io,
        activity: Arc::clone(&activity),
    });
    let router = serving.router.clone();
    let in_service = Arc::clone(&activity);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::start(Arc::clone(&in_service));
        let mut router = router.clone();
        async move {
            let response = router.call(request).await;
            drop(busy);
            response
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle + limits.headers)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if let Some(why) = activity.expired(&limits, Instant::now()) {
                    tracing::debug!(%peer, why, "closing a connection");
                    return;
                }
            }
            _ = shutdown_requested(&mut shutdown), if !draining => {
                // Closes it now if idle, else after the answer in flight.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Where a connection is (module documentation), and since when.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Idle(Instant),
    Headers(Instant),
    Busy(usize),
}

/// A connection's [`Phase`], shared by its reader, its service and its watchdog (which
/// `changed` wakes when a phase with another deadline begins).
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock();
        let before = *phase;
        *phase = change(before);
        if std::mem::discriminant(&before) != std::mem::discriminant(&*phase) {
            self.changed.notify_one();
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock()
    }

    /// When the watchdog looks again.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        match self.phase() {
            Phase::Idle(since) => since + limits.idle,
            Phase::Headers(since) => since + limits.headers,
            // The request timeout bounds the answer; look again later.
            Phase::Busy(_) => Instant::now() + limits.idle,
        }
    }

    /// Why the connection must close at `now`, if it must.
    fn expired(&self, limits: &ConnectionLimits, now: Instant) -> Option<&'static str> {
        match self.phase() {
            Phase::Idle(since) if now >= since + limits.idle => Some("idle"),
            Phase::Headers(since) if now >= since + limits.headers => Some("slow headers"),
            _ => None,
        }
    }
}

/// A request in flight on its connection, from the service call to its answer.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Idle(_) | Phase::Headers(_) => Phase::Busy(1),
        });
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// The connection's byte stream; bytes read while idle start a request's headers.
struct Watched<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.update(|phase| match phase {
                Phase::Idle(_) => Phase::Headers(Instant::now()),
                other => other,
            });
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        tls_handshake: Duration::from_secs(10),
        idle: Duration::from_secs(30),
        headers: Duration::from_secs(10),
    };

    #[test]
    fn idle_then_headers_then_busy_then_idle_again() {
        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        assert_eq!(
            activity.expired(&LIMITS, start + Duration::from_secs(29)),
            None
        );
        assert_eq!(
            activity.expired(&LIMITS, start + Duration::from_secs(31)),
            Some("idle")
        );
        activity.update(|_| Phase::Headers(start));
        assert_eq!(
            activity.expired(&LIMITS, start + Duration::from_secs(11)),
            Some("slow headers")
        );
        let busy = Busy::start(Arc::clone(&activity));
        let second = Busy::start(Arc::clone(&activity));
        assert_eq!(
            activity.expired(&LIMITS, start + Duration::from_secs(3600)),
            None
        );
        drop(second);
        assert!(matches!(activity.phase(), Phase::Busy(1)));
        drop(busy);
        let Phase::Idle(since) = activity.phase() else {
            panic!("idle after the answer");
        };
        assert_eq!(
            activity.expired(&LIMITS, since + Duration::from_secs(29)),
            None
        );
        assert_eq!(activity.deadline(&LIMITS), since + LIMITS.idle);
    }
}
