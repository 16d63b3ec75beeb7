//! Login rate limiting: a fixed budget of attempts per key (user name or client address)
//! per minute, in memory. Several brokers each keep their own counters, which multiplies
//! the budget by the number of brokers: acceptable for slowing down password guessing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which attempts are counted.
const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked keys, expired entries are dropped before inserting.
const PRUNE_ABOVE: usize = 10_000;

/// Counts attempts per key in a sliding one-minute window.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    attempts: Mutex<HashMap<K, Vec<Instant>>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter that admits `per_minute` attempts per key per minute (0 disables it).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt at `now` and says whether it is within the budget. When it is
    /// not, returns how long until the oldest attempt leaves the window.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut attempts = self
            .attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if attempts.len() > PRUNE_ABOVE {
            attempts.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < WINDOW));
        }
        let times = attempts.entry(key.clone()).or_default();
        times.retain(|t| now.duration_since(*t) < WINDOW);
        if times.len() >= self.per_minute as usize {
            let oldest = times.first().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push(now);
        Ok(())
    }

    /// Forgets the attempts of `key` (after a successful login).
    pub fn reset(&self, key: &K) {
        let mut attempts = self
            .attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        attempts.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_budget_then_refuses_until_the_window_moves() {
        let limiter = RateLimiter::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&"alice", start).is_ok());
        }
        let wait = limiter
            .check(&"alice", start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.check(&"bob", start).is_ok());
        assert!(
            limiter
                .check(&"alice", start + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn reset_and_disabled() {
        let limiter = RateLimiter::new(1);
        let now = Instant::now();
        assert!(limiter.check(&1, now).is_ok());
        assert!(limiter.check(&1, now).is_err());
        limiter.reset(&1);
        assert!(limiter.check(&1, now).is_ok());
        let off = RateLimiter::new(0);
        for _ in 0..100 {
            assert!(off.check(&1, now).is_ok());
        }
    }
}
