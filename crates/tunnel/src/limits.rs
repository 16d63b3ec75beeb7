//! What one source address, and everyone together, can make the tunnel server hold
//! (docs/protocol.md §8.15): open TCP connections, handshakes per second, `Open`
//! handshakes waiting on the broker.
//!
//! A source is the peer's address (or the PROXY v2 source); IPv6 addresses count by their
//! /64, which one host typically owns whole. Permits release their count on drop, so every
//! exit path gives back what it took.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use portcullis_proto::SourceKey;

use crate::config::TunnelLimits;

/// Why a connection or handshake was turned away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// `limits.max_connections` reached.
    Connections,
    /// `limits.max_connections_per_source` reached.
    SourceConnections,
    /// `limits.handshakes_per_second_per_source` exceeded.
    HandshakeRate,
    /// `limits.max_pending_opens` reached.
    PendingOpens,
    /// `limits.max_pending_opens_per_source` reached.
    SourcePendingOpens,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::SourceConnections => "source_connections",
            Self::HandshakeRate => "handshake_rate",
            Self::PendingOpens => "pending_opens",
            Self::SourcePendingOpens => "source_pending_opens",
        }
    }
}

#[derive(Debug)]
struct Source {
    connections: usize,
    pending_opens: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
struct Counters {
    connections: usize,
    pending_opens: usize,
    sources: HashMap<SourceKey, Source>,
    /// Above this many tracked sources, idle ones with a full bucket are pruned; then it
    /// doubles past what remains, so pruning is amortized O(1) per connection.
    prune_above: usize,
}

/// The first pruning threshold.
const FIRST_PRUNE: usize = 1024;

/// The counters, shared by every connection of one server.
#[derive(Debug)]
pub struct Limits {
    config: TunnelLimits,
    counters: Mutex<Counters>,
}

impl Limits {
    /// Limits as configured.
    pub fn new(config: TunnelLimits) -> Arc<Self> {
        Arc::new(Self {
            config,
            counters: Mutex::new(Counters {
                connections: 0,
                pending_opens: 0,
                sources: HashMap::new(),
                prune_above: FIRST_PRUNE,
            }),
        })
    }

    /// Admits a new TCP connection from `source`, or says which limit it hit. `None`
    /// counts it in the total only, until [`Limits::attribute`] names its source (behind
    /// a PROXY v2 load balancer, whose own address must not count as one source).
    pub fn admit_connection(
        self: &Arc<Self>,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<ConnectionPermit, Refusal> {
        let mut counters = self.lock();
        if counters.connections >= self.config.max_connections {
            return Err(Refusal::Connections);
        }
        let key = source.map(SourceKey::of);
        if let Some(key) = key {
            self.count_source(&mut counters, key, now)?;
        }
        counters.connections += 1;
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            key,
        })
    }

    /// Names the source of a connection admitted without one (the PROXY v2 source), and
    /// applies that source's connection cap.
    pub fn attribute(
        &self,
        permit: &mut ConnectionPermit,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        let key = SourceKey::of(source);
        if permit.key == Some(key) {
            return Ok(());
        }
        let mut counters = self.lock();
        self.count_source(&mut counters, key, now)?;
        if let Some(old) = permit.key.replace(key) {
            self.forget_connection(&mut counters, old);
        }
        Ok(())
    }

    /// Counts one connection against `key`'s cap.
    fn count_source(
        &self,
        counters: &mut Counters,
        key: SourceKey,
        now: Instant,
    ) -> Result<(), Refusal> {
        let burst = self.burst();
        if counters.sources.len() > counters.prune_above {
            let rate = f64::from(self.config.handshakes_per_second_per_source);
            counters.sources.retain(|_, source| {
                let refill = now.saturating_duration_since(source.refilled).as_secs_f64() * rate;
                source.connections > 0 || source.pending_opens > 0 || source.tokens + refill < burst
            });
            counters.prune_above = FIRST_PRUNE.max(2 * counters.sources.len());
        }
        let entry = counters.sources.entry(key).or_insert(Source {
            connections: 0,
            pending_opens: 0,
            tokens: burst,
            refilled: now,
        });
        if entry.connections >= self.config.max_connections_per_source {
            return Err(Refusal::SourceConnections);
        }
        entry.connections += 1;
        Ok(())
    }

