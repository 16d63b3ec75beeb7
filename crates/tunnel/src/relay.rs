//! The relay of one tunnel link (a tunnel TCP connection carrying one connection id),
//! shared by both ends: the tunnel server relays to a target, the launcher's
//! [`crate::client`] to a local program. The records come from
//! [`portcullis_proto::tunnel::Connection`], which keeps the stream state across links.
//!
//! While a link is up, two futures run in the caller's task:
//!
//! - **inbound**: tunnel → records opened in place → local side. Writes to the local side
//!   are awaited, so a slow reader slows the sender (TCP backpressure), and are never
//!   cancelled half-way (a record is delivered whole, or the link ends first).
//! - **outbound**: local side → sealed in place in a buffer laid out like the wire → one
//!   write per record. It reads only while the replay buffer has room, so a peer that does
//!   not acknowledge slows the local side. It also flushes the acknowledgements, pongs and
//!   retransmissions the inbound side queued.
//!
//! The inbound side never writes to the tunnel itself, so the two directions cannot block
//! each other. Buffers are allocated when bytes arrive and released when the connection
//! goes quiet, so an idle connection costs little.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::tunnel::{
    Connection, ErrorCode, Event, OVERHEAD, PAYLOAD_OFFSET, RecordOpener,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handshake::TunnelStream;

/// The inbox starts this small and grows only when a larger frame arrives.
const INBOX_START: usize = 4 * 1024;
/// The inbox for bulk transfer: room for about two full-size default records per read.
const INBOX_BULK: usize = 32 * 1024;
/// How long a link tries to write its final records before it closes.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// The record buffer's first size: room for interactive traffic.
const FRAME_START: usize = 2 * 1024;
/// How long a link is quiet before its buffers are released.
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// TCP keepalive on every socket: probes after this much silence.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// What a link reports to its owner (the server's session, the client's forwarder).
pub trait RelayContext: Sync {
    /// An authenticated record or local bytes arrived.
    fn activity(&self);
    /// `bytes` application bytes went to the peer (counted once: never retransmissions).
    fn sent(&self, bytes: usize);
    /// `bytes` application bytes arrived from the peer and were delivered locally.
    fn received(&self, bytes: usize);
    /// The code of the `Error` record sent when the local side fails mid-stream.
    fn local_failure_code(&self) -> ErrorCode;
    /// The last record sent when the link is stopped by its owner, if any.
    fn farewell(&self) -> Option<Farewell>;
    /// The peer ended the connection with an `Error` record carrying `code` (called before
    /// the local side is closed).
    fn peer_error(&self, code: ErrorCode) {
        let _ = code;
    }
}

/// The last record of a link its owner stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Farewell {
    /// An `Error` record (server: session expired, shutting down).
    Error(ErrorCode, &'static str),
    /// `EndSession` (client: the launcher ends the session).
    EndSession,
}

/// The local socket's state across links.
#[derive(Debug, Default)]
pub struct LocalState {
    /// The local side closed its sending side (our `Close` is queued).
    pub read_closed: bool,
    /// We shut the local side's receiving side (the peer's `Close` arrived).
    pub write_closed: bool,
}

/// How a link ended.
#[derive(Debug)]
pub enum LinkEnd {
    /// Both `Close` records exchanged, or an `Error` record either way.
    Finished,
    /// The launcher ended the session (server side only).
    EndSession,
    /// The tunnel TCP connection broke (EOF, error, a failed record): the stream state is
    /// kept for `Resume`.
    Dropped,
    /// The local side failed mid-stream; an `Error` record was sent.
    LocalFailed(String),
    /// The owner stopped the link (session end, shutdown, a takeover).
    Stopped,
}

