//! The relay of one tunnel link (a tunnel TCP connection carrying one connection id),
//! shared by both ends: the tunnel server relays to a target, the launcher's
//! [`crate::client`] to a local program. The records come from
//! [`portcullis_proto::tunnel::Connection`], which keeps the stream state across links.
//!
//! While a link is up, two futures run in the caller's task:
//!
//! - **inbound** (module `inbound`): tunnel → records opened in place → local side, in vectored
//!   writes; only Data the local side took is acknowledged, so a slow reader slows the
//!   sender (backpressure end to end). Behind a slow local side it keeps reading and
//!   opening records (up to the largest window), so the peer's `Ack`s for the other
//!   direction are never stuck behind Data.
//! - **outbound** (module `outbound`): local side → one vectored read into the body slots of up
//!   to [`BATCH_RECORDS`] records of a buffer laid out like the wire → each sealed in place
//!   → one write for all. It reads only what the send window allows, so a peer that does
//!   not acknowledge slows the local side. It also flushes the acknowledgements, pongs and
//!   retransmissions the inbound side queued.
//!
//! Batches keep the system calls, the loopback packets and the task wakeups per byte close
//! to a plain relay's (docs/tunnel.md, "Capacity"). The inbound side never writes to the
//! tunnel itself, so the two directions cannot block each other. Buffers are allocated when
//! bytes arrive and released when the connection goes quiet, so an idle connection costs
//! little.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::tunnel::{Connection, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::stream::TunnelStream;

mod inbound;
mod outbound;

use inbound::inbound;
pub use outbound::BATCH_RECORDS;
use outbound::outbound;

/// How long a link tries to write its final records before it closes.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
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
    let ((inbound_end, mut tunnel_read), (outbound_end, mut tunnel_write)) = tokio::join!(
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
    let farewell = sealed.is_ok() && !out.is_empty();
    if farewell {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, tunnel_write.write_all(&out)).await;
    }
    if !matches!(end, LinkEnd::Dropped) {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, tunnel_write.shutdown()).await;
    }
    if farewell || !matches!(end, LinkEnd::Dropped | LinkEnd::Stopped) {
        // Read what the peer still sends until it closes too: closing with bytes unread
        // resets the connection, and a reset makes the peer's system drop what it had
        // received but not read yet, our last records included.
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, drain(&mut tunnel_read)).await;
    }
    end
}

/// Reads and discards until end of stream or an error.
async fn drain(tunnel: &mut ReadHalf<TunnelStream>) {
    let mut sink = vec![0u8; 16 * 1024];
    while matches!(tunnel.read(&mut sink).await, Ok(1..)) {}
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
