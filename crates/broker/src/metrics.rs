//! Prometheus metrics, kept in a registry owned by the broker's state (no global recorder,
//! so two brokers in one process keep separate counts).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a ticket request or redemption was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The ticket is unknown, used or expired.
    UnknownTicket,
    /// The launcher is older than the required version.
    VersionTooOld,
    /// The request body was malformed.
    InvalidRequest,
    /// The service or the user's right to it is gone.
    Forbidden,
    /// The launcher cannot use this service (capabilities).
    UnsupportedClient,
    /// The target is not ready yet (a retryable answer).
    Preparing,
    /// The tunnel-server token is unknown.
    BadToken,
    /// The tunnel handshake proof did not verify.
    BadProof,
    /// Too many wrong proofs from the tunnel server or for the source address lately.
    ProofLimit,
    /// An internal error.
    Internal,
}

impl RefusalReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownTicket => "unknown_ticket",
            Self::VersionTooOld => "version_too_old",
            Self::InvalidRequest => "invalid_request",
            Self::Forbidden => "forbidden",
            Self::UnsupportedClient => "unsupported_client",
            Self::Preparing => "preparing",
            Self::BadToken => "bad_token",
            Self::BadProof => "bad_proof",
            Self::ProofLimit => "proof_limit",
            Self::Internal => "internal",
        }
    }
}

impl EncodeLabelValue for RefusalReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), core::fmt::Error> {
        core::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of the refusal counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why.
    pub reason: RefusalReason,
}

/// Labels of the request latency histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route pattern (never a concrete path: paths hold ticket ids).
    pub route: String,
    /// The response status code.
    pub status: u16,
}

/// Labels of the swept-rows counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TableLabels {
    /// The table rows were deleted from.
    pub table: &'static str,
}

/// What the store reports: how it commits exchanges and what its sweeper removes. Cheap to
/// clone (the metrics inside are shared), so the store and its background tasks each hold
/// one.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Exchanges committed per group-commit transaction.
    pub commit_batch_size: Histogram,
    /// Rows the sweeper deleted, by table.
    pub swept_rows: Family<TableLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            // 1 to 128 (the largest batch).
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            swept_rows: Family::default(),
        }
    }
}

/// What the server reports about load. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Sign-ins answered 503 because too many password checks were running or waiting.
    pub logins_busy: Counter,
    /// Connections closed as soon as accepted: `limits.max_connections` were open.
    pub refused: Counter,
}

/// The broker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client tickets issued by the portal / user API.
    pub tickets_issued: Counter,
    /// Client tickets exchanged successfully.
    pub tickets_exchanged: Counter,
    /// Client ticket requests refused, by reason.
    pub tickets_refused: Family<RefusalLabels, Counter>,
    /// Tunnel tickets redeemed by tunnel servers.
    pub redemptions: Counter,
    /// Tunnel ticket redemptions refused, by reason.
    pub redemptions_refused: Family<RefusalLabels, Counter>,
    /// Request latency in seconds, by route and status.
    pub request_seconds: Family<RouteLabels, Histogram>,
    /// The store's group commits and sweeps.
    pub store: StoreMetrics,
    /// Busy sign-ins and refused connections.
    pub connections: ConnectionMetrics,
    /// The audit log's export.
    pub export: ExportMetrics,
}

/// The counters of the audit export (`[audit] export`).
#[derive(Clone, Debug, Default)]
pub struct ExportMetrics {
    /// Events written.
    pub exported: Counter,
    /// Events dropped because the export's queue was full.
    pub dropped: Counter,
    /// Events the destination did not take (a write failed).
    pub failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under the `portcullis_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let tickets_issued = Counter::default();
        let tickets_exchanged = Counter::default();
        let tickets_refused = Family::<RefusalLabels, Counter>::default();
        let redemptions = Counter::default();
        let redemptions_refused = Family::<RefusalLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram>::new_with_constructor(request_histogram as fn() -> _);
        registry.register(
            "tickets_issued",
            "Client tickets issued",
            tickets_issued.clone(),
        );
        registry.register(
            "tickets_exchanged",
            "Client tickets exchanged for an encrypted payload",
            tickets_exchanged.clone(),
        );
        registry.register(
            "tickets_refused",
            "Client ticket requests refused, by reason",
            tickets_refused.clone(),
        );
        registry.register(
            "tunnel_redemptions",
            "Tunnel tickets redeemed by tunnel servers",
            redemptions.clone(),
        );
        registry.register(
            "tunnel_redemptions_refused",
            "Tunnel ticket redemptions refused, by reason",
            redemptions_refused.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            request_seconds.clone(),
        );
        let store = StoreMetrics::default();
        registry.register(
            "exchange_commit_batch_size",
            "Ticket exchanges committed together in one database transaction",
            store.commit_batch_size.clone(),
        );
        registry.register(
            "swept_rows",
            "Expired rows deleted by the sweeper, by table",
            store.swept_rows.clone(),
        );
        let connections = ConnectionMetrics::default();
        registry.register(
            "logins_busy",
            "Sign-ins answered 503: too many password checks running or waiting",
            connections.logins_busy.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because limits.max_connections were open",
            connections.refused.clone(),
        );
        let export = ExportMetrics::default();
        registry.register(
            "audit_exported",
            "Audit events written to the export",
            export.exported.clone(),
        );
        registry.register(
            "audit_export_dropped",
            "Audit events dropped from the export: its queue was full (the database keeps them)",
            export.dropped.clone(),
        );
        registry.register(
            "audit_export_failed",
            "Audit events the export's destination did not take (the database keeps them)",
            export.failed.clone(),
        );
        Self {
            registry,
            connections,
            export,
            tickets_issued,
            tickets_exchanged,
            tickets_refused,
            redemptions,
            redemptions_refused,
            request_seconds,
            store,
        }
    }

    /// Counts a refused client ticket request.
    pub fn ticket_refused(&self, reason: RefusalReason) {
        self.tickets_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Counts a refused redemption.
    pub fn redemption_refused(&self, reason: RefusalReason) {
        self.redemptions_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn request_histogram() -> Histogram {
    // 0.5 ms to about 4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let metrics = Metrics::new();
        metrics.tickets_issued.inc();
        metrics.ticket_refused(RefusalReason::VersionTooOld);
        metrics
            .request_seconds
            .get_or_create(&RouteLabels {
                route: "/health".into(),
                status: 200,
            })
            .observe(0.001);
        let text = metrics.render();
        assert!(text.contains("portcullis_tickets_issued_total 1"), "{text}");
        assert!(text.contains("reason=\"version_too_old\""), "{text}");
        assert!(
            text.contains("portcullis_http_request_duration_seconds_bucket"),
            "{text}"
        );
        metrics.store.commit_batch_size.observe(3.0);
        metrics
            .store
            .swept_rows
            .get_or_create(&TableLabels {
                table: "client_tickets",
            })
            .inc_by(5);
        let text = metrics.render();
        assert!(
            text.contains("portcullis_exchange_commit_batch_size_count 1"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_swept_rows_total{table=\"client_tickets\"} 5"),
            "{text}"
        );
    }
}