/// Relays one link until it ends. `stop` (cancelled by the owner) ends it at the next
/// safe point; the tunnel stream is closed on return unless the link dropped.
pub async fn run_link<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    stream: TunnelStream,
    local_read: &mut OwnedReadHalf,
    local_write: &mut OwnedWriteHalf,
    local: &mut LocalState,
    stop: &CancellationToken,
) -> LinkEnd {
    let (tunnel_read, tunnel_write) = tokio::io::split(stream);
    let stop = stop.child_token();
    let flush = Notify::new();
    let LocalState {
        read_closed,
        write_closed,
    } = local;
    let (inbound_end, (outbound_end, mut tunnel_write)) = tokio::join!(
        inbound(
            context,
            connection,
            tunnel_read,
            local_write,
            write_closed,
            &stop,
            &flush
        ),
        outbound(
            context,
            connection,
            tunnel_write,
            local_read,
            read_closed,
            &stop,
            &flush
        ),
    );
    let end = match (inbound_end, outbound_end) {
        (LinkEnd::Stopped, other) | (other, LinkEnd::Stopped) => other,
        (first, _) => first,
    };
    // Once both Closes went through, the peer closes its TCP connection at once: whichever
    // half saw that end first, it is the normal end, never a drop to resume (§8.9).
    let end = match end {
        LinkEnd::Dropped if lock(connection).is_finished() => LinkEnd::Finished,
        other => other,
    };
    let mut out = Vec::new();
    let sealed = match &end {
        LinkEnd::Stopped => match context.farewell() {
            Some(Farewell::Error(code, message)) => {
                lock(connection).send_error(code, message, &mut out)
            }
            Some(Farewell::EndSession) => lock(connection).end_session(&mut out),
            None => Ok(()),
        },
        LinkEnd::LocalFailed(reason) => lock(connection).send_error(
            context.local_failure_code(),
            &format!("the connection's far end failed: {reason}"),
            &mut out,
        ),
        _ => Ok(()),
    };
    if sealed.is_ok() && !out.is_empty() {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, tunnel_write.write_all(&out)).await;
    }
    if !matches!(end, LinkEnd::Dropped) {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, tunnel_write.shutdown()).await;
    }
    end
}

/// Tunnel → local side.
#[allow(clippy::too_many_arguments)]
async fn inbound<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    mut tunnel: ReadHalf<TunnelStream>,
    target: &mut OwnedWriteHalf,
    target_closed: &mut bool,
    stop: &CancellationToken,
    flush: &Notify,
) -> LinkEnd {
    // Received bytes live in `inbox[start..end]`; `inbox.len()` is its allocated size.
    let mut inbox: Vec<u8> = Vec::new();
    let (mut start, mut end) = (0, 0);
    let mut last_read = 0;
    let outcome = 'link: loop {
        // Open every complete record received.
        loop {
            let now = tokio::time::Instant::now().into_std();
            let step = lock(connection).handle_input(&mut inbox[start..end], now);
            let (event, used) = match step {
                Ok(Some(opened)) => opened,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "record failure; link dropped");
                    break 'link LinkEnd::Dropped;
                }
            };
            context.activity();
            match event {
                Event::Data(data) => {
                    if *target_closed {
                        break 'link LinkEnd::LocalFailed("data after the peer's close".into());
                    }
                    let len = data.len();
                    if let Err(error) = target.write_all(data).await {
                        break 'link LinkEnd::LocalFailed(error.to_string());
                    }
                    // Only what the local side took is acknowledged (§8.12.2).
                    lock(connection).delivered(len);
                    context.received(len);
                }
                Event::PeerClosed => {
                    *target_closed = true;
                    let _ = target.shutdown().await;
                }
                Event::EndSession => break 'link LinkEnd::EndSession,
                Event::PeerError { code, message } => {
                    tracing::info!(%code, %message, "the peer ended the connection with an error");
                    context.peer_error(code);
                    break 'link LinkEnd::Finished;
                }
                Event::Pong(_) | Event::Nothing => {}
            }
            start += used;
        }
        // Acknowledgements and pongs go out through the outbound side.
        flush.notify_one();
        if lock(connection).is_finished() {
            break LinkEnd::Finished;
        }
        if start == end {
            (start, end) = (0, 0);
            if inbox.len() > INBOX_START && last_read < INBOX_START {
                // Small reads again: give the bulk-sized buffer back.
                inbox = Vec::new();
            }
        }
        // Room for a whole frame once its header is there.
        let frame = match RecordOpener::frame_len(&inbox[start..end]) {
            Ok(frame) => frame.unwrap_or(0),
            Err(_) => break LinkEnd::Dropped,
        };
        let want = if frame > INBOX_START {
            frame.max(INBOX_BULK)
        } else {
            INBOX_START
        };
        if inbox.len() - start < want || end == inbox.len() {
            inbox.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            if inbox.len() < want {
                inbox.resize(want, 0);
            }
        }
        let releasable = start == end && inbox.len() > INBOX_START;
        let read = tokio::select! {
            read = tunnel.read(&mut inbox[end..]) => Some(read),
            () = stop.cancelled() => break LinkEnd::Stopped,
            () = tokio::time::sleep(IDLE_RELEASE), if releasable => None,
        };
        let Some(read) = read else {
            // Quiet with a bulk-sized, empty inbox: give it back.
            inbox = Vec::new();
            (start, end) = (0, 0);
            continue;
        };
        match read {
            Ok(0) | Err(_) => break LinkEnd::Dropped,
            Ok(n) => {
                end += n;
                last_read = n;
            }
        }
    };
    stop.cancel();
    flush.notify_one();
    outcome
}

