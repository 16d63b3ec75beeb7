//! Tunnel → local side. Records are opened in place in the inbox; their Data goes to the
//! local side in vectored writes, and only what the local side took is acknowledged.
//!
//! While the local side is slow the inbox keeps reading and opening records: the peer's
//! `Ack`s for the other direction are among them, and a target that stops reading while
//! it cannot write (an echo, many request–response servers) would otherwise block both
//! directions for good (docs/protocol.md §8.12.2). The Data waits in the inbox, up to
//! [`MAX_WINDOW`] (the most a peer may have unacknowledged), the inbox's growth beyond a
//! bulk read taken from the window budget.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::Mutex;

use portcullis_proto::tunnel::{
    BudgetReservation, Connection, DEFAULT_PLAINTEXT, ErrorCode, Event, MAX_RECORD_LEN, MAX_WINDOW,
    OVERHEAD, RecordOpener,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{IDLE_RELEASE, LinkEnd, RelayContext, lock};
use crate::stream::TunnelStream;

/// The inbox starts this small and grows only when a larger frame arrives.
const INBOX_START: usize = 4 * 1024;
/// The inbox for bulk transfer: four full-size default records per read. Growth beyond it
/// (read-ahead behind a slow local side) comes from the window budget.
const INBOX_BULK: usize = 4 * (OVERHEAD + DEFAULT_PLAINTEXT);
/// The largest inbox: the most Data a peer may have unacknowledged, and one frame.
const INBOX_MAX: usize = MAX_WINDOW + MAX_RECORD_LEN;
/// Slices given to one vectored write.
const WRITE_SLICES: usize = 64;

/// Received bytes: `buf[..start]` opened records, whose Data not yet written to the local
/// side is `pending`; `buf[start..end]` not opened yet; `buf[end..]` free.
struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Data to write to the local side, in order, as ranges of `buf` below `start`.
    pending: VecDeque<Range<usize>>,
    /// The budget bytes held for `buf` beyond [`INBOX_BULK`].
    reservation: BudgetReservation,
    last_read: usize,
}

impl Inbox {
    fn new(reservation: BudgetReservation) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            pending: VecDeque::new(),
            reservation,
            last_read: 0,
        }
    }

    /// Nothing held: no Data to write and no partial record.
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.start == self.end
    }

    /// Gives the buffer and its budget bytes back.
    fn release(&mut self) {
        self.buf = Vec::new();
        (self.start, self.end) = (0, 0);
        self.reservation.release();
    }

    /// `written` bytes of the pending Data reached the local side.
    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            let take = written.min(front.end - front.start);
            front.start += take;
            written -= take;
            if front.start == front.end {
                self.pending.pop_front();
            }
        }
    }

    /// Makes room for the next read: room for the next frame once its header is there (a
    /// bulk read's worth for a large one), more while Data waits for the local side, within
    /// [`INBOX_MAX`] and the budget. `Ok(false)`: no room now (the local side must take
    /// Data first); an error: the next frame's header is out of bounds.
    fn make_room(&mut self) -> Result<bool, portcullis_proto::Error> {
        if self.is_empty() {
            (self.start, self.end) = (0, 0);
            if self.buf.len() > INBOX_START && self.last_read < INBOX_START {
                // Small reads again: give the bulk-sized buffer back.
                self.release();
            }
        }
        let frame = RecordOpener::frame_len(&self.buf[self.start..self.end])?.unwrap_or(0);
        let want = if frame > INBOX_START {
            frame.max(INBOX_BULK)
        } else {
            INBOX_START
        };
        if self.buf.len() - self.start < want || self.end == self.buf.len() {
            self.compact();
        }
        let mut wanted = self.start + want;
        if !self.pending.is_empty() && self.end == self.buf.len() {
            // Read ahead behind the slow local side: double, up to the most it may need.
            wanted = wanted.max(self.buf.len() * 2);
        }
        let wanted = wanted.min(INBOX_MAX);
        if wanted > self.buf.len() {
            let beyond_bulk = wanted.saturating_sub(INBOX_BULK.max(self.buf.len()));
            let granted = self.reservation.grow(beyond_bulk);
            let len = wanted.min(INBOX_BULK).max(self.buf.len()) + granted;
            self.buf.resize(len.max(self.buf.len()), 0);
        }
        Ok(self.end < self.buf.len())
    }

    /// Moves the held bytes (pending Data and unopened bytes) to the front.
    fn compact(&mut self) {
        let head = self.pending.front().map_or(self.start, |range| range.start);
        if head == 0 {
            return;
        }
        self.buf.copy_within(head..self.end, 0);
        for range in &mut self.pending {
            *range = range.start - head..range.end - head;
        }
        self.start -= head;
        self.end -= head;
    }
}

