//! The send window (docs/protocol.md §8.12.2): how many unacknowledged Data bytes a sender
//! keeps, grown with the measured bandwidth-delay product up to a cap, within a memory
//! budget its connections share.

use core::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The largest send window the protocol allows, and the default cap: 16 MiB. A receiver
/// holds up to this much Data its local side has not taken yet (§8.12.2).
pub const MAX_WINDOW: usize = 16 * 1024 * 1024;
/// Window growth (beyond the initial windows) of all connections of a tunnel server, or of
/// a launcher session, together, unless configured otherwise: 256 MiB.
pub const DEFAULT_WINDOW_BUDGET: usize = 256 * 1024 * 1024;

/// Memory for window growth, shared by the connections it is given to (all of one tunnel
/// server, or of one launcher session). Clones share the same budget.
///
/// Only growth beyond each connection's initial window counts: every connection always has
/// its initial window, so a spent budget slows long round trips but stops nothing. A
/// [`WindowBudget::share`] bounds what one principal (a session) takes from it, so one
/// session cannot spend everyone's.
#[derive(Clone)]
pub struct WindowBudget {
    shared: Arc<Budget>,
}

struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// The budget this one is a share of: every byte taken here is taken there too.
    parent: Option<Arc<Budget>>,
}

impl Budget {
    /// Takes up to `wanted` bytes here and in every parent; returns how many were granted.
    fn take(&self, wanted: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        let granted = loop {
            let granted = wanted.min(self.limit.saturating_sub(used));
            if granted == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + granted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break granted,
                Err(now) => used = now,
            }
        };
        let Some(parent) = &self.parent else {
            return granted;
        };
        let from_parent = parent.take(granted);
        self.used
            .fetch_sub(granted - from_parent, Ordering::Relaxed);
        from_parent
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.give_back(bytes);
        }
    }
}

impl WindowBudget {
    /// A budget of `limit` bytes of growth.
    pub fn new(limit: usize) -> Self {
        Self {
            shared: Arc::new(Budget {
                limit,
                used: AtomicUsize::new(0),
                parent: None,
            }),
        }
    }

    /// A share of this budget of at most `limit` bytes (one session's): what its
    /// connections take counts against both, so they never hold more than `limit` of it
    /// together, and never more than this budget has left.
    pub fn share(&self, limit: usize) -> Self {
        Self {
            shared: Arc::new(Budget {
                limit,
                used: AtomicUsize::new(0),
                parent: Some(Arc::clone(&self.shared)),
            }),
        }
    }

    /// The bytes of growth this budget allows.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// The bytes of growth connections hold now.
    pub fn in_use(&self) -> usize {
        self.shared.used.load(Ordering::Relaxed)
    }

    /// An empty reservation from this budget (for a receiver's read-ahead).
    pub fn reservation(&self) -> BudgetReservation {
        BudgetReservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Takes up to `wanted` bytes; returns how many were granted (possibly 0).
    fn take(&self, wanted: usize) -> usize {
        self.shared.take(wanted)
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.shared.give_back(bytes);
        }
    }
}

impl Default for WindowBudget {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_BUDGET)
    }
}

impl PartialEq for WindowBudget {
    /// The same budget (shared), not merely the same limit.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for WindowBudget {}

impl fmt::Debug for WindowBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// Bytes held from a [`WindowBudget`], given back when released or dropped.
#[derive(Debug)]
pub struct BudgetReservation {
    budget: WindowBudget,
    bytes: usize,
}

impl BudgetReservation {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes up to `more` further bytes from the budget; returns how many were granted
    /// (possibly 0: the budget is spent).
    pub fn grow(&mut self, more: usize) -> usize {
        let granted = self.budget.take(more);
        self.bytes += granted;
        granted
    }

    /// Gives every byte held back.
    pub fn release(&mut self) {
        self.budget.give_back(self.bytes);
        self.bytes = 0;
    }
}

impl Drop for BudgetReservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// The offset being timed (§8.12.2 rule 2).
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// The stream offset just after the timed Data.
    offset: u64,
    /// When it was sealed.
    at: Instant,
    /// `acked` then.
    acked: u64,
}