/// Local side → tunnel, plus everything the inbound side queued.
#[allow(clippy::too_many_arguments)]
async fn outbound<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    mut tunnel: WriteHalf<TunnelStream>,
    target: &mut OwnedReadHalf,
    target_closed: &mut bool,
    stop: &CancellationToken,
    flush: &Notify,
) -> (LinkEnd, WriteHalf<TunnelStream>) {
    let mut control = Vec::new();
    let mut frame: Vec<u8> = Vec::new();
    let mut burst = false;
    // Retransmissions after a resume, and anything else pending, go first.
    let end = loop {
        control.clear();
        if let Err(error) = lock(connection).poll_transmit(&mut control) {
            tracing::debug!(%error, "cannot seal; link dropped");
            break LinkEnd::Dropped;
        }
        if !control.is_empty() && tunnel.write_all(&control).await.is_err() {
            break LinkEnd::Dropped;
        }
        if lock(connection).is_finished() {
            break LinkEnd::Finished;
        }
        let window = if *target_closed {
            0
        } else {
            lock(connection).send_window()
        };
        // Everything sent was acknowledged: after a quiet moment, give the replay buffer
        // and the record buffer back, so an idle connection holds almost nothing.
        // Not during a burst (the last read filled the record): a timer per record costs.
        let releasable = !burst
            && ({
                let connection = lock(connection);
                connection.buffered_memory() > 0 && connection.acknowledged() == connection.sent()
            } || !frame.is_empty());
        tokio::select! {
            biased;
            () = stop.cancelled() => break LinkEnd::Stopped,
            () = flush.notified() => continue,
            () = tokio::time::sleep(IDLE_RELEASE), if releasable => {
                let mut connection = lock(connection);
                if connection.acknowledged() == connection.sent() {
                    connection.shrink();
                }
                frame = Vec::new();
                continue;
            }
            ready = target.readable(), if window > 0 => {
                if ready.is_err() {
                    break LinkEnd::LocalFailed("read failed".into());
                }
            }
        }
        // Small first: a keystroke needs no full-size record buffer (touching one per idle
        // connection is most of its memory); a read that fills it grows it to the window.
        if frame.len() < OVERHEAD + FRAME_START.min(window) {
            frame.resize(OVERHEAD + FRAME_START.min(window), 0);
        }
        let len = window.min(frame.len() - OVERHEAD);
        let read = match target.try_read(&mut frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len]) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                burst = false;
                continue;
            }
            Err(error) => break LinkEnd::LocalFailed(error.to_string()),
        };
        if read == 0 {
            *target_closed = true;
            lock(connection).close();
            continue;
        }
        let now = tokio::time::Instant::now().into_std();
        let sealed = lock(connection).seal_data(&mut frame, read, now);
        let frame_len = match sealed {
            Ok(frame_len) => frame_len,
            Err(error) => {
                // The bytes are in the replay buffer: they go out after the resume.
                tracing::debug!(%error, "cannot seal; link dropped");
                break LinkEnd::Dropped;
            }
        };
        context.sent(read);
        if tunnel.write_all(&frame[..frame_len]).await.is_err() {
            break LinkEnd::Dropped;
        }
        burst = read == len;
        if burst && frame.len() < OVERHEAD + window {
            frame.resize(OVERHEAD + window, 0);
        }
    };
    stop.cancel();
    (end, tunnel)
}

fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `TCP_NODELAY` (a keystroke goes out at once) and keepalive.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