/// What opening the records of one read found.
#[derive(Default)]
struct Opened {
    /// At least one authenticated record.
    records: bool,
    /// The peer's `Close`.
    peer_closed: bool,
    /// The link ends (after the pending Data, for `EndSession` and `Error`).
    end: Option<LinkEnd>,
    /// The code of the peer's `Error` record.
    peer_error: Option<ErrorCode>,
}

/// Opens every complete record in the inbox: Data joins `pending`, control records take
/// effect in the connection (`Ack`s release the other direction's window at once).
fn open_records(
    connection: &Mutex<Connection>,
    inbox: &mut Inbox,
    now: std::time::Instant,
) -> Opened {
    let base = inbox.buf.as_ptr() as usize;
    let mut opened = Opened::default();
    let mut connection = lock(connection);
    while opened.end.is_none() {
        let (event, used) =
            match connection.handle_input(&mut inbox.buf[inbox.start..inbox.end], now) {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "record failure; link dropped");
                    opened.end = Some(LinkEnd::Dropped);
                    break;
                }
            };
        opened.records = true;
        match event {
            Event::Data(data) => {
                let offset = data.as_ptr() as usize - base;
                inbox.pending.push_back(offset..offset + data.len());
            }
            Event::PeerClosed => opened.peer_closed = true,
            Event::EndSession => opened.end = Some(LinkEnd::EndSession),
            Event::PeerError { code, message } => {
                tracing::info!(%code, %message, "the peer ended the connection with an error");
                opened.peer_error = Some(code);
                opened.end = Some(LinkEnd::Finished);
            }
            Event::Pong(_) | Event::Nothing => {}
        }
        inbox.start += used;
    }
    opened
}

/// One vectored write of the pending Data (cancel-safe: it writes or it does not).
async fn write_pending(
    target: &mut OwnedWriteHalf,
    filled: &[u8],
    pending: &VecDeque<Range<usize>>,
) -> std::io::Result<usize> {
    let slices: Vec<IoSlice<'_>> = pending
        .iter()
        .take(WRITE_SLICES)
        .map(|range| IoSlice::new(&filled[range.clone()]))
        .collect();
    match target.write_vectored(&slices).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        written => Ok(written),
    }
}

/// What the inbound side waited for.
enum Woke {
    Stopped,
    Wrote(std::io::Result<usize>),
    Read(std::io::Result<usize>),
    Quiet,
}

/// Tunnel → local side, until the link ends.
pub(super) async fn inbound<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    mut tunnel: ReadHalf<TunnelStream>,
    target: &mut OwnedWriteHalf,
    target_closed: &mut bool,
    stop: &CancellationToken,
    flush: &Notify,
) -> (LinkEnd, ReadHalf<TunnelStream>) {
    let mut inbox = Inbox::new(lock(connection).window_budget().reservation());
    // The peer's Close arrived: shut the local side's writing once the Data before it is out.
    let mut close_pending = false;
    let outcome = loop {
        let opened = open_records(
            connection,
            &mut inbox,
            tokio::time::Instant::now().into_std(),
        );
        if opened.records {
            context.activity();
            // Pongs, and a window the peer's Acks opened, go out through the outbound side.
            flush.notify_one();
        }
        if let Some(code) = opened.peer_error {
            context.peer_error(code);
        }
        close_pending |= opened.peer_closed;
        match opened.end {
            Some(LinkEnd::Dropped) => break LinkEnd::Dropped,
            Some(end) => {
                // EndSession and Error come after the Data before them.
                if let Err(error) = write_all_pending(context, connection, target, &mut inbox).await
                {
                    break LinkEnd::LocalFailed(error.to_string());
                }
                break end;
            }
            None => {}
        }
        if close_pending && inbox.pending.is_empty() {
            close_pending = false;
            *target_closed = true;
            let _ = target.shutdown().await;
        }
        if inbox.pending.is_empty() && lock(connection).is_finished() {
            break LinkEnd::Finished;
        }
        let can_read = match inbox.make_room() {
            Ok(can_read) => can_read,
            Err(_) => break LinkEnd::Dropped,
        };
        let quiet = inbox.is_empty() && inbox.buf.len() > INBOX_START;
        let (filled, free) = inbox.buf.split_at_mut(inbox.end);
        let pending = &inbox.pending;
        let woke = tokio::select! {
            biased;
            () = stop.cancelled() => Woke::Stopped,
            written = write_pending(target, filled, pending), if !pending.is_empty() => {
                Woke::Wrote(written)
            }
            read = tunnel.read(free), if can_read => Woke::Read(read),
            () = tokio::time::sleep(IDLE_RELEASE), if quiet => Woke::Quiet,
        };
        match woke {
            Woke::Stopped => break LinkEnd::Stopped,
            Woke::Wrote(Ok(written)) => {
                inbox.consume(written);
                lock(connection).delivered(written);
                context.received(written);
                flush.notify_one();
            }
            Woke::Wrote(Err(error)) => break LinkEnd::LocalFailed(error.to_string()),
            Woke::Read(Ok(0) | Err(_)) => break LinkEnd::Dropped,
            Woke::Read(Ok(read)) => {
                inbox.end += read;
                inbox.last_read = read;
            }
            // Quiet with a bulk-sized, empty inbox: give it back.
            Woke::Quiet => inbox.release(),
        }
    };
    stop.cancel();
    flush.notify_one();
    (outcome, tunnel)
}

