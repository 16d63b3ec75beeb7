//! The tunnel server's Prometheus metrics, served by [`crate::ops`] at `/metrics`.

use portcullis_proto::tunnel::Command;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming why something failed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason, a fixed word.
    pub reason: &'static str,
}

/// Labels naming a direction of relayed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_launcher` or `from_launcher`.
    pub direction: &'static str,
}

/// Labels naming a broker call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// `start` or `stop`.
    pub call: &'static str,
    /// `ok`, `refused`, `unavailable` or `bad_answer`.
    pub outcome: &'static str,
}

/// Every metric of one tunnel server (shared through `Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions alive now.
    pub sessions: Gauge,
    /// Sessions opened since start.
    pub sessions_opened: Counter,
    /// Sessions ended since start, by reason (`end_session`, `idle_timeout`, …).
    pub sessions_ended: Family<ReasonLabels, Counter>,
    /// Sessions held by their launcher now (a hold connection up).
    pub holds: Gauge,
    /// Tunnel TCP connections open now (handshaking or relaying).
    pub connections: Gauge,
    /// Handshakes completed, by command (`test`, `open`, `attach`, `resume`, `hold`).
    pub handshakes: Family<ReasonLabels, Counter>,
    /// Handshakes that failed, by reason (the refusal code's name, `timeout`, `io`).
    pub handshake_failures: Family<ReasonLabels, Counter>,
    /// Connections or handshakes turned away by a limit, by limit.
    pub limited: Family<ReasonLabels, Counter>,
    /// Application bytes relayed, by direction (counted once; retransmissions excluded).
    pub bytes: Family<DirectionLabels, Counter>,
    /// Broker call latency in seconds, by call and outcome.
    pub broker_seconds: Family<CallLabels, Histogram>,
    /// `stop` reports given up after every retry.
    pub stop_reports_lost: Counter,
    /// Control-channel requests to the broker, by outcome (`ok`, `failed`).
    pub control_requests: Family<ReasonLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~8 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric under the `portcullis_tunnel_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis_tunnel");
        let metrics = Self {
            sessions: Gauge::default(),
            sessions_opened: Counter::default(),
            sessions_ended: Family::default(),
            holds: Gauge::default(),
            connections: Gauge::default(),
            handshakes: Family::default(),
            handshake_failures: Family::default(),
            limited: Family::default(),
            bytes: Family::default(),
            broker_seconds: Family::new_with_constructor(latency_histogram as fn() -> _),
            stop_reports_lost: Counter::default(),
            control_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register("sessions", "Sessions alive", metrics.sessions.clone());
        registry.register(
            "sessions_opened",
            "Sessions opened (tickets redeemed)",
            metrics.sessions_opened.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by reason",
            metrics.sessions_ended.clone(),
        );
        registry.register(
            "holds",
            "Sessions held by their launcher (a hold connection up)",
            metrics.holds.clone(),
        );
        registry.register(
            "connections",
            "Tunnel TCP connections open",
            metrics.connections.clone(),
        );
        registry.register(
            "handshakes",
            "Handshakes completed, by command",
            metrics.handshakes.clone(),
        );
        registry.register(
            "handshake_failures",
            "Handshakes that failed, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "limited",
            "Connections or handshakes turned away by a limit",
            metrics.limited.clone(),
        );
        registry.register(
            "control_requests",
            "Control-channel requests to the broker, by outcome",
            metrics.control_requests.clone(),
        );
        registry.register(
            "bytes",
            "Application bytes relayed, by direction",
            metrics.bytes.clone(),
        );
        registry.register(
            "broker_call_seconds",
            "Broker call latency, by call and outcome",
            metrics.broker_seconds.clone(),
        );
        registry.register(
            "stop_reports_lost",
            "stop reports given up after every retry",
            metrics.stop_reports_lost.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a completed handshake of `command`.
    pub fn handshake_completed(&self, command: Command) {
        let reason = match command {
            Command::Test => "test",
            Command::Open => "open",
            Command::Attach => "attach",
            Command::Resume => "resume",
            Command::Hold => "hold",
        };
        self.handshakes
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
