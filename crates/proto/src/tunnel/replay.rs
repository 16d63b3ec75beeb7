//! The replay buffer: sent but unacknowledged Data bytes, kept for resume.

use std::collections::VecDeque;

use crate::Error;

/// Default capacity of a [`ReplayBuffer`]: 256 KiB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 256 * 1024;

/// Keeps the Data bytes one side sent on a connection until the peer acknowledges them.
///
/// Positions are offsets in the connection's Data stream, counted from the connection's
/// first `Open`/`Attach` over all its resumes. The sender pushes every Data byte it seals,
/// drops bytes when an `Ack` arrives, and after a resume retransmits everything after what
/// the peer says it received. When the buffer is full the caller stops reading from its
/// local socket until an `Ack` makes room (backpressure).
///
/// No memory is held until the first byte is pushed; the first push reserves the whole
/// capacity at once (so the hot path never reallocates), a push beyond it after the
/// capacity grew ([`ReplayBuffer::set_capacity`]: the send window) reserves the new one,
/// and [`ReplayBuffer::shrink`] gives it back once everything is acknowledged.
#[derive(Debug)]
pub struct ReplayBuffer {
    bytes: VecDeque<u8>,
    capacity: usize,
    acknowledged: u64,
}

impl ReplayBuffer {
    /// An empty buffer that keeps at most `capacity` unacknowledged bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
            acknowledged: 0,
        }
    }

    /// The most unacknowledged bytes this buffer keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the most unacknowledged bytes kept (the send window grew or went back); a
    /// capacity below what is kept now only stops further pushes until acknowledgements
    /// bring it below. Memory follows at the next push.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// How many bytes are sent but not acknowledged.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether every byte sent was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many more bytes [`ReplayBuffer::push`] accepts now.
    pub fn available(&self) -> usize {
        self.capacity.saturating_sub(self.bytes.len())
    }

    /// Total Data bytes sent on this connection.
    pub fn sent_total(&self) -> u64 {
        self.acknowledged + self.bytes.len() as u64
    }

    /// Total Data bytes the peer acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Records `data` as sent. All or nothing: if it does not fit in
    /// [`ReplayBuffer::available`], nothing is kept and the error is
    /// [`Error::TooLarge`]; send `data` only once it was pushed.
    pub fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.available() {
            return Err(Error::TooLarge {
                what: "replay buffer",
                got: self.bytes.len().saturating_add(data.len()),
                max: self.capacity,
            });
        }
        if self.bytes.capacity() < self.bytes.len() + data.len() {
            self.bytes.reserve_exact(self.capacity - self.bytes.len());
        }
        self.bytes.extend(data);
        Ok(())
    }

    /// Copies kept bytes starting at stream offset `from` into `dst`; returns how many were
    /// copied (fewer than `dst.len()` at the end of what was sent, 0 for an offset outside
    /// `[acknowledged, sent_total)`).
    pub(crate) fn copy_from(&self, from: u64, dst: &mut [u8]) -> usize {
        let Some(start) = from
            .checked_sub(self.acknowledged)
            .and_then(|start| usize::try_from(start).ok())
            .filter(|&start| start < self.bytes.len())
        else {
            return 0;
        };
        let count = dst.len().min(self.bytes.len() - start);
        let (front, back) = self.bytes.as_slices();
        let mut copied = 0;
        if let Some(part) = front.get(start..) {
            let take = part.len().min(count);
            dst[..take].copy_from_slice(&part[..take]);
            copied = take;
        }
        if copied < count {
            let back_start = start + copied - front.len();
            dst[copied..count].copy_from_slice(&back[back_start..back_start + count - copied]);
        }
        count
    }

    /// Bytes of heap memory this buffer holds now.
    pub fn allocated(&self) -> usize {
        self.bytes.capacity()
    }

    /// Drops the bytes the peer says it received (`received_total`, from an `Ack`).
    ///
    /// An acknowledgement beyond what was sent, or below an earlier one, is an error.
    pub fn acknowledge(&mut self, received_total: u64) -> Result<(), Error> {
        if received_total > self.sent_total() {
            return Err(Error::Unexpected("acknowledgement of bytes never sent"));
        }
        let Some(newly) = received_total.checked_sub(self.acknowledged) else {
            return Err(Error::Unexpected("acknowledgement below an earlier one"));
        };
        // `newly` is at most `bytes.len()`, so it fits in usize.
        let newly = usize::try_from(newly)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        self.bytes.drain(..newly);
        self.acknowledged = received_total;
        Ok(())
    }

    /// After a resume: acknowledges `peer_received` (what the peer says it received) and
    /// returns the bytes to send again, in order, as up to two slices.
    ///
    /// `Error::Resume` if the peer asks for bytes no longer kept or claims bytes never sent;
    /// the connection cannot be resumed then.
    pub fn retransmit_from(&mut self, peer_received: u64) -> Result<(&[u8], &[u8]), Error> {
        self.check_retransmit(peer_received)?;
        self.acknowledge(peer_received)?;
        Ok(self.bytes.as_slices())
    }

    /// Whether [`ReplayBuffer::retransmit_from`] can serve `peer_received`, without changing
    /// anything: a tunnel server checks a `Resume` hello's `received` with it before the
    /// proof is verified, and acts on it only after.
    pub fn check_retransmit(&self, peer_received: u64) -> Result<(), Error> {
        if peer_received < self.acknowledged {
            return Err(Error::Resume("the peer asks for bytes no longer buffered"));
        }
        if peer_received > self.sent_total() {
            return Err(Error::Resume("the peer claims bytes that were never sent"));
        }
        Ok(())
    }

    /// Gives memory back once everything sent is acknowledged (for idle connections).
    pub fn shrink(&mut self) {
        if self.bytes.is_empty() {
            self.bytes = VecDeque::new();
        }
    }
}

