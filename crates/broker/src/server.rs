//! Running a broker: load keys, database and scripts, bind, serve HTTPS (or HTTP behind a
//! proxy), sweep expired rows, and shut down in two phases (stop accepting, then let the
//! requests in flight finish within a grace period).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::task::JoinHandle;

use crate::config::{BrokerConfig, TlsMode};
use crate::http::router;
use crate::keys;
use crate::metrics::Metrics;
use crate::scripts::ScriptSet;
use crate::state::{AppState, Clock};
use crate::store::{self, Store, StoreOptions};
use crate::tls;

/// How often expired tickets and sessions are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing key could not be loaded or created.
    #[error("signing key")]
    Keys(#[from] keys::KeyError),
    /// The database could not be opened or migrated.
    #[error("database")]
    Store(#[from] store::StoreError),
    /// The launcher scripts could not be loaded.
    #[error("launcher scripts")]
    Scripts(#[from] crate::scripts::ScriptError),
    /// TLS could not be set up.
    #[error("TLS")]
    Tls(#[from] tls::TlsError),
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
    handle: Handle,
    server: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
}

/// Loads everything `config` names and starts serving.
pub async fn start(config: BrokerConfig, clock: Clock) -> Result<RunningBroker, StartError> {
    crate::files::ensure_private_dir(&config.data_dir).map_err(|source| StartError::Bind {
        addr: config.data_dir.display().to_string(),
        source,
    })?;
    let (signing_key, status) = keys::load_or_create(&config.data_dir)?;
    tracing::info!(?status, "broker signing key ready");
    let metrics = Metrics::new();
    let store = Store::connect_with(
        config.database_url().expose(),
        &StoreOptions {
            metrics: metrics.store.clone(),
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
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|source| StartError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.to_string(),
        source,
    })?;

    let state = Arc::new(AppState::new(
        config,
        store.clone(),
        signing_key,
        scripts,
        metrics,
        clock,
    ));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle = Handle::new();
    let header_timeout = Duration::from_secs(state.config.limits.header_read_timeout_secs);
    let server = match tls_files {
        Some((cert, key)) => {
            let rustls = RustlsConfig::from_config(tls::server_config(
                &cert,
                &key,
                state.config.tls.allow_tls12,
            )?);
            let acceptor = RustlsAcceptor::new(rustls).handshake_timeout(Duration::from_secs(
                state.config.limits.tls_handshake_timeout_secs,
            ));
            let mut server = axum_server::from_tcp(listener)
                .acceptor(acceptor)
                .handle(handle.clone());
            bound_header_reads(server.http_builder(), header_timeout);
            tokio::spawn(server.serve(app))
        }
        None => {
            let mut server = axum_server::from_tcp(listener).handle(handle.clone());
            bound_header_reads(server.http_builder(), header_timeout);
            tokio::spawn(server.serve(app))
        }
    };
    let sweeper = store::spawn_sweeper(store, SWEEP_INTERVAL);
    tracing::info!(%addr, tls = state.config.tls_enabled(), "broker listening");
    Ok(RunningBroker {
        addr,
        state,
        handle,
        server,
        sweeper,
    })
}

/// Closes connections whose request headers do not arrive within `timeout`, so slow
/// clients cannot hold connections open (hyper applies the limit only with a timer).
///
/// Not yet enough (issue 7, point 1): axum-server serves through hyper-util's automatic
/// version detection, which waits for a connection's first bytes without a timeout and
/// answers prior-knowledge HTTP/2; an idle connection is closed by neither.
fn bound_header_reads(builder: &mut Builder<TokioExecutor>, timeout: Duration) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
}

impl RunningBroker {
    /// Stops accepting connections, waits up to `grace` for requests in flight, then stops.
    pub async fn shutdown(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        self.sweeper.abort();
        match self.server.await {
            Ok(Ok(())) => tracing::info!("broker stopped"),
            Ok(Err(error)) => tracing::error!(%error, "broker server ended with an error"),
            Err(error) => tracing::error!(%error, "broker server task failed"),
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
