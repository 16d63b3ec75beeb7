//! A session's hold (docs/protocol.md §8.7.7): one TCP connection per session that dials
//! nothing and carries control records only. The launcher keeps it up while its local
//! endpoint is open; the server tells the launcher over it when and why the session ended,
//! and the launcher can end the session over it.
//!
//! [`HoldLink`] is the record layer of one hold connection on either side, sans-io and
//! clock-free: the caller passes `now` and drives the keep-alive with
//! [`HoldLink::poll_timeout`] and [`HoldLink::handle_timeout`] (the client pings after
//! [`HOLD_PING_INTERVAL`] without sending, and gives the hold up after twice that without
//! receiving; the server gives it up after [`HOLD_TIMEOUT`] without receiving). A dropped
//! hold is not resumed: the client opens a new one.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use super::{Control, EndReason, OVERHEAD, Record, RecordOpener, RecordSealer};
use crate::Error;

/// A client sends `Ping` on its hold when it has sent nothing on it for this long.
pub const HOLD_PING_INTERVAL: Duration = Duration::from_secs(30);
/// A server closes a hold on which nothing authenticated arrived for this long.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(90);
/// A client gives its hold up when nothing arrived on it for this long.
const CLIENT_SILENCE: Duration = Duration::from_secs(2 * HOLD_PING_INTERVAL.as_secs());

/// What one record received on a hold meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEvent {
    /// The launcher ends the session (server side): end it, send nothing more, close.
    EndSession,
    /// The server ended the session for this reason (client side): stop using it.
    SessionEnded(EndReason),
    /// A `Pong` with its value.
    Pong(u64),
    /// A `Ping` (its `Pong` is queued for [`HoldLink::poll_transmit`]).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// One hold connection's records and keep-alive, on either side.
pub struct HoldLink {
    role: Role,
    sealer: RecordSealer,
    opener: RecordOpener,
    /// A Ping value to answer.
    pong: Option<u64>,
    /// A Ping is due (client).
    ping_due: bool,
    next_ping: u64,
    last_received: Instant,
    last_sent: Instant,
    /// The first failure; it sticks.
    failed: Option<Error>,
    /// `EndSession` or `SessionEnded` went out or came in: nothing more is sent.
    finished: bool,
}

impl HoldLink {
    /// The largest frame a hold carries (a Ping or Pong: an 8-byte body). A frame header
    /// announcing more fails the hold at once, so a receive buffer of this size suffices.
    pub const MAX_FRAME: usize = OVERHEAD + 8;

    /// The launcher's side of a hold whose handshake completed at `now`.
    pub fn client(sealer: RecordSealer, opener: RecordOpener, now: Instant) -> Self {
        Self::new(Role::Client, sealer, opener, now)
    }

    /// The tunnel server's side of a hold whose handshake completed at `now`.
    pub fn server(sealer: RecordSealer, opener: RecordOpener, now: Instant) -> Self {
        Self::new(Role::Server, sealer, opener, now)
    }

    fn new(role: Role, sealer: RecordSealer, opener: RecordOpener, now: Instant) -> Self {
        Self {
            role,
            sealer,
            opener,
            pong: None,
            ping_due: false,
            next_ping: 1,
            last_received: now,
            last_sent: now,
            failed: None,
            finished: false,
        }
    }