    /// Takes one handshake from the source's token bucket (`handshakes_per_second_per_source`
    /// per second, a burst of twice that).
    pub fn admit_handshake(&self, permit: &ConnectionPermit, now: Instant) -> Result<(), Refusal> {
        let rate = f64::from(self.config.handshakes_per_second_per_source);
        let burst = self.burst();
        let mut counters = self.lock();
        let Some(source) = permit.key.and_then(|key| counters.sources.get_mut(&key)) else {
            return Err(Refusal::HandshakeRate);
        };
        let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
        source.tokens = (source.tokens + elapsed * rate).min(burst);
        source.refilled = now;
        if source.tokens < 1.0 {
            return Err(Refusal::HandshakeRate);
        }
        source.tokens -= 1.0;
        Ok(())
    }

    /// Admits one `Open` handshake to wait on the broker.
    pub fn admit_open(self: &Arc<Self>, permit: &ConnectionPermit) -> Result<OpenPermit, Refusal> {
        let mut counters = self.lock();
        if counters.pending_opens >= self.config.max_pending_opens {
            return Err(Refusal::PendingOpens);
        }
        let Some(key) = permit.key else {
            return Err(Refusal::SourcePendingOpens);
        };
        let Some(source) = counters.sources.get_mut(&key) else {
            return Err(Refusal::SourcePendingOpens);
        };
        if source.pending_opens >= self.config.max_pending_opens_per_source {
            return Err(Refusal::SourcePendingOpens);
        }
        source.pending_opens += 1;
        counters.pending_opens += 1;
        Ok(OpenPermit {
            limits: Arc::clone(self),
            key,
        })
    }

    /// TCP connections open now.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Sources tracked now (bounded by the open connections).
    pub fn tracked_sources(&self) -> usize {
        self.lock().sources.len()
    }

    fn burst(&self) -> f64 {
        2.0 * f64::from(self.config.handshakes_per_second_per_source)
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release_connection(&self, key: Option<SourceKey>) {
        let mut counters = self.lock();
        counters.connections = counters.connections.saturating_sub(1);
        if let Some(key) = key {
            self.forget_connection(&mut counters, key);
        }
    }

    fn release_open(&self, key: SourceKey) {
        let mut counters = self.lock();
        counters.pending_opens = counters.pending_opens.saturating_sub(1);
        if let Some(source) = counters.sources.get_mut(&key) {
            source.pending_opens = source.pending_opens.saturating_sub(1);
        }
        self.forget_if_idle(&mut counters, key);
    }

    fn forget_connection(&self, counters: &mut Counters, key: SourceKey) {
        if let Some(source) = counters.sources.get_mut(&key) {
            source.connections = source.connections.saturating_sub(1);
        }
        self.forget_if_idle(counters, key);
    }

    /// A source with nothing open and a full bucket is forgotten at once; one that spent
    /// handshakes lately is kept (and pruned later), so reconnecting does not refill its
    /// bucket.
    fn forget_if_idle(&self, counters: &mut Counters, key: SourceKey) {
        let idle = counters.sources.get(&key).is_some_and(|source| {
            source.connections == 0 && source.pending_opens == 0 && source.tokens >= self.burst()
        });
        if idle {
            counters.sources.remove(&key);
        }
    }
}

/// One open TCP connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<Limits>,
    key: Option<SourceKey>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.release_connection(self.key);
    }
}

/// One `Open` waiting on the broker, counted until dropped.
#[derive(Debug)]
pub struct OpenPermit {
    limits: Arc<Limits>,
    key: SourceKey,
}

