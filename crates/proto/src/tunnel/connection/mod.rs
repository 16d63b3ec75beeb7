//! One connection id's data stream after the handshake, kept across resumes.
//!
//! A [`Connection`] owns what both sides keep per connection id (`docs/protocol.md`
//! §8.12): the counters `received`, `sent` and `acknowledged`, the replay buffer and the
//! close state. A **link** (one TCP connection's sealer and opener) is attached after each
//! completed handshake and lost when that TCP connection drops; the stream survives.
//!
//! The caller drives it, per link, in this order:
//!
//! 1. after a handshake: [`Connection::attach_link`], then [`Connection::poll_transmit`]
//!    (retransmissions) and write what it appended;
//! 2. input: call [`Connection::handle_input`] on the buffered bytes until it returns
//!    `Ok(None)`, drop the bytes it used, then [`Connection::poll_transmit`]; once the Data
//!    it returned is written to the local side, [`Connection::delivered`] (only delivered
//!    bytes are acknowledged). A slow local side must not stop the input: keep handling it
//!    (the peer's `Ack`s are in it) while the Data waits, up to the peer's window;
//! 3. local data: read at most [`Connection::send_window`] bytes into a frame at
//!    [`PAYLOAD_OFFSET`](super::PAYLOAD_OFFSET), [`Connection::seal_data`], write the frame;
//!    at end of stream [`Connection::close`] and [`Connection::poll_transmit`];
//! 4. any error, EOF or I/O failure: [`Connection::link_lost`] and close the TCP connection;
//!    once [`Connection::is_finished`], close it and forget the connection.
//!
//! The send window (§8.12.2) grows with the bandwidth-delay product measured from the time
//! Data is sealed to the time its `Ack` arrives: both calls take `now`. Nothing here reads a
//! clock or performs I/O; timers (keep-alive pings, idle timeouts) are the caller's.

use core::fmt;

use super::window::SendWindow;
use super::{
    DEFAULT_PLAINTEXT, DEFAULT_RECORD_LIMIT, DEFAULT_REPLAY_CAPACITY, ErrorCode, MAX_PLAINTEXT,
    MAX_WINDOW, RecordOpener, RecordSealer, ReplayBuffer, WindowBudget,
};
use crate::{ConnectionId, Error};

mod receive;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
mod transmit;

/// Settings of a [`Connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The initial send window: the most sent but unacknowledged Data bytes kept for
    /// resume at first (default [`DEFAULT_REPLAY_CAPACITY`]); while the replay buffer holds
    /// the window, [`Connection::send_window`] is 0.
    pub replay_capacity: usize,
    /// The largest send window (default and at most [`MAX_WINDOW`]); below
    /// `replay_capacity` it counts as `replay_capacity` (a fixed window).
    pub max_window: usize,
    /// Where window growth beyond `replay_capacity` comes from, shared with the other
    /// connections given a clone of it (default: a fresh
    /// [`DEFAULT_WINDOW_BUDGET`](super::DEFAULT_WINDOW_BUDGET)).
    pub window_budget: WindowBudget,
    /// Records each direction of a link may carry (default [`DEFAULT_RECORD_LIMIT`]),
    /// applied to the sealer and the opener of every attached link.
    pub record_limit: u64,
    /// The largest Data body this side sends (default [`DEFAULT_PLAINTEXT`]); values outside
    /// `1..=MAX_PLAINTEXT` are clamped into that range.
    pub data_record_size: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            max_window: MAX_WINDOW,
            window_budget: WindowBudget::default(),
            record_limit: DEFAULT_RECORD_LIMIT,
            data_record_size: DEFAULT_PLAINTEXT,
        }
    }
}

/// What one record received meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Application bytes, decrypted in place in the input buffer: write them to the local
    /// side (target or local socket).
    Data(&'a [u8]),
    /// The peer's `Close`: it sends no more Data. Write end-of-stream to the local side
    /// (`shutdown(Write)`); data may still flow the other way.
    PeerClosed,
    /// The launcher ends the whole session (a server-side connection only): close every
    /// connection of the session and its targets, and send `stop`.
    EndSession,
    /// The peer's `Error` record: log it and close the TCP connection. The connection is
    /// finished and cannot be resumed; the session lives on.
    PeerError {
        /// What went wrong.
        code: ErrorCode,
        /// The peer's explanation (never secret, at most 1024 bytes).
        message: String,
    },
    /// A `Pong` with its value; it need not match a `Ping` sent.
    Pong(u64),
    /// An authenticated record handled internally (Ack, Ping, duplicate Close, empty Data):
    /// nothing to do, but it counts as activity.
    Nothing,
}

/// Which side of the tunnel a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// The current TCP connection's keys, or why there are none.
enum Link {
    /// No link: before the first handshake or after [`Connection::link_lost`].
    None,
    /// An established link.
    Up {
        sealer: RecordSealer,
        opener: RecordOpener,
    },
    /// The link failed (keys erased); the failure sticks until the next link.
    Failed(Error),
}

