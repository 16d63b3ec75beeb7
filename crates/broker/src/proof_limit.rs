//! Limits on wrong tunnel-handshake proofs (docs/protocol.md §7.3).
//!
//! A wrong proof never burns a ticket: the `Open` hello carries the ticket id in clear
//! when the tunnel connection has no TLS, so burning would let anyone on the path destroy
//! a user's ticket. Instead the broker counts wrong proofs per tunnel server and per
//! (tunnel server, source address) in fixed one-minute windows, and refuses `start`
//! requests unchecked once a budget is spent, until the window ends. Memory is bounded:
//! at most [`MAX_TRACKED_SOURCES`] sources per window; when that many are tracked, new
//! sources count against their tunnel server's budget only.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::{Mutex, MutexGuard};

use crate::clock::Millis;
use crate::store::TunnelServerId;

/// The length of one counting window, in milliseconds.
const WINDOW_MS: Millis = 60_000;
/// The most sources tracked in one window.
pub const MAX_TRACKED_SOURCES: usize = 10_000;

/// Wrong-proof counters of the current window.
#[derive(Debug)]
pub struct ProofLimiter {
    per_source: u32,
    per_server: u32,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Millis,
    servers: HashMap<TunnelServerId, u32>,
    sources: HashMap<(TunnelServerId, IpAddr), u32>,
}

impl ProofLimiter {
    /// Budgets per minute: `per_source` wrong proofs per (tunnel server, source address),
    /// `per_server` per tunnel server.
    pub fn new(per_source: u32, per_server: u32) -> Self {
        Self {
            per_source,
            per_server,
            window: Mutex::new(Window::default()),
        }
    }

    /// Whether `start` requests from `server` for `source` are still checked at `now`.
    pub fn admits(&self, server: TunnelServerId, source: IpAddr, now: Millis) -> bool {
        let window = self.current(now);
        let server_count = window.servers.get(&server).copied().unwrap_or(0);
        let source_count = window.sources.get(&(server, source)).copied().unwrap_or(0);
        server_count < self.per_server && source_count < self.per_source
    }

    /// Counts one wrong proof from `server` for `source` at `now`.
    pub fn record_failure(&self, server: TunnelServerId, source: IpAddr, now: Millis) {
        let mut window = self.current(now);
        let server_count = window.servers.entry(server).or_insert(0);
        *server_count = server_count.saturating_add(1);
        let tracked = window.sources.len();
        match window.sources.get_mut(&(server, source)) {
            Some(count) => *count = count.saturating_add(1),
            None if tracked < MAX_TRACKED_SOURCES => {
                window.sources.insert((server, source), 1);
            }
            None => {}
        }
    }

    /// The window that holds `now`, reset when the previous one ended: O(1) per request,
    /// no scan.
    fn current(&self, now: Millis) -> MutexGuard<'_, Window> {
        let mut window = self.window.lock();
        if now.saturating_sub(window.started) >= WINDOW_MS || now < window.started {
            window.started = now;
            window.servers.clear();
            window.sources.clear();
        }
        window
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_is_refused_after_its_budget_until_the_window_ends() {
        let limiter = ProofLimiter::new(3, 100);
        let server = TunnelServerId(1);
        for _ in 0..3 {
            assert!(limiter.admits(server, ip(1), 1_000));
            limiter.record_failure(server, ip(1), 1_000);
        }
        assert!(!limiter.admits(server, ip(1), 2_000));
        assert!(limiter.admits(server, ip(2), 2_000), "other sources go on");
        assert!(
            limiter.admits(TunnelServerId(2), ip(1), 2_000),
            "other servers too"
        );
        assert!(limiter.admits(server, ip(1), 61_000), "a new window");
    }

    #[test]
    fn a_tunnel_server_is_refused_after_its_budget() {
        let limiter = ProofLimiter::new(100, 5);
        let server = TunnelServerId(7);
        for n in 0..5 {
            limiter.record_failure(server, ip(n), 0);
        }
        assert!(!limiter.admits(server, ip(200), 10));
        assert!(limiter.admits(TunnelServerId(8), ip(200), 10));
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let limiter = ProofLimiter::new(1, u32::MAX);
        let server = TunnelServerId(1);
        for n in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            limiter.record_failure(server, IpAddr::from(n.to_be_bytes()), 0);
        }
        let window = limiter.window.lock();
        assert_eq!(window.sources.len(), MAX_TRACKED_SOURCES);
    }
}