/// One connection's send window: its size, the round trip being timed and the smallest
/// round trip of the current link.
#[derive(Debug)]
pub(crate) struct SendWindow {
    initial: usize,
    max: usize,
    /// The growth beyond `initial`.
    growth: BudgetReservation,
    timing: Option<Timing>,
    min_rtt: Option<Duration>,
}

impl SendWindow {
    /// A window of `initial` bytes that may grow to `max` (at least `initial`, at most
    /// [`MAX_WINDOW`] unless `initial` is larger) with growth taken from `budget`.
    pub(crate) fn new(initial: usize, max: usize, budget: &WindowBudget) -> Self {
        Self {
            initial,
            max: max.min(MAX_WINDOW).max(initial),
            growth: budget.reservation(),
            timing: None,
            min_rtt: None,
        }
    }

    /// The window now: the most unacknowledged bytes the sender keeps.
    pub(crate) fn size(&self) -> usize {
        self.initial + self.growth.bytes()
    }

    /// New Data up to stream offset `offset` was sealed at `now`, with `acked` bytes
    /// acknowledged: times it if it filled the window and no offset is being timed already.
    ///
    /// Only a full window is timed: the Acks of one round trip then cover the whole window,
    /// and only a sender held back by its window needs a larger one. (Timed at the start of
    /// a flight, the first Ack would cover only what the receiver read first.)
    pub(crate) fn on_sent(&mut self, offset: u64, acked: u64, now: Instant) {
        let full = offset.saturating_sub(acked) >= self.size() as u64;
        if full && self.timing.is_none() {
            self.timing = Some(Timing {
                offset,
                at: now,
                acked,
            });
        }
    }

    /// `Ack(acked)` arrived at `now`: ends the timed round trip if it covers its offset,
    /// and grows the window to twice the bandwidth-delay product, within the cap and the
    /// budget.
    pub(crate) fn on_ack(&mut self, acked: u64, now: Instant) {
        let Some(timing) = self.timing.filter(|timing| acked >= timing.offset) else {
            return;
        };
        self.timing = None;
        let rtt = now.saturating_duration_since(timing.at);
        if rtt.is_zero() {
            return;
        }
        let min_rtt = self.min_rtt.map_or(rtt, |min| min.min(rtt));
        self.min_rtt = Some(min_rtt);
        // bdp = rate × min_rtt = delivered × min_rtt / rtt, in integers.
        let delivered = u128::from(acked - timing.acked);
        let bdp = delivered * min_rtt.as_nanos() / rtt.as_nanos();
        let target = usize::try_from(2 * bdp).unwrap_or(usize::MAX).min(self.max);
        if target > self.size() {
            self.growth.grow(target - self.size());
        }
    }

    /// A new link: the path may differ, so round trips are measured afresh.
    pub(crate) fn new_link(&mut self) {
        self.timing = None;
        self.min_rtt = None;
    }

    /// The link is gone: the round trip being timed will not complete.
    pub(crate) fn link_lost(&mut self) {
        self.timing = None;
    }