/// Whether this side has ended its Data stream (`Close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalClose {
    /// The local source is still open.
    Open,
    /// [`Connection::close`] was called; `Close` goes out once the replay buffer is empty.
    Pending,
    /// `Close` was sealed on the current link.
    Sent,
}

/// Why a connection ended other than by the close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// An `Error` record was sent or received.
    Error,
    /// `EndSession` was sent or received.
    Session,
    /// A `Resume` could not be served: the connection id ended without a record.
    Abandoned,
}

/// One connection id's data stream, kept across resumes (both sides use it).
///
/// Sans-io: the caller moves bytes between sockets and this type; see the module
/// documentation for the call order. Errors from [`Connection::handle_input`],
/// [`Connection::seal_data`] and [`Connection::poll_transmit`] end the link (the keys are
/// erased and the error sticks until the next [`Connection::attach_link`]) but keep the
/// stream, so the connection can be resumed.
pub struct Connection {
    id: ConnectionId,
    role: Role,
    record_limit: u64,
    data_record_size: usize,
    link: Link,
    replay: ReplayBuffer,
    window: SendWindow,
    /// Where the window's growth comes from; also lent to the caller for read-ahead.
    budget: WindowBudget,
    /// Data bytes received and delivered (reported by [`Connection::delivered`]).
    received: u64,
    /// Data bytes returned as [`Event::Data`] on this link and not reported delivered yet.
    undelivered: u64,
    /// The `received` value the peer knows (last Ack sent, or stated in the handshake).
    ack_sent: u64,
    /// Stream offset of the first byte not yet sealed on the current link.
    unsent: u64,
    /// A Ping value to answer on the current link.
    pong: Option<u64>,
    local_close: LocalClose,
    /// `Close` was sealed at least once (on some link).
    close_sent: bool,
    /// The peer's `Close` was received.
    peer_closed: bool,
    ended: Option<Ended>,
}

impl Connection {
    /// A tunnel server's connection with id `id`, without a link yet.
    ///
    /// The launcher uses [`Connection::new_client`]; the two differ only in who may send
    /// and receive `EndSession`.
    pub fn new(id: ConnectionId, config: &ConnectionConfig) -> Self {
        Self::with_role(id, config, Role::Server)
    }

    /// A launcher's connection with id `id`, without a link yet: it may send `EndSession`
    /// ([`Connection::end_session`]) and fails a link that delivers one.
    pub fn new_client(id: ConnectionId, config: &ConnectionConfig) -> Self {
        Self::with_role(id, config, Role::Client)
    }

    fn with_role(id: ConnectionId, config: &ConnectionConfig, role: Role) -> Self {
        Self {
            id,
            role,
            record_limit: config.record_limit,
            data_record_size: config.data_record_size.clamp(1, MAX_PLAINTEXT),
            link: Link::None,
            replay: ReplayBuffer::new(config.replay_capacity),
            window: SendWindow::new(
                config.replay_capacity,
                config.max_window,
                &config.window_budget,
            ),
            budget: config.window_budget.clone(),
            received: 0,
            undelivered: 0,
            ack_sent: 0,
            unsent: 0,
            pong: None,
            local_close: LocalClose::Open,
            close_sent: false,
            peer_closed: false,
            ended: None,
        }
    }

    /// The connection id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether a resume in which the peer states it received `peer_received` Data bytes can
    /// be served: `acknowledged ≤ peer_received ≤ sent` and the connection not finished.
    ///
    /// A server calls it before sending `Accept` for a `Resume` hello; the error is
    /// [`Error::Resume`], which [`ErrorCode::for_error`] maps to `ResumeImpossible`.
    pub fn check_resume(&self, peer_received: u64) -> Result<(), Error> {
        if self.is_finished() {
            return Err(Error::Resume("the connection has ended"));
        }
        self.replay.check_retransmit(peer_received)
    }

    /// Installs a fresh link after a completed handshake: the sealer and opener of
    /// `client::Established` or `server::Established`, and the `received` the peer stated
    /// (0 for `Open` and `Attach`; for `Resume` the hello's `received` on the server, the
    /// `Accept`'s `server_received` on the client).
    ///
    /// Checks it as [`Connection::check_resume`] does (an error changes nothing), drops
    /// replay bytes below it, and queues for [`Connection::poll_transmit`] the
    /// retransmission of `[peer_received, sent)` and, if this side sent `Close` and has not
    /// received the peer's, `Close` again. Any previous link is replaced, and Data it
    /// returned but the caller did not report [`Connection::delivered`] is forgotten: the
    /// peer sends it again (the caller drops what it still holds).
    pub fn attach_link(
        &mut self,
        mut sealer: RecordSealer,
        mut opener: RecordOpener,
        peer_received: u64,
    ) -> Result<(), Error> {
        self.check_resume(peer_received)?;
        self.replay.acknowledge(peer_received)?;
        sealer.set_record_limit(self.record_limit);
        opener.set_record_limit(self.record_limit);
        self.link = Link::Up { sealer, opener };
        self.window.new_link();
        self.unsent = peer_received;
        // The handshake told the peer our `received`.
        self.ack_sent = self.received;
        self.undelivered = 0;
        self.pong = None;
        if self.local_close == LocalClose::Sent {
            self.local_close = LocalClose::Pending;
        }
        Ok(())
    }

