//! Readiness of a service's target: does its TCP port accept a connection?
//!
//! Every ticket exchange checks its service's target. [`ReadinessCache`] remembers a
//! target that answered for [`READY_TTL`], so that a burst of exchanges for one service
//! opens one TCP connection to its target, not one per exchange (each costs the broker a
//! connect and the target an accept, and at a few thousand exchanges per second that is a
//! connection storm on the target). A target that did not answer is never remembered: the
//! launcher's retry, after "Preparing service", probes again.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::clock::Millis;

/// How long a target that answered is taken to be ready without probing it again.
pub const READY_TTL: Duration = Duration::from_secs(2);

/// Above this many remembered targets, stale entries are dropped before adding one.
const PRUNE_ABOVE: usize = 10_000;

/// Tries to open (and immediately closes) a TCP connection to `host:port` within `timeout`.
pub async fn target_answers(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// [`target_answers`], with the targets that answered remembered for a while.
#[derive(Debug)]
pub struct ReadinessCache {
    ttl: Duration,
    /// When each target last answered.
    ready: Mutex<HashMap<(String, u16), Millis>>,
}

impl Default for ReadinessCache {
    fn default() -> Self {
        Self::new(READY_TTL)
    }
}

impl ReadinessCache {
    /// A cache that trusts an answer for `ttl` (zero: probe every time).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ready: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `host:port` accepts connections at `now` (the broker's clock): `true`
    /// without a probe if it answered within the TTL, else the result of a probe bounded
    /// by `timeout`, remembered as of `now`.
    pub async fn target_answers(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
        now: Millis,
    ) -> bool {
        let key = (host.to_owned(), port);
        if self.answered_recently(&key, now) {
            return true;
        }
        let answers = target_answers(host, port, timeout).await;
        self.record(key, answers, now);
        answers
    }

    /// Whether `answered` lies within the TTL before `now`.
    fn fresh(&self, answered: Millis, now: Millis) -> bool {
        let age = u64::try_from(now.saturating_sub(answered)).unwrap_or(0);
        Duration::from_millis(age) < self.ttl
    }

    fn answered_recently(&self, key: &(String, u16), now: Millis) -> bool {
        self.ready
            .lock()
            .get(key)
            .is_some_and(|at| self.fresh(*at, now))
    }

    fn record(&self, key: (String, u16), answers: bool, now: Millis) {
        let mut ready = self.ready.lock();
        if !answers {
            ready.remove(&key);
            return;
        }
        if ready.len() >= PRUNE_ABOVE {
            let ttl = self.ttl;
            ready.retain(|_, at| {
                Duration::from_millis(u64::try_from(now.saturating_sub(*at)).unwrap_or(0)) < ttl
            });
        }
        ready.insert(key, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn open_and_closed_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(target_answers("127.0.0.1", port, PROBE).await);
        drop(listener);
        assert!(!target_answers("127.0.0.1", port, PROBE).await);
    }

    #[tokio::test]
    async fn a_target_that_answered_is_trusted_for_the_ttl_only() {
        let cache = ReadinessCache::new(Duration::from_millis(300));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let start: Millis = 1_000_000;
        assert!(cache.target_answers("127.0.0.1", port, PROBE, start).await);
        drop(listener);
        // Gone, but within the TTL: no probe, still ready.
        assert!(
            cache
                .target_answers("127.0.0.1", port, PROBE, start + 299)
                .await
        );
        // Past the TTL: probed again, and now refused.
        assert!(
            !cache
                .target_answers("127.0.0.1", port, PROBE, start + 300)
                .await
        );
    }

    #[tokio::test]
    async fn a_target_that_did_not_answer_is_probed_again_at_once() {
        let cache = ReadinessCache::default();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        assert!(!cache.target_answers("127.0.0.1", port, PROBE, 0).await);
        // The service comes up: the very next check sees it (a retry must not wait).
        let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(cache.target_answers("127.0.0.1", port, PROBE, 0).await);
    }

    #[test]
    fn targets_are_kept_apart_and_stale_entries_pruned() {
        let cache = ReadinessCache::new(Duration::from_secs(2));
        let start: Millis = 1_000_000;
        let key = |port: u16| ("10.0.0.1".to_owned(), port);
        cache.record(key(1), true, start);
        assert!(cache.answered_recently(&key(1), start + 1_000));
        assert!(!cache.answered_recently(&key(2), start));
        assert!(!cache.answered_recently(&("10.0.0.2".to_owned(), 1), start));
        assert!(!cache.answered_recently(&key(1), start + 2_000));
        // A refusal forgets an earlier answer.
        cache.record(key(1), false, start);
        assert!(!cache.answered_recently(&key(1), start));

        for port in 0..u16::try_from(PRUNE_ABOVE).unwrap() {
            cache.record(key(port), true, start);
        }
        let later = start + 3_000;
        cache.record(key(u16::MAX), true, later);
        assert_eq!(
            cache.ready.lock().len(),
            1,
            "stale entries are pruned when full"
        );
        assert!(cache.answered_recently(&key(u16::MAX), later));
    }
}