impl Drop for OpenPermit {
    fn drop(&mut self) {
        self.limits.release_open(self.key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> Arc<Limits> {
        Limits::new(TunnelLimits {
            max_connections: 4,
            max_connections_per_source: 2,
            handshakes_per_second_per_source: 2,
            max_pending_opens: 3,
            max_pending_opens_per_source: 1,
            ..TunnelLimits::default()
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connections_are_capped_per_source_and_in_total_and_released_on_drop() {
        let limits = limits();
        let now = Instant::now();
        let a1 = limits.admit_connection(Some(ip("192.0.2.1")), now).unwrap();
        let _a2 = limits.admit_connection(Some(ip("192.0.2.1")), now).unwrap();
        assert_eq!(
            limits
                .admit_connection(Some(ip("192.0.2.1")), now)
                .unwrap_err(),
            Refusal::SourceConnections
        );
        let _b1 = limits.admit_connection(Some(ip("192.0.2.2")), now).unwrap();
        let _b2 = limits.admit_connection(Some(ip("192.0.2.2")), now).unwrap();
        assert_eq!(
            limits
                .admit_connection(Some(ip("192.0.2.3")), now)
                .unwrap_err(),
            Refusal::Connections
        );
        drop(a1);
        let _c = limits.admit_connection(Some(ip("192.0.2.3")), now).unwrap();
        assert_eq!(limits.connections(), 4);
    }

    #[test]
    fn handshakes_follow_a_token_bucket() {
        let limits = limits();
        let start = Instant::now();
        let permit = limits
            .admit_connection(Some(ip("192.0.2.1")), start)
            .unwrap();
        for _ in 0..4 {
            limits.admit_handshake(&permit, start).unwrap();
        }
        assert_eq!(
            limits.admit_handshake(&permit, start).unwrap_err(),
            Refusal::HandshakeRate
        );
        // Two per second refill.
        let later = start + Duration::from_millis(500);
        limits.admit_handshake(&permit, later).unwrap();
        assert!(limits.admit_handshake(&permit, later).is_err());
    }

    #[test]
    fn pending_opens_are_capped_and_sources_forgotten_when_idle() {
        let limits = limits();
        let now = Instant::now();
        let a = limits.admit_connection(Some(ip("192.0.2.1")), now).unwrap();
        let b = limits.admit_connection(Some(ip("192.0.2.2")), now).unwrap();
        let open_a = limits.admit_open(&a).unwrap();
        assert_eq!(
            limits.admit_open(&a).unwrap_err(),
            Refusal::SourcePendingOpens
        );
        let _open_b = limits.admit_open(&b).unwrap();
        drop(open_a);
        let _again = limits.admit_open(&a).unwrap();
        drop((a, b, _again, _open_b));
        assert_eq!(limits.tracked_sources(), 0);
        assert_eq!(limits.connections(), 0);
    }

    #[test]
    fn a_connection_behind_a_balancer_counts_for_its_real_source() {
        let limits = limits();
        let now = Instant::now();
        // The balancer's connections count in the total only...
        let mut permits: Vec<ConnectionPermit> = (0..3)
            .map(|_| limits.admit_connection(None, now).unwrap())
            .collect();
        // ...until the PROXY header names their sources.
        limits
            .attribute(&mut permits[0], ip("192.0.2.1"), now)
            .unwrap();
        limits
            .attribute(&mut permits[1], ip("192.0.2.1"), now)
            .unwrap();
        assert_eq!(
            limits
                .attribute(&mut permits[2], ip("192.0.2.1"), now)
                .unwrap_err(),
            Refusal::SourceConnections
        );
        limits
            .attribute(&mut permits[2], ip("192.0.2.2"), now)
            .unwrap();
        drop(permits);
        assert_eq!((limits.connections(), limits.tracked_sources()), (0, 0));
    }

    #[test]
    fn reconnecting_does_not_refill_the_bucket_and_idle_sources_are_pruned() {
        let limits = limits();
        let start = Instant::now();
        for _ in 0..4 {
            let permit = limits
                .admit_connection(Some(ip("192.0.2.1")), start)
                .unwrap();
            limits.admit_handshake(&permit, start).unwrap();
        }
        let permit = limits
            .admit_connection(Some(ip("192.0.2.1")), start)
            .unwrap();
        assert_eq!(
            limits.admit_handshake(&permit, start).unwrap_err(),
            Refusal::HandshakeRate
        );
        drop(permit);
        // Many sources come and go; the map stays bounded.
        let later = start + Duration::from_secs(10);
        for n in 0..5_000u32 {
            let now = later + Duration::from_millis(u64::from(n));
            let permit = limits
                .admit_connection(Some(IpAddr::from((0x0a00_0000 + n).to_be_bytes())), now)
                .unwrap();
            limits.admit_handshake(&permit, now).unwrap();
        }
        assert!(
            limits.tracked_sources() <= 2 * FIRST_PRUNE + 1,
            "{}",
            limits.tracked_sources()
        );
    }
}