    /// Back to the initial window (everything acknowledged, the connection quiet): the
    /// growth goes back to the budget.
    pub(crate) fn reset(&mut self) {
        self.growth.release();
        self.timing = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;

    /// A window-limited sender on a path with round trip `rtt`: it sends a whole window,
    /// and the whole window is acknowledged one round trip later. Returns the window after
    /// each round trip.
    fn window_limited(window: &mut SendWindow, rtt: Duration, rounds: usize) -> Vec<usize> {
        let start = Instant::now();
        let mut sent = 0u64;
        (0..rounds)
            .map(|round| {
                let at = start + rtt * u32::try_from(round).unwrap();
                let acked = sent;
                sent += window.size() as u64;
                window.on_sent(sent, acked, at);
                window.on_ack(sent, at + rtt);
                window.size()
            })
            .collect()
    }

    #[test]
    fn a_window_limited_sender_doubles_its_window_per_round_trip_up_to_the_cap() {
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        let sizes = window_limited(&mut window, Duration::from_millis(50), 8);
        assert_eq!(
            sizes,
            [
                512 * KIB,
                MIB,
                2 * MIB,
                4 * MIB,
                8 * MIB,
                16 * MIB,
                16 * MIB,
                16 * MIB
            ]
        );
    }

    #[test]
    fn queueing_stops_the_growth_at_twice_the_bandwidth_delay_product() {
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        let now = Instant::now();
        // The path's own round trip: 50 ms, the whole window acknowledged in it.
        window.on_sent(256 * 1024, 0, now);
        window.on_ack(256 * 1024, now + Duration::from_millis(50));
        assert_eq!(window.size(), 512 * KIB);
        // Now the round trip is twice the path's (a queue formed) for the same delivery
        // rate: 2 × bdp is the window itself, so it stays.
        let later = now + Duration::from_secs(1);
        let acked = 256 * 1024;
        window.on_sent(acked + 512 * 1024, acked, later);
        window.on_ack(acked + 512 * 1024, later + Duration::from_millis(100));
        assert_eq!(window.size(), 512 * KIB);
    }

    #[test]
    fn a_short_round_trip_or_an_idle_sender_does_not_grow_the_window() {
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        // Loopback: 100 µs round trips at 1 GB/s is a 100 kB product.
        let sizes = window_limited(&mut window, Duration::from_micros(100), 1);
        assert_eq!(sizes, [512 * KIB], "a full window per round trip grows it");
        let now = Instant::now();
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        for step in 0..10u32 {
            // 100 kB acknowledged per 100 µs round trip: below half the window.
            let at = now + Duration::from_millis(u64::from(step));
            let acked = u64::from(step) * 100_000;
            window.on_sent(acked + 100_000, acked, at);
            window.on_ack(acked + 100_000, at + Duration::from_micros(100));
        }
        assert_eq!(window.size(), 256 * KIB);
        // A sender with little to send over a long round trip: 10 kB per 50 ms.
        for step in 0..10u32 {
            let at = now + Duration::from_secs(1) + Duration::from_millis(50) * step;
            let acked = 1_000_000 + u64::from(step) * 10_000;
            window.on_sent(acked + 10_000, acked, at);
            window.on_ack(acked + 10_000, at + Duration::from_millis(50));
        }
        assert_eq!(window.size(), 256 * KIB);
    }

    #[test]
    fn only_a_full_window_is_timed_one_offset_at_a_time_until_an_ack_covers_it() {
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        let now = Instant::now();
        // Data that leaves room in the window is not timed: its Ack would come back at once.
        window.on_sent(100, 0, now);
        window.on_ack(100, now + Duration::from_millis(1));
        assert_eq!(window.size(), 256 * KIB);
        // The seal that fills the window is timed; a later one does not restart the timing.
        window.on_sent(100 + 256 * 1024, 100, now + Duration::from_millis(10));
        window.on_sent(
            100 + 272 * 1024,
            16 * 1024 + 100,
            now + Duration::from_millis(20),
        );
        // An Ack below the timed offset ends nothing.
        window.on_ack(99 * 1024, now + Duration::from_millis(30));
        assert_eq!(window.size(), 256 * KIB);
        // The covering Ack: 256 KiB in 50 ms with min_rtt 50 ms → 512 KiB.
        window.on_ack(100 + 256 * 1024, now + Duration::from_millis(60));
        assert_eq!(window.size(), 512 * KIB);
        // Nothing is timed now: a further Ack changes nothing.
        window.on_ack(300 * 1024, now + Duration::from_millis(51));
        assert_eq!(window.size(), 512 * KIB);
    }

    #[test]
    fn a_lost_link_ends_the_sample_and_a_new_link_forgets_the_round_trip() {
        let mut window = SendWindow::new(256 * KIB, 16 * MIB, &WindowBudget::default());
        let now = Instant::now();
        window.on_sent(256 * 1024, 0, now);
        window.link_lost();
        window.on_ack(256 * 1024, now + Duration::from_millis(50));
        assert_eq!(window.size(), 256 * KIB, "the sample ended with the link");
        // A fast first link sets min_rtt at 1 ms; on a new link a 50 ms path counts alone.
        window.on_sent(512 * 1024, 256 * 1024, now);
        window.on_ack(512 * 1024, now + Duration::from_millis(1));
        assert_eq!(window.size(), 512 * KIB);
        window.new_link();
        let later = now + Duration::from_secs(1);
        window.on_sent(1024 * 1024, 512 * 1024, later);
        window.on_ack(1024 * 1024, later + Duration::from_millis(50));
        assert_eq!(window.size(), MIB);
    }

    #[test]
    fn the_budget_bounds_growth_across_connections_and_gets_it_back() {
        let budget = WindowBudget::new(3 * MIB);
        let mut first = SendWindow::new(256 * KIB, 16 * MIB, &budget);
        let mut second = SendWindow::new(256 * KIB, 16 * MIB, &budget);
        window_limited(&mut first, Duration::from_millis(50), 10);
        assert_eq!(first.size(), 256 * KIB + 3 * MIB, "all of the budget");
        assert_eq!(budget.in_use(), 3 * MIB);
        window_limited(&mut second, Duration::from_millis(50), 10);
        assert_eq!(
            second.size(),
            256 * KIB,
            "nothing left: the initial window stays"
        );
        first.reset();
        assert_eq!(first.size(), 256 * KIB);
        assert_eq!(budget.in_use(), 0);
        window_limited(&mut second, Duration::from_millis(50), 3);
        assert_eq!(second.size(), 2 * MIB);
        drop(second);
        assert_eq!(
            budget.in_use(),
            0,
            "a connection's end gives its growth back"
        );
    }

    #[test]
    fn a_reservation_takes_what_is_left_and_gives_it_back_when_dropped() {
        let budget = WindowBudget::new(100);
        let mut first = budget.reservation();
        assert_eq!(first.grow(60), 60);
        let mut second = budget.reservation();
        assert_eq!(second.grow(60), 40, "only what is left");
        assert_eq!(second.grow(1), 0);
        assert_eq!(budget.in_use(), 100);
        first.release();
        assert_eq!(budget.in_use(), 40);
        drop(second);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.limit(), 100);
    }