/// Writes all the pending Data (before an `EndSession` or `Error` ends the link).
async fn write_all_pending<C: RelayContext>(
    context: &C,
    connection: &Mutex<Connection>,
    target: &mut OwnedWriteHalf,
    inbox: &mut Inbox,
) -> std::io::Result<()> {
    while !inbox.pending.is_empty() {
        let written = write_pending(target, &inbox.buf, &inbox.pending).await?;
        inbox.consume(written);
        lock(connection).delivered(written);
        context.received(written);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_proto::tunnel::WindowBudget;

    use super::*;

    #[test]
    fn the_inbox_reads_ahead_within_its_cap_and_the_budget_and_gives_it_back() {
        let budget = WindowBudget::new(INBOX_BULK);
        let mut inbox = Inbox::new(budget.reservation());
        // A large frame's header: room for a bulk read.
        inbox.buf.resize(INBOX_START, 0);
        inbox.buf[..4].copy_from_slice(&16_401u32.to_be_bytes());
        inbox.end = 4;
        assert!(inbox.make_room().unwrap());
        assert_eq!(inbox.buf.len(), INBOX_BULK);
        assert_eq!(budget.in_use(), 0, "a bulk inbox is free");
        // Data waits for the local side and the inbox is full: it doubles, from the budget.
        inbox.pending.push_back(0..INBOX_BULK);
        (inbox.start, inbox.end) = (INBOX_BULK, INBOX_BULK);
        assert!(inbox.make_room().unwrap());
        assert_eq!(inbox.buf.len(), 2 * INBOX_BULK);
        assert_eq!(budget.in_use(), INBOX_BULK);
        // The budget is spent: no more room until the local side takes Data.
        inbox.pending.push_back(INBOX_BULK..2 * INBOX_BULK);
        (inbox.start, inbox.end) = (2 * INBOX_BULK, 2 * INBOX_BULK);
        assert!(!inbox.make_room().unwrap());
        // It took the first bulk: compacted, room again.
        inbox.consume(INBOX_BULK);
        assert!(inbox.make_room().unwrap());
        assert_eq!(inbox.pending.front(), Some(&(0..INBOX_BULK)));
        inbox.consume(INBOX_BULK);
        assert!(inbox.is_empty());
        inbox.release();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn read_ahead_stops_at_the_largest_window() {
        let budget = WindowBudget::new(usize::MAX);
        let mut inbox = Inbox::new(budget.reservation());
        inbox.buf.resize(INBOX_BULK, 0);
        loop {
            let len = inbox.buf.len();
            inbox.pending.push_back(inbox.start..len);
            (inbox.start, inbox.end) = (len, len);
            if !inbox.make_room().unwrap() {
                break;
            }
            assert!(inbox.buf.len() <= INBOX_MAX);
        }
        assert_eq!(inbox.buf.len(), INBOX_MAX);
    }

    #[test]
    fn an_out_of_bounds_header_is_an_error_at_once() {
        let mut inbox = Inbox::new(WindowBudget::new(0).reservation());
        inbox.buf.resize(INBOX_START, 0);
        inbox.buf[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        inbox.end = 4;
        assert!(inbox.make_room().is_err());
    }
}
