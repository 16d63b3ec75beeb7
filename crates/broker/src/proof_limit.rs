//! Budgets of wrong tunnel-handshake proofs (docs/protocol.md §7.3).
//!
//! A wrong proof never burns a ticket: the `Open` hello carries the ticket id in clear
//! when the tunnel connection has no TLS, so burning would let anyone on the path destroy
//! a user's ticket. Instead the broker counts wrong proofs in fixed one-minute windows per
//! principal — source address (an IPv6 address by its /64), ticket, user — and refuses the
//! requests of a principal over its budget without checking their proof. A tunnel server
//! has a budget of all principals together, and beyond it **sheds** only the principals
//! that presented a wrong proof this minute: one principal's flood never refuses everyone
//! else.
//!
//! Memory is bounded: each map holds at most [`MAX_TRACKED`] keys per window; a principal
//! that finds its map full is not tracked (its wrong proofs still count against the tunnel
//! server, whose shedding then refuses untracked sources only when over budget).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use parking_lot::{Mutex, MutexGuard};
use portcullis_proto::SourceKey;

use crate::clock::Millis;
use crate::store::{TunnelServerId, UserId};
use crate::tickets::crypto::TicketHash;

/// The length of one counting window, in milliseconds.
const WINDOW_MS: Millis = 60_000;
/// The most keys tracked per map in one window.
pub const MAX_TRACKED: usize = 10_000;

/// Wrong proofs a principal may present per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofBudgets {
    /// Per source address (an IPv6 address by its /64), across tunnel servers.
    pub per_source: u32,
    /// Per ticket.
    pub per_ticket: u32,
    /// Per user (the ticket's owner).
    pub per_user: u32,
    /// Per tunnel server, all principals together; beyond it the server's requests from
    /// principals with a wrong proof this minute are refused unchecked.
    pub per_server: u32,
}

/// Who presented a `start` with a proof.
#[derive(Clone, Copy, Debug)]
pub struct Principals {
    /// The calling tunnel server.
    pub server: TunnelServerId,
    /// The launcher's address as the tunnel server saw it.
    pub source: IpAddr,
    /// The ticket.
    pub ticket: TicketHash,
    /// The ticket's user.
    pub user: UserId,
}

/// Which budget refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spent {
    /// The source address's.
    Source,
    /// The ticket's.
    Ticket,
    /// The user's.
    User,
    /// The tunnel server's, shedding a principal that misbehaved.
    Server,
}

/// Wrong-proof counters of the current window.
#[derive(Debug)]
pub struct ProofLimiter {
    budgets: ProofBudgets,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Millis,
    servers: HashMap<TunnelServerId, u32>,
    sources: HashMap<SourceKey, u32>,
    tickets: HashMap<TicketHash, u32>,
    users: HashMap<UserId, u32>,
}

fn count<K: Eq + Hash>(map: &HashMap<K, u32>, key: &K) -> u32 {
    map.get(key).copied().unwrap_or(0)
}

fn bump<K: Eq + Hash>(map: &mut HashMap<K, u32>, key: K) {
    let tracked = map.len();
    match map.get_mut(&key) {
        Some(count) => *count = count.saturating_add(1),
        None if tracked < MAX_TRACKED => {
            map.insert(key, 1);
        }
        None => {}
    }
}

impl ProofLimiter {
    /// Counters with these budgets.
    pub fn new(budgets: ProofBudgets) -> Self {
        Self {
            budgets,
            window: Mutex::new(Window::default()),
        }
    }

    /// Before the ticket lookup: whether requests from `source` are still checked at `now`.
    pub fn admits_source(&self, source: IpAddr, now: Millis) -> Result<(), Spent> {
        let window = self.current(now);
        if count(&window.sources, &SourceKey::of(source)) >= self.budgets.per_source {
            return Err(Spent::Source);
        }
        Ok(())
    }

    /// After the ticket lookup: whether this request's proof is still checked at `now`.
    pub fn admits(&self, who: &Principals, now: Millis) -> Result<(), Spent> {
        let window = self.current(now);
        let source = count(&window.sources, &SourceKey::of(who.source));
        if source >= self.budgets.per_source {
            return Err(Spent::Source);
        }
        if count(&window.tickets, &who.ticket) >= self.budgets.per_ticket {
            return Err(Spent::Ticket);
        }
        let user = count(&window.users, &who.user);
        if user >= self.budgets.per_user {
            return Err(Spent::User);
        }
        let server_over = count(&window.servers, &who.server) >= self.budgets.per_server;
        // A source the full map could not track is shed too: it may have misbehaved.
        let source_untracked = window.sources.len() >= MAX_TRACKED
            && !window.sources.contains_key(&SourceKey::of(who.source));
        if server_over && (source > 0 || user > 0 || source_untracked) {
            return Err(Spent::Server);
        }
        Ok(())
    }