    /// Opens the record at the start of `input` in place: `Ok(None)` until a whole record
    /// is there, else the event and the bytes used. Any record a hold may not carry (Data,
    /// Ack, Close, Error, and `SessionEnded` at a server or `EndSession` at a client) is a
    /// failure of the hold; failures stick.
    pub fn handle_input(
        &mut self,
        input: &mut [u8],
        now: Instant,
    ) -> Result<Option<(HoldEvent, usize)>, Error> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match RecordOpener::frame_len(input) {
            Ok(Some(len)) if len > Self::MAX_FRAME => {
                return Err(self.fail(Error::Unexpected("a record a hold does not carry")));
            }
            Err(error) => return Err(self.fail(error)),
            Ok(_) => {}
        }
        let (record, used) = match self.opener.open_in_place(input) {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(None),
            Err(error) => return Err(self.fail(error)),
        };
        let event = match (record, self.role) {
            (Record::Control(Control::Ping(value)), _) => {
                self.pong = Some(value);
                HoldEvent::Nothing
            }
            (Record::Control(Control::Pong(value)), _) => HoldEvent::Pong(value),
            (Record::Control(Control::EndSession), Role::Server) => {
                self.finished = true;
                HoldEvent::EndSession
            }
            (Record::Control(Control::SessionEnded(reason)), Role::Client) => {
                self.finished = true;
                HoldEvent::SessionEnded(reason)
            }
            _ => return Err(self.fail(Error::Unexpected("a record a hold does not carry"))),
        };
        self.last_received = now;
        Ok(Some((event, used)))
    }

    /// Appends what is due, sealed, to `out`: the `Pong` of the latest `Ping`, and on the
    /// client a `Ping` when [`HoldLink::handle_timeout`] found one due.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, now: Instant) -> Result<(), Error> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.finished {
            return Ok(());
        }
        if let Some(value) = self.pong.take() {
            self.seal(&Control::Pong(value), out, now)?;
        }
        if self.ping_due {
            self.ping_due = false;
            let value = self.next_ping;
            self.next_ping = self.next_ping.wrapping_add(1);
            self.seal(&Control::Ping(value), out, now)?;
        }
        Ok(())
    }

    /// When [`HoldLink::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Instant {
        match self.role {
            Role::Client => {
                (self.last_sent + HOLD_PING_INTERVAL).min(self.last_received + CLIENT_SILENCE)
            }
            Role::Server => self.last_received + HOLD_TIMEOUT,
        }
    }

    /// Applies the timers at `now`: the client queues a `Ping` after
    /// [`HOLD_PING_INTERVAL`] without sending; a hold silent for too long (client: twice
    /// the interval; server: [`HOLD_TIMEOUT`]) fails with [`Error::Silent`]: close it (the
    /// client then opens a new one).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let silence = match self.role {
            Role::Client => CLIENT_SILENCE,
            Role::Server => HOLD_TIMEOUT,
        };
        if now.saturating_duration_since(self.last_received) >= silence {
            return Err(self.fail(Error::Silent("nothing received on the hold")));
        }
        if self.role == Role::Client
            && now.saturating_duration_since(self.last_sent) >= HOLD_PING_INTERVAL
        {
            self.ping_due = true;
        }
        Ok(())
    }

    /// Client: seals `EndSession` into `out`; the session ends and the hold sends nothing
    /// more.
    pub fn end_session(&mut self, out: &mut Vec<u8>, now: Instant) -> Result<(), Error> {
        if self.role != Role::Client {
            return Err(Error::Misuse("only the launcher sends EndSession"));
        }
        self.seal_final(&Control::EndSession, out, now)
    }

    /// Server: seals `SessionEnded(reason)` into `out`; write it, then close the hold.
    pub fn session_ended(
        &mut self,
        reason: EndReason,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Result<(), Error> {
        if self.role != Role::Server {
            return Err(Error::Misuse("only the tunnel server sends SessionEnded"));
        }
        self.seal_final(&Control::SessionEnded(reason), out, now)
    }

    /// Whether `EndSession` or `SessionEnded` went either way: close the hold.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn seal_final(
        &mut self,
        control: &Control,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Result<(), Error> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.finished {
            return Ok(());
        }
        self.seal(control, out, now)?;
        self.finished = true;
        Ok(())
    }

    fn seal(&mut self, control: &Control, out: &mut Vec<u8>, now: Instant) -> Result<(), Error> {
        match self.sealer.seal_control(control, out) {
            Ok(()) => {
                self.last_sent = now;
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error.clone());
        self.pong = None;
        self.ping_due = false;
        error
    }
}

impl fmt::Debug for HoldLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldLink")
            .field("role", &self.role)
            .field("failed", &self.failed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
