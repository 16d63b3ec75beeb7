//! Running a broker: load keys, database and scripts, bind, serve HTTPS (or HTTP behind a
//! proxy), sweep expired rows, and shut down in two phases (stop accepting, then let the
//! requests in flight finish within a grace period).
//!
//! The accept loop is the broker's own: a semaphore caps the connections served at once
//! (`limits.max_connections`; one more is closed as soon as it is accepted, counted in
//! `portcullis_connections_refused_total` and logged at most every 10 s), and each
//! connection (module `connection`) bounds its TLS handshake, speaks HTTP/1.1 only (HTTP/2 is
//! not served, with or without ALPN), and is closed when it idles.

mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use self::connection::{ConnectionLimits, Serving};

use crate::clock::Clock;
use crate::config::{BrokerConfig, TlsMode};
use crate::credentials::{self, CredentialKeyError, CredentialKeys, ssh_ca::SshCa};
use crate::http::router;
use crate::keys;
use crate::metrics::{ConnectionMetrics, Metrics};
use crate::scripts::ScriptSet;
use crate::state::AppState;
use crate::store::{self, Store, StoreOptions};
use crate::tls;

/// How often expired tickets and sessions are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// At most one warning this often about refused connections or failed accepts.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// The pause after a failed accept (out of file descriptors, most likely).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing key could not be loaded or created.
    #[error("signing key")]
    Keys(#[from] keys::KeyError),
    /// The credential key or the SSH CA could not be loaded.
    #[error("credential key")]
    Credentials(#[from] CredentialKeyError),
    /// The database could not be opened or migrated.
    #[error("database")]
    Store(#[from] store::StoreError),
    /// The launcher scripts could not be loaded.
    #[error("launcher scripts")]
    Scripts(#[from] crate::scripts::ScriptError),
    /// TLS could not be set up.
    #[error("TLS")]
    Tls(#[from] tls::TlsError),
    /// An OpenID Connect provider could not be set up.
    #[error("OpenID Connect")]
    Oidc(#[from] crate::oidc::OidcError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A broker that is serving.
#[derive(Debug)]
pub struct RunningBroker {
    /// The address it listens on (the real port when the configuration said 0).
    pub addr: SocketAddr,
    /// Its shared state (tests read metrics and the store through it).
    pub state: Arc<AppState>,
    shutdown: watch::Sender<Option<Duration>>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    export: Option<crate::audit_export::RunningExport>,
}

/// Loads everything `config` names and starts serving.
pub async fn start(config: BrokerConfig, clock: Clock) -> Result<RunningBroker, StartError> {
    crate::files::ensure_private_dir(&config.data_dir).map_err(|source| StartError::Bind {
        addr: config.data_dir.display().to_string(),
        source,
    })?;
    let (signing_key, status) = keys::load_or_create(&config.data_dir)?;
    tracing::info!(?status, "broker signing key ready");
    let credentials = load_credential_keys(&config)?;
    let metrics = Metrics::new();
    let export = crate::audit_export::start(&config.audit, &metrics.export);
    let store = Store::connect_with(
        config.database_url().expose(),
        &StoreOptions {
            metrics: metrics.store.clone(),
            audit_sink: export
                .as_ref()
                .map(crate::audit_export::RunningExport::sink),
            ..StoreOptions::default()
        },
    )
    .await?;
    let scripts = ScriptSet::load(config.scripts_dir.as_deref(), &signing_key)?;
    let tls_files = match config.tls.mode {
        TlsMode::Off => None,
        TlsMode::SelfSigned => Some(tls::ensure_self_signed(
            &config.data_dir,
            &config.certificate_names(),
        )?),
        TlsMode::Files => Some((
            config.tls.cert.clone().unwrap_or_default(),
            config.tls.key.clone().unwrap_or_default(),
        )),
    };
    let tls = match &tls_files {
        Some((cert, key)) => Some(tls::acceptor(cert, key, &config.tls)?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .and_then(TcpListener::from_std)
        .map_err(|source| StartError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.to_string(),
        source,
    })?;

    let oidc = crate::oidc::Providers::new(
        &config.auth.oidc,
        config.public_url().as_str(),
        signing_key.seed(),
    )?;
    for provider in oidc.iter() {
        tracing::info!(
            provider = %provider.name(),
            redirect_url = %provider.redirect_url(),
            "OpenID Connect sign-in ready (register this redirect URL at the provider)"
        );
    }
    let state = Arc::new(AppState::new(
        config,
        store.clone(),
        signing_key,
        scripts,
        metrics,
        oidc,
        credentials,
        clock,
    ));
    let limits = &state.config.limits;
    let serving = Arc::new(Serving {
        router: router(state.clone()),
        tls,
        limits: ConnectionLimits {
            tls_handshake: limits.tls_handshake_timeout(),
            idle: limits.idle_timeout(),
            headers: limits.header_read_timeout(),
        },
    });
    let (shutdown, shutdown_rx) = watch::channel(None);
    let server = tokio::spawn(accept_loop(
        listener,
        serving,
        Arc::new(Semaphore::new(limits.max_connections)),
        state.metrics.connections.clone(),
        shutdown_rx,
    ));
    let sweep_clock: Clock = {
        let state = Arc::clone(&state);
        Arc::new(move || state.now())
    };
    let sweeper = store::spawn_sweeper(store, SWEEP_INTERVAL, sweep_clock);
    tracing::info!(%addr, tls = state.config.tls_enabled(), "broker listening");
    Ok(RunningBroker {
        addr,
        state,
        shutdown,
        server,
        sweeper,
        export,
    })
}

/// The credential key (from `credentials.key_env`'s variable, else the data directory's
/// file, created on first start) and the SSH CA, if one was made.
fn load_credential_keys(config: &BrokerConfig) -> Result<CredentialKeys, CredentialKeyError> {
    let env = config.credentials.key_env.as_deref().map(|name| {
        let value = std::env::var(name).ok().map(zeroize::Zeroizing::new);
        (name, value)
    });
    let (key, source) = credentials::load_or_create(&config.data_dir, env)?;
    let ssh_ca = SshCa::load(&config.data_dir)?;
    tracing::info!(
        key_id = %portcullis_proto::hex::encode(&key.id()),
        ?source,
        ssh_ca = ssh_ca.is_some(),
        "credential key ready"
    );
    Ok(CredentialKeys { key, ssh_ca })
}

/// Accepts connections until shutdown is requested, then waits for the open ones up to the
/// grace period and closes what is left.
async fn accept_loop(
    listener: TcpListener,
    serving: Arc<Serving>,
    permits: Arc<Semaphore>,
    metrics: ConnectionMetrics,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let max_connections = permits.available_permits();
    let mut connections = JoinSet::new();
    let mut refusals = Throttled::default();
    let mut accept_errors = Throttled::default();
    let grace = loop {
        let accepted = tokio::select! {
            grace = shutdown_requested(&mut shutdown) => break grace,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    connections.spawn(connection::serve(
                        Arc::clone(&serving),
                        stream,
                        peer,
                        permit,
                        shutdown.clone(),
                    ));
                }
                Err(_) => {
                    drop(stream);
                    metrics.refused.inc();
                    if let Some(more) = refusals.due() {
                        tracing::warn!(
                            max_connections,
                            refused = more,
                            "connection limit reached (limits.max_connections): closing new connections"
                        );
                    }
                }
            },
            Err(error) => {
                if let Some(more) = accept_errors.due() {
                    tracing::warn!(%error, failed = more, "cannot accept connections");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    };
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing the connections still open after the grace period"
        );
        connections.shutdown().await;
    }
}

/// Resolves with the grace period once shutdown is requested; never if the broker's
/// [`RunningBroker`] was dropped without [`RunningBroker::shutdown`].
async fn shutdown_requested(shutdown: &mut watch::Receiver<Option<Duration>>) -> Duration {
    let grace = shutdown
        .wait_for(Option::is_some)
        .await
        .map(|grace| grace.unwrap_or_default());
    match grace {
        Ok(grace) => grace,
        Err(_) => std::future::pending().await,
    }
}

/// Lets a repeated warning through at most once per [`WARN_INTERVAL`].
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    /// Counts an occurrence; `Some(occurrences since the last warning)` when one is due.
    fn due(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_INTERVAL) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

impl RunningBroker {
    /// Stops accepting connections, waits up to `grace` for requests in flight, then stops.
    pub async fn shutdown(self, grace: Duration) {
        // Held control requests answer now, or they would hold the shutdown for their wait.
        self.state.control.stop();
        self.shutdown.send_replace(Some(grace));
        self.sweeper.abort();
        match self.server.await {
            Ok(()) => tracing::info!("broker stopped"),
            Err(error) => tracing::error!(%error, "broker server task failed"),
        }
        if let Some(export) = self.export {
            export.finish(Duration::from_secs(5)).await;
        }
    }

    /// The base URL clients use (`https://127.0.0.1:PORT` style, from the bound address).
    pub fn base_url(&self) -> String {
        let scheme = if self.state.config.tls_enabled() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
}
