//! What every connection of one tunnel server shares: configuration, broker client, TLS,
//! limits, metrics and the live sessions. The server builds it once; the modules that serve
//! connections only read it (so none of them depends on the server module).

use std::sync::Arc;

use portcullis_proto::tunnel::{ConnectionConfig, WindowBudget};

use crate::broker::BrokerClient;
use crate::config::TunnelConfig;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::session::{SessionEnv, SessionTable};

/// What every connection of one server shares.
pub struct Shared {
    /// The configuration.
    pub config: TunnelConfig,
    /// The broker's tunnel-server API.
    pub broker: BrokerClient,
    /// TLS, when configured.
    pub tls: Option<crate::tls::TlsAcceptor>,
    /// Connection and handshake limits.
    pub limits: Arc<Limits>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions.
    pub sessions: Arc<SessionTable>,
    /// What sessions need at their end.
    pub env: Arc<SessionEnv>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.config.listen)
            .field("tls", &self.tls.is_some())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether `peer` may send a PROXY v2 header (`proxy_protocol_trusted`).
    pub fn trusts_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.config
            .proxy_protocol_trusted
            .iter()
            .any(|network| network.contains(peer))
    }

    /// The record layer's settings for a new connection of a session whose share of the
    /// window budget is `budget`.
    pub fn connection_config(&self, budget: &WindowBudget) -> ConnectionConfig {
        ConnectionConfig {
            replay_capacity: self.config.limits.replay_buffer_bytes,
            max_window: self.config.limits.max_window_bytes,
            window_budget: budget.clone(),
            data_record_size: self.config.limits.record_size,
            record_limit: portcullis_proto::tunnel::DEFAULT_RECORD_LIMIT,
        }
    }
}
