//! Sending: Data on the hot path, pending control records, retransmissions and Close.

use std::time::Instant;

use super::{Connection, Ended, Link, LocalClose, Role};
use crate::Error;
use crate::tunnel::{Control, ErrorCode, OVERHEAD, PAYLOAD_OFFSET};

impl Connection {
    /// Hot path: seals `len` application bytes the caller read into
    /// `frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len]` as one Data record, in place, at `now`
    /// (it may start a round-trip sample of the send window), and returns the length of the
    /// frame to write in one piece.
    ///
    /// `len` must be in `1..=send_window()` and `frame` at least `OVERHEAD + len` long
    /// ([`Error::Misuse`] otherwise, and nothing changes). The bytes enter the replay buffer
    /// before they are sealed: if sealing fails (e.g. [`Error::CounterExhausted`]) the link
    /// ends, and the bytes go out after the resume.
    pub fn seal_data(
        &mut self,
        frame: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Result<usize, Error> {
        if len == 0 || len > self.send_window() {
            return Err(Error::Misuse("Data length outside 1..=send_window()"));
        }
        let payload = frame
            .get(PAYLOAD_OFFSET..PAYLOAD_OFFSET + len)
            .filter(|_| frame.len() >= OVERHEAD + len)
            .ok_or(Error::Misuse(
                "frame too small for the payload and the record overhead",
            ))?;
        self.replay.push(payload)?;
        let Link::Up { sealer, .. } = &mut self.link else {
            return Err(Error::Misuse("no link"));
        };
        match sealer.seal_in_place(frame, len) {
            Ok(frame_len) => {
                self.unsent = self.replay.sent_total();
                self.window
                    .on_sent(self.unsent, self.replay.acknowledged(), now);
                Ok(frame_len)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Appends every pending record, sealed, to `out`: the `Ack` when Data arrived since the
    /// last one, the `Pong`, retransmissions (in `data_record_size` records), and `Close`
    /// once it is due.
    ///
    /// Call it after each batch of input, after each resume and after
    /// [`Connection::close`]. Without a link or once finished it appends nothing; on a
    /// failed link it returns the failure. A sealing error ends the link; `out` then keeps
    /// the records sealed before it.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        match &self.link {
            Link::Up { .. } => {}
            Link::Failed(error) => return Err(error.clone()),
            Link::None => return Ok(()),
        }
        if self.is_finished() {
            return Ok(());
        }
        match self.transmit(out) {
            Ok(()) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn transmit(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Link::Up { sealer, .. } = &mut self.link else {
            return Ok(());
        };
        if self.received != self.ack_sent {
            let ack = Control::Ack {
                received: self.received,
            };
            sealer.seal_control(&ack, out)?;
            self.ack_sent = self.received;
        }
        if let Some(value) = self.pong.take() {
            sealer.seal_control(&Control::Pong(value), out)?;
        }
        while self.unsent < self.replay.sent_total() {
            let start = out.len();
            let payload = start + PAYLOAD_OFFSET;
            out.resize(start + OVERHEAD + self.data_record_size, 0);
            let len = self.replay.copy_from(
                self.unsent,
                &mut out[payload..payload + self.data_record_size],
            );
            match sealer.seal_in_place(&mut out[start..], len) {
                Ok(frame_len) => out.truncate(start + frame_len),
                Err(error) => {
                    out.truncate(start);
                    return Err(error);
                }
            }
            self.unsent += len as u64;
        }
        if self.local_close == LocalClose::Pending && self.replay.is_empty() {
            sealer.seal_control(&Control::Close, out)?;
            self.local_close = LocalClose::Sent;
            self.close_sent = true;
        }
        Ok(())
    }

    /// The local source reached end of stream: half-close. No more Data is sent
    /// ([`Connection::send_window`] is 0); [`Connection::poll_transmit`] sends `Close` once
    /// every Data byte sent was acknowledged (replay buffer empty), so nothing in flight
    /// can be lost behind it. Idempotent.
    pub fn close(&mut self) {
        if self.local_close == LocalClose::Open {
            self.local_close = LocalClose::Pending;
        }
    }

    /// Launcher only: seals `EndSession` into `out` at once; the connection (and the
    /// session) is then finished. [`Error::Misuse`] on a server connection or without a
    /// link.
    pub fn end_session(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.role != Role::Client {
            return Err(Error::Misuse("only the launcher sends EndSession"));
        }
        self.seal_final(&Control::EndSession, Ended::Session, out)
    }

    /// Seals an `Error` record into `out` (the message cut to 1024 bytes): the connection
    /// is finished and cannot be resumed; close the TCP connection after writing it.
    pub fn send_error(
        &mut self,
        code: ErrorCode,
        message: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.seal_final(&Control::error(code, message), Ended::Error, out)
    }

    fn seal_final(
        &mut self,
        control: &Control,
        ended: Ended,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.seal_control(control, out)?;
        self.ended = Some(ended);
        Ok(())
    }

    /// Seals a `Ping` carrying `value` into `out` (keep-alive or latency probe; the peer
    /// answers with a `Pong`, reported as [`Event::Pong`](super::Event::Pong)).
    pub fn ping(&mut self, value: u64, out: &mut Vec<u8>) -> Result<(), Error> {
        self.seal_control(&Control::Ping(value), out)
    }

    fn seal_control(&mut self, control: &Control, out: &mut Vec<u8>) -> Result<(), Error> {
        let sealed = match &mut self.link {
            Link::Up { sealer, .. } => sealer.seal_control(control, out),
            Link::Failed(error) => return Err(error.clone()),
            Link::None => return Err(Error::Misuse("no link")),
        };
        sealed.map_err(|error| self.fail(error))
    }
}