impl Default for ReplayBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn joined((a, b): (&[u8], &[u8])) -> Vec<u8> {
        [a, b].concat()
    }

    #[test]
    fn push_acknowledge_retransmit() {
        let mut buffer = ReplayBuffer::new(8);
        buffer.push(b"hello").unwrap();
        assert_eq!(buffer.sent_total(), 5);
        assert_eq!(buffer.available(), 3);
        assert!(matches!(buffer.push(b"world"), Err(Error::TooLarge { .. })));
        assert_eq!(buffer.len(), 5, "a refused push keeps nothing");
        buffer.acknowledge(2).unwrap();
        buffer.push(b"world").unwrap();
        assert_eq!(buffer.sent_total(), 10);
        assert_eq!(joined(buffer.retransmit_from(4).unwrap()), b"oworld");
        assert_eq!(buffer.acknowledged(), 4);
        assert_eq!(joined(buffer.retransmit_from(10).unwrap()), b"");
        assert!(buffer.is_empty());
    }

    #[test]
    fn wraps_around_the_ring() {
        let mut buffer = ReplayBuffer::new(4);
        let mut sent = 0u64;
        for round in 0u8..20 {
            buffer.push(&[round, round, round]).unwrap();
            sent += 3;
            assert_eq!(
                joined(buffer.retransmit_from(sent - 2).unwrap()),
                [round, round]
            );
            buffer.acknowledge(sent).unwrap();
        }
        buffer.shrink();
        assert_eq!(buffer.sent_total(), 60);
        assert_eq!(buffer.allocated(), 0);
    }

    #[test]
    fn allocates_lazily_and_copies_across_the_wrap() {
        let mut buffer = ReplayBuffer::new(6);
        assert_eq!(buffer.allocated(), 0);
        buffer.push(b"abcd").unwrap();
        assert!(buffer.allocated() >= 6);
        buffer.acknowledge(3).unwrap();
        buffer.push(b"efghi").unwrap();
        let mut dst = [0u8; 8];
        assert_eq!(buffer.copy_from(4, &mut dst), 5);
        assert_eq!(&dst[..5], b"efghi");
        assert_eq!(buffer.copy_from(3, &mut dst[..2]), 2);
        assert_eq!(&dst[..2], b"de");
        assert_eq!(buffer.copy_from(2, &mut dst), 0, "acknowledged");
        assert_eq!(buffer.copy_from(9, &mut dst), 0, "never sent");
        buffer.acknowledge(9).unwrap();
        buffer.shrink();
        assert_eq!(buffer.allocated(), 0);
    }

    #[test]
    fn a_larger_capacity_is_reserved_at_the_next_push_and_never_more() {
        let mut buffer = ReplayBuffer::new(4);
        buffer.push(b"abc").unwrap();
        let first = buffer.allocated();
        assert!((4..8).contains(&first), "{first}");
        buffer.set_capacity(10);
        assert_eq!(buffer.allocated(), first, "memory follows the next push");
        buffer.push(b"defghij").unwrap();
        assert!((10..20).contains(&buffer.allocated()));
        assert!(matches!(buffer.push(b"k"), Err(Error::TooLarge { .. })));
        buffer.set_capacity(4);
        assert_eq!(buffer.available(), 0, "above the new capacity: no room");
        buffer.acknowledge(7).unwrap();
        assert_eq!(buffer.available(), 1);
        assert_eq!(joined(buffer.retransmit_from(7).unwrap()), b"hij");
    }

    #[test]
    fn impossible_requests_are_errors() {
        let mut buffer = ReplayBuffer::default();
        assert_eq!(buffer.capacity(), DEFAULT_REPLAY_CAPACITY);
        buffer.push(b"abcdef").unwrap();
        buffer.acknowledge(3).unwrap();
        assert!(matches!(buffer.check_retransmit(2), Err(Error::Resume(_))));
        assert_eq!(buffer.check_retransmit(6), Ok(()));
        assert!(matches!(buffer.retransmit_from(2), Err(Error::Resume(_))));
        assert!(matches!(buffer.retransmit_from(7), Err(Error::Resume(_))));
        assert!(matches!(buffer.acknowledge(7), Err(Error::Unexpected(_))));
        assert!(matches!(buffer.acknowledge(1), Err(Error::Unexpected(_))));
        assert_eq!(joined(buffer.retransmit_from(3).unwrap()), b"def");
    }
}