    /// Ends the connection id without a record: a `Resume` of it was refused after its proof
    /// verified (docs/protocol.md §8.7.4), so the missing bytes are gone for good. The
    /// connection is finished; close its local side and forget it.
    pub fn abandon(&mut self) {
        self.link = Link::None;
        self.pong = None;
        self.ended = Some(Ended::Abandoned);
    }

    /// The TCP connection dropped (end of stream or error without `Close`, a failed record,
    /// an exhausted counter): the keys are erased, the stream is kept for a resume.
    pub fn link_lost(&mut self) {
        self.link = Link::None;
        self.pong = None;
        self.window.link_lost();
    }

    /// Whether a link is attached and has not failed.
    pub fn has_link(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// How many application bytes the caller may read from its local source now, for one
    /// record: `min(`[`Connection::sendable`]`, data_record_size)`.
    pub fn send_window(&self) -> usize {
        self.sendable().min(self.data_record_size)
    }

    /// How many application bytes the caller may read from its local source now in all
    /// (several records' worth, each sealed with [`Connection::seal_data`]): the free send
    /// window.
    ///
    /// 0 without a working link, while retransmissions wait for
    /// [`Connection::poll_transmit`], after [`Connection::close`], and once finished.
    pub fn sendable(&self) -> usize {
        if !self.has_link()
            || self.local_close != LocalClose::Open
            || self.ended.is_some()
            || self.unsent != self.replay.sent_total()
        {
            return 0;
        }
        self.replay.available()
    }

    /// The largest Data body this side sends.
    pub fn data_record_size(&self) -> usize {
        self.data_record_size
    }

    /// Whether the connection is over: both `Close`s exchanged, an `Error` sent or
    /// received, `EndSession` sent or received, or [`Connection::abandon`]ed. Close the TCP connection (after writing
    /// what [`Connection::poll_transmit`] appended) and forget the connection.
    pub fn is_finished(&self) -> bool {
        self.ended.is_some() || (self.close_sent && self.peer_closed)
    }

    /// Whether this side sent `Close` (so every Data byte it sent was acknowledged) and has
    /// not received the peer's `Close`.
    ///
    /// A launcher whose `Resume` of such a connection is refused with `ResumeImpossible`
    /// treats it as closed by the peer: the server finished it and only the server's
    /// `Close` was lost (docs/protocol.md §8.12.3).
    pub fn awaiting_peer_close(&self) -> bool {
        self.close_sent && !self.peer_closed && self.ended.is_none()
    }

    /// Data bytes received and delivered over all links (application bytes, each counted
    /// once): what `Ack` and a resume state.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The caller wrote `bytes` more of the Data that [`Connection::handle_input`] returned
    /// to its local side: they count as received and the next `Ack` covers them. More than
    /// was returned and not yet reported counts as that much.
    pub fn delivered(&mut self, bytes: usize) {
        let bytes = (bytes as u64).min(self.undelivered);
        self.undelivered -= bytes;
        self.received += bytes;
    }

    /// Data bytes sent (accepted by [`Connection::seal_data`]) over all links.
    pub fn sent(&self) -> u64 {
        self.replay.sent_total()
    }

    /// Data bytes the peer acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.replay.acknowledged()
    }

    /// Once everything sent is acknowledged: releases the replay buffer's memory and returns
    /// the send window to its initial size (its growth to the budget). Call it when a
    /// connection goes idle, not after every batch: the next Data allocates the replay buffer
    /// again, and the window grows again with the next round trips.
    pub fn shrink(&mut self) {
        if self.replay.is_empty() {
            self.replay.shrink();
            self.window.reset();
            self.replay.set_capacity(self.window.size());
        }
    }

    /// The send window now (§8.12.2): the most unacknowledged Data bytes this side keeps.
    pub fn window(&self) -> usize {
        self.window.size()
    }

    /// The memory budget this connection's window grows from, for the caller's read-ahead
    /// of Data its local side has not taken yet (up to [`MAX_WINDOW`]).
    pub fn window_budget(&self) -> &WindowBudget {
        &self.budget
    }

    /// Heap bytes held by this connection's buffers (the replay buffer), for memory
    /// accounting.
    pub fn buffered_memory(&self) -> usize {
        self.replay.allocated()
    }

    /// Ends the link with `error` (keys erased); returns the error.
    fn fail(&mut self, error: Error) -> Error {
        self.link = Link::Failed(error.clone());
        self.pong = None;
        error
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = match &self.link {
            Link::None => "none",
            Link::Up { .. } => "up",
            Link::Failed(_) => "failed",
        };
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("link", &link)
            .field("received", &self.received)
            .field("sent", &self.sent())
            .field("acknowledged", &self.acknowledged())
            .field("window", &self.window.size())
            .field("local_close", &self.local_close)
            .field("peer_closed", &self.peer_closed)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
