//! Receiving: opening records and what each one means for the stream.

use std::time::Instant;

use super::{Connection, Ended, Event, Link, Role};
use crate::Error;
use crate::tunnel::{Control, Record};

impl Connection {
    /// Opens the record at the start of `input` in place; `now` is when it arrived (an
    /// `Ack` may end a round-trip sample of the send window).
    ///
    /// `Ok(None)`: `input` does not hold a whole record yet. Otherwise the event and the
    /// number of bytes used. `Ack` (releases replay bytes), `Ping` (queues a `Pong`), a
    /// duplicate `Close` after a resume and an empty Data record are handled here and
    /// reported as [`Event::Nothing`]. Every error (authentication, an `Ack` that decreases
    /// or exceeds `sent`, Data after the peer's `Close`, `EndSession` at a client, …) ends
    /// the link and sticks; [`ErrorCode::for_error`](crate::tunnel::ErrorCode::for_error) maps the protocol violations to
    /// `Malformed`.
    pub fn handle_input<'a>(
        &mut self,
        input: &'a mut [u8],
        now: Instant,
    ) -> Result<Option<(Event<'a>, usize)>, Error> {
        let opened = match &mut self.link {
            Link::Up { opener, .. } => opener.open_in_place(input),
            Link::Failed(error) => return Err(error.clone()),
            Link::None => return Err(Error::Misuse("no link")),
        };
        let (record, used) = match opened {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(None),
            Err(error) => return Err(self.fail(error)),
        };
        match self.on_record(record, now) {
            Ok(event) => Ok(Some((event, used))),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn on_record<'a>(&mut self, record: Record<'a>, now: Instant) -> Result<Event<'a>, Error> {
        let control = match record {
            Record::Data(data) => {
                if self.peer_closed {
                    return Err(Error::Unexpected("Data after the peer's Close"));
                }
                if data.is_empty() {
                    return Ok(Event::Nothing);
                }
                self.undelivered += data.len() as u64;
                return Ok(Event::Data(data));
            }
            Record::Control(control) => control,
        };
        Ok(match control {
            Control::Ack { received } => {
                self.replay.acknowledge(received)?;
                // Acknowledged bytes never need sending again.
                self.unsent = self.unsent.max(received);
                self.window.on_ack(received, now);
                self.replay.set_capacity(self.window.size());
                Event::Nothing
            }
            Control::Ping(value) => {
                self.pong = Some(value);
                Event::Nothing
            }
            Control::Pong(value) => Event::Pong(value),
            Control::Close if self.peer_closed => Event::Nothing,
            Control::Close => {
                self.peer_closed = true;
                Event::PeerClosed
            }
            Control::EndSession => match self.role {
                Role::Server => {
                    self.ended = Some(Ended::Session);
                    Event::EndSession
                }
                Role::Client => return Err(Error::Unexpected("EndSession from the server")),
            },
            Control::Error { code, message } => {
                self.ended = Some(Ended::Error);
                Event::PeerError { code, message }
            }
            Control::SessionEnded(_) => {
                return Err(Error::Unexpected("SessionEnded on a data connection"));
            }
        })
    }
}
