//! Time, for everything in the broker that decides by it: tickets, login limits, proof
//! budgets, the readiness cache, sessions and the sweeper. The ground floor of the crate: it
//! uses no other module, and every module takes the time from here.
//!
//! Decisions take `now` as an argument ([`Millis`]); whoever holds the state reads it from
//! the broker's [`Clock`], which tests replace to move time without sleeping.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the broker's (and its database's) notion of time.
pub type Millis = i64;

/// Where "now" comes from. The server uses [`system_clock`]; tests may move time.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock in Unix milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| unix_millis(SystemTime::now()))
}

/// Milliseconds since the Unix epoch of `time` (negative before 1970, saturating).
pub fn unix_millis(time: SystemTime) -> Millis {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unix_millis_both_sides_of_the_epoch() {
        assert_eq!(unix_millis(UNIX_EPOCH), 0);
        assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_millis(20)), -20);
    }

    #[test]
    fn the_system_clock_is_near_now() {
        let before = unix_millis(SystemTime::now());
        let now = system_clock()();
        assert!(now >= before && now - before < 60_000, "{before} {now}");
    }
}