    #[test]
    fn a_share_bounds_one_session_and_counts_against_the_whole() {
        let server = WindowBudget::new(100);
        let greedy = server.share(60);
        let other = server.share(60);
        let mut first = greedy.reservation();
        let mut second = greedy.reservation();
        assert_eq!(first.grow(50), 50);
        assert_eq!(second.grow(50), 10, "the session's share is spent");
        assert_eq!(server.in_use(), 60);
        let mut third = other.reservation();
        assert_eq!(third.grow(60), 40, "what the server has left");
        assert_eq!(other.in_use(), 40, "a partial grant keeps only what it got");
        drop(first);
        assert_eq!((greedy.in_use(), server.in_use()), (10, 50));
        assert_eq!(third.grow(60), 20, "the rest of its own share");
        drop((second, third));
        assert_eq!(server.in_use(), 0);
    }

    #[test]
    fn no_window_exceeds_the_protocol_maximum() {
        let mut window = SendWindow::new(256 * KIB, 64 * MIB, &WindowBudget::new(usize::MAX));
        let sizes = window_limited(&mut window, Duration::from_millis(50), 12);
        assert_eq!(sizes.last(), Some(&MAX_WINDOW));
    }

    #[test]
    fn the_cap_is_never_below_the_initial_window() {
        let mut window = SendWindow::new(256 * KIB, 64 * KIB, &WindowBudget::default());
        assert_eq!(
            window_limited(&mut window, Duration::from_millis(50), 3),
            [256 * KIB; 3]
        );
    }
}
