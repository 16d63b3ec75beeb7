//! The tunnel server's listeners, its shared state and its two-phase shutdown.
//!
//! Each accepted TCP connection is admitted by [`Limits`] (total and per source) and runs
//! [`handshake::serve`] in its own task. Shutdown stops accepting, lets live sessions run
//! for the grace period, then ends the rest with `Error(ShuttingDown)`, and returns once
//! every session's `stop` report was sent (or given up and logged).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use portcullis_proto::tunnel::WindowBudget;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{BrokerClient, BrokerError};
use crate::config::{BrokerToken, TunnelConfig};
use crate::handshake;
use crate::limits::Limits;
use crate::metrics::{Metrics, ReasonLabels};
use crate::session::{EndReason, SessionEnv, SessionTable};
pub use crate::shared::Shared;
use portcullis_link::relay;

/// How long a session waits for its connection drivers after its end.
const DRIVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The broker client could not be set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A running tunnel server.
#[derive(Debug)]
pub struct RunningTunnel {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    ops_addr: Option<SocketAddr>,
    stop_accepting: CancellationToken,
    tasks: TaskTracker,
}

/// Binds the listeners (and the ops listener), and starts accepting.
pub async fn start(config: TunnelConfig, token: BrokerToken) -> Result<RunningTunnel, StartError> {
    let broker = BrokerClient::new(&config.broker, &token, config.timeouts.broker_call())?;
    let tls = crate::tls::TlsAcceptor::new(&config.tls)?;
    let metrics = Arc::new(Metrics::new());
    let env = Arc::new(SessionEnv {
        broker: broker.clone(),
        metrics: Arc::clone(&metrics),
        idle: config.timeouts.idle(),
        max_duration: config.timeouts.max_session(),
        drain: DRIVER_DRAIN,
        window_budget: WindowBudget::new(config.limits.window_budget_bytes),
        // A quarter per session, so that one session never spends everyone's.
        window_share: config.limits.window_budget_bytes / 4,
    });
    let mut listeners = Vec::new();
    for address in &config.listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind {
                address: *address,
                source,
            })?;
        listeners.push(listener);
    }
    let ops_listener = match config.ops_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        limits: Limits::new(config.limits.clone()),
        config,
        broker,
        tls,
        metrics,
        sessions: Arc::new(SessionTable::default()),
        env,
    });
    let stop_accepting = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut local_addrs = Vec::new();
    for listener in listeners {
        if let Ok(address) = listener.local_addr() {
            local_addrs.push(address);
        }
        tasks.spawn(accept_loop(
            Arc::clone(&shared),
            listener,
            stop_accepting.clone(),
            tasks.clone(),
        ));
    }
    tasks.spawn(crate::control::run(
        Arc::clone(&shared),
        stop_accepting.clone(),
    ));
    let ops_addr = match ops_listener {
        Some(listener) => {
            let address = listener.local_addr().ok();
            tasks.spawn(crate::ops::serve(
                listener,
                Arc::clone(&shared),
                stop_accepting.clone(),
            ));
            address
        }
        None => None,
    };
    tracing::info!(listen = ?local_addrs, ops = ?ops_addr, tls = shared.tls.is_some(), proxy_protocol = shared.config.proxy_protocol, "tunnel server listening");
    Ok(RunningTunnel {
        shared,
        local_addrs,
        ops_addr,
        stop_accepting,
        tasks,
    })
}

impl RunningTunnel {
    /// The bound tunnel listen addresses (with the ports the OS chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound ops listener, if configured.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// The shared state (metrics, sessions, limits), for tests and benchmarks.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Two-phase shutdown: stop accepting; let live sessions run for the grace period;
    /// end the rest (`Error(ShuttingDown)` on their connections); return once every
    /// `stop` report was sent or given up.
    pub async fn shutdown(self) {
        self.stop_accepting.cancel();
        let grace = self.shared.config.timeouts.shutdown_grace();
        let sessions = self.shared.sessions.len();
        tracing::info!(
            sessions,
            grace_secs = grace.as_secs(),
            "shutting down: no new connections"
        );
        let deadline = tokio::time::Instant::now() + grace;
        while !self.shared.sessions.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.shared.sessions.end_all(EndReason::Shutdown);
        self.shared.sessions.wait_reported().await;
        self.tasks.close();
        // Handshakes still running end at their own timeout; do not wait past it.
        let _ =
            tokio::time::timeout(self.shared.config.timeouts.handshake(), self.tasks.wait()).await;
        tracing::info!("tunnel server stopped; every stop report sent");
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Behind a PROXY v2 balancer only the trusted balancers may connect: anyone else
        // could write a header naming any source (docs/protocol.md §8.15).
        if shared.config.proxy_protocol && !shared.trusts_proxy(peer.ip()) {
            shared
                .metrics
                .limited
                .get_or_create(&ReasonLabels {
                    reason: "proxy_untrusted",
                })
                .inc();
            tracing::debug!(%peer, "connection from an address not trusted for PROXY v2 closed");
            drop(tcp);
            continue;
        }
        // Behind a PROXY v2 balancer the peer is the balancer: the source is known only
        // once the header is read (handshake::serve attributes it).
        let source = (!shared.config.proxy_protocol).then_some(peer.ip());
        let permit = match shared.limits.admit_connection(source, Instant::now()) {
            Ok(permit) => permit,
            Err(refusal) => {
                shared
                    .metrics
                    .limited
                    .get_or_create(&ReasonLabels {
                        reason: refusal.as_str(),
                    })
                    .inc();
                tracing::debug!(%peer, limit = refusal.as_str(), "connection refused at a limit");
                drop(tcp);
                continue;
            }
        };
        relay::tune(&tcp);
        tasks.spawn(handshake::serve(Arc::clone(&shared), tcp, peer, permit));
    }
}
