//! Login rate limiting: a fixed budget of attempts per key (user name or client network)
//! per minute, and at most [`MAX_IN_FLIGHT_PER_KEY`] attempts of one key being checked at
//! once, in memory. Several brokers each keep their own counters, which multiplies the
//! budget by the number of brokers: acceptable for slowing down password guessing.
//!
//! The map is capped at [`MAX_KEYS`] keys: when it is full, expired keys are dropped (a
//! scan at most once per `PRUNE_EVERY`, never one per request), and while it stays full
//! new keys are refused. Client addresses are keyed by
//! [`SourceKey`](portcullis_proto::SourceKey): an IPv6 host usually owns a whole /64.
//!
//! Time is the broker's clock (`AppState::now`), as for tickets and the sweeper, so tests
//! move it instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Millis;

/// The window over which attempts are counted.
const WINDOW: Duration = Duration::from_secs(60);
/// Attempts of one key checked at the same time, at most; more are refused at once.
pub const MAX_IN_FLIGHT_PER_KEY: u32 = 1;
/// Keys tracked at most.
pub const MAX_KEYS: usize = 100_000;
/// Shortest interval between two scans for expired keys.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// What a refused newcomer is told to wait when the map is full.
const FULL_RETRY: Duration = Duration::from_secs(5);

/// A wait as whole seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The time from `then` to `now` (zero if the clock went back).
fn elapsed(now: Millis, then: Millis) -> Duration {
    Duration::from_millis(u64::try_from(now.saturating_sub(then)).unwrap_or(0))
}

#[derive(Debug, Default)]
struct Entry {
    /// Arrival times within the window, oldest first.
    times: VecDeque<Millis>,
    /// Attempts admitted and not finished.
    in_flight: u32,
}

#[derive(Debug)]
struct Keys<K> {
    entries: HashMap<K, Entry>,
    last_prune: Option<Millis>,
}

/// Counts attempts per key in a sliding one-minute window, and the attempts in flight.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    max_keys: usize,
    keys: Mutex<Keys<K>>,
}

/// An admitted attempt: counted in flight until dropped.
#[derive(Debug)]
#[must_use = "the attempt is in flight until this is dropped"]
pub struct Attempt<'a, K: Eq + Hash + Clone> {
    limiter: &'a RateLimiter<K>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone> Drop for Attempt<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut keys = self.limiter.keys.lock();
            if let Some(entry) = keys.entries.get_mut(&key) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter that admits `per_minute` attempts per key per minute (0 disables it).
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_KEYS)
    }

    /// A limiter tracking at most `max_keys` keys (tests use a small number).
    pub fn with_capacity(per_minute: u32, max_keys: usize) -> Self {
        Self {
            per_minute,
            max_keys,
            keys: Mutex::new(Keys {
                entries: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    /// Records an attempt at `now` and says whether it is admitted: within the budget,
    /// with fewer than [`MAX_IN_FLIGHT_PER_KEY`] of the key's attempts in flight, and room
    /// for the key. When it is not, returns how long to wait before trying again.
    pub fn check(&self, key: &K, now: Millis) -> Result<Attempt<'_, K>, Duration> {
        if self.per_minute == 0 {
            return Ok(Attempt {
                limiter: self,
                key: None,
            });
        }
        let mut keys = self.keys.lock();
        if keys.entries.len() >= self.max_keys && !keys.entries.contains_key(key) {
            let due = keys
                .last_prune
                .is_none_or(|last| elapsed(now, last) >= PRUNE_EVERY);
            if due {
                keys.last_prune = Some(now);
                keys.entries.retain(|_, entry| {
                    entry.in_flight > 0
                        || entry
                            .times
                            .back()
                            .is_some_and(|t| elapsed(now, *t) < WINDOW)
                });
            }
            if keys.entries.len() >= self.max_keys {
                return Err(FULL_RETRY);
            }
        }
        let entry = keys.entries.entry(key.clone()).or_default();
        while entry
            .times
            .front()
            .is_some_and(|t| elapsed(now, *t) >= WINDOW)
        {
            entry.times.pop_front();
        }
        if entry.times.len() >= self.per_minute as usize {
            let oldest = entry.times.front().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(elapsed(now, oldest)));
        }
        if entry.in_flight >= MAX_IN_FLIGHT_PER_KEY {
            return Err(Duration::from_secs(1));
        }
        entry.times.push_back(now);
        entry.in_flight += 1;
        Ok(Attempt {
            limiter: self,
            key: Some(key.clone()),
        })
    }

    /// Forgets the attempts of `key` (after a successful login); its attempts still in
    /// flight stay counted.
    pub fn reset(&self, key: &K) {
        let mut keys = self.keys.lock();
        if let Some(entry) = keys.entries.get_mut(key) {
            entry.times.clear();
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.keys.lock().entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_budget_then_refuses_until_the_window_moves() {
        let limiter = RateLimiter::new(3);
        let start = 1_000_000;
        for _ in 0..3 {
            drop(limiter.check(&"alice", start).unwrap());
        }
        let wait = limiter.check(&"alice", start + 10_000).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.check(&"bob", start).is_ok());
        assert!(limiter.check(&"alice", start + 61_000).is_ok());
    }

    #[test]
    fn reset_and_disabled() {
        let limiter = RateLimiter::new(1);
        let now = 1_000_000;
        drop(limiter.check(&1, now).unwrap());
        assert!(limiter.check(&1, now).is_err());
        limiter.reset(&1);
        assert!(limiter.check(&1, now).is_ok());
        let off = RateLimiter::new(0);
        let held: Vec<_> = (0..100).map(|_| off.check(&1, now).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn attempts_in_flight_are_limited_per_key() {
        let limiter = RateLimiter::new(20);
        let now = 1_000_000;
        let first = limiter.check(&"ip", now).unwrap();
        assert_eq!(
            limiter.check(&"ip", now).unwrap_err(),
            Duration::from_secs(1)
        );
        assert!(limiter.check(&"other", now).is_ok());
        drop(first);
        drop(limiter.check(&"ip", now).unwrap());
    }

    #[test]
    fn the_map_is_capped_and_pruned_at_most_once_a_second() {
        let limiter = RateLimiter::with_capacity(5, 3);
        let start = 1_000_000;
        for key in 0..3 {
            drop(limiter.check(&key, start).unwrap());
        }
        // Full of live keys: a newcomer is refused, known keys still count.
        assert!(limiter.check(&3, start).is_err());
        assert!(limiter.check(&0, start).is_ok());
        // A minute later the old keys have expired, but the last scan was under a second
        // ago only if one ran: the first refusal after a second scans and admits.
        let later = start + 61_000;
        assert!(limiter.check(&4, later).is_ok());
        assert_eq!(limiter.len(), 1);
        // Keys with attempts in flight are never dropped.
        let held = limiter.check(&5, later).unwrap();
        let _also = limiter.check(&6, later).unwrap();
        let much_later = later + 120_000;
        drop(limiter.check(&7, much_later).unwrap());
        assert!(limiter.len() <= 3);
        drop(held);
    }
}