    /// Counts one wrong proof against every principal of the request.
    pub fn record_failure(&self, who: &Principals, now: Millis) {
        let mut window = self.current(now);
        let server = window.servers.entry(who.server).or_insert(0);
        *server = server.saturating_add(1);
        bump(&mut window.sources, SourceKey::of(who.source));
        bump(&mut window.tickets, who.ticket);
        bump(&mut window.users, who.user);
    }

    /// The window that holds `now`, reset when the previous one ended: O(1) per request,
    /// no scan.
    fn current(&self, now: Millis) -> MutexGuard<'_, Window> {
        let mut window = self.window.lock();
        if now.saturating_sub(window.started) >= WINDOW_MS || now < window.started {
            window.started = now;
            window.servers.clear();
            window.sources.clear();
            window.tickets.clear();
            window.users.clear();
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

    fn budgets() -> ProofBudgets {
        ProofBudgets {
            per_source: 3,
            per_ticket: 4,
            per_user: 6,
            per_server: 10,
        }
    }

    fn who(source: IpAddr, ticket: u8, user: i64) -> Principals {
        Principals {
            server: TunnelServerId(1),
            source,
            ticket: TicketHash::from_bytes([ticket; TicketHash::LEN]),
            user: UserId(user),
        }
    }

    #[test]
    fn a_source_is_refused_after_its_budget_until_the_window_ends() {
        let limiter = ProofLimiter::new(budgets());
        for ticket in 0..3 {
            let request = who(ip(1), ticket, 1);
            assert_eq!(limiter.admits(&request, 1_000), Ok(()));
            limiter.record_failure(&request, 1_000);
        }
        assert_eq!(limiter.admits_source(ip(1), 2_000), Err(Spent::Source));
        assert_eq!(
            limiter.admits_source(ip(2), 2_000),
            Ok(()),
            "other sources go on"
        );
        assert_eq!(limiter.admits_source(ip(1), 61_000), Ok(()), "a new window");
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let limiter = ProofLimiter::new(budgets());
        for host in 1..=3u16 {
            let source = IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, host]);
            limiter.record_failure(&who(source, host as u8, i64::from(host)), 0);
        }
        let neighbour = IpAddr::from([0x2001, 0xdb8, 1, 2, 9, 9, 9, 9]);
        assert_eq!(limiter.admits_source(neighbour, 1), Err(Spent::Source));
        let other_64 = IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]);
        assert_eq!(limiter.admits_source(other_64, 1), Ok(()));
    }

    #[test]
    fn a_ticket_and_a_user_are_refused_after_their_budgets_from_any_address() {
        let limiter = ProofLimiter::new(budgets());
        for source in 1..=4 {
            limiter.record_failure(&who(ip(source), 7, 1), 0);
        }
        assert_eq!(limiter.admits(&who(ip(50), 7, 1), 1), Err(Spent::Ticket));
        assert_eq!(
            limiter.admits(&who(ip(50), 8, 1), 1),
            Ok(()),
            "her other ticket"
        );
        limiter.record_failure(&who(ip(5), 8, 1), 0);
        limiter.record_failure(&who(ip(6), 8, 1), 0);
        assert_eq!(limiter.admits(&who(ip(50), 9, 1), 1), Err(Spent::User));
        assert_eq!(
            limiter.admits(&who(ip(50), 9, 2), 1),
            Ok(()),
            "another user"
        );
    }

    #[test]
    fn an_exhausted_server_budget_sheds_only_the_principals_that_misbehaved() {
        let limiter = ProofLimiter::new(budgets());
        // Ten users each present one wrong proof from an address of their own.
        for n in 1..=10u8 {
            limiter.record_failure(&who(ip(n), n, i64::from(n)), 0);
        }
        // The server is over its budget: those principals are shed…
        assert_eq!(limiter.admits(&who(ip(1), 99, 50), 1), Err(Spent::Server));
        assert_eq!(limiter.admits(&who(ip(77), 99, 3), 1), Err(Spent::Server));
        // …a user and address with no wrong proof are still checked.
        assert_eq!(limiter.admits(&who(ip(77), 99, 50), 1), Ok(()));
        // Other tunnel servers are not affected.
        let mut elsewhere = who(ip(1), 99, 50);
        elsewhere.server = TunnelServerId(2);
        assert_eq!(limiter.admits(&elsewhere, 1), Ok(()));
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let limiter = ProofLimiter::new(ProofBudgets {
            per_source: 1,
            per_ticket: u32::MAX,
            per_user: u32::MAX,
            per_server: u32::MAX,
        });
        for n in 0..(MAX_TRACKED as u32 + 100) {
            let request = Principals {
                server: TunnelServerId(1),
                source: IpAddr::from(n.to_be_bytes()),
                ticket: TicketHash::from_bytes([0; TicketHash::LEN]),
                user: UserId(1),
            };
            limiter.record_failure(&request, 0);
        }
        let window = limiter.window.lock();
        assert_eq!(window.sources.len(), MAX_TRACKED);
        assert_eq!(window.tickets.len(), 1);
    }
}
