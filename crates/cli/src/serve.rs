//! `portcullis broker --config FILE`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use portcullis_broker::clock::Clock;
use portcullis_broker::config::BrokerConfig;
use portcullis_broker::server;

/// How long requests in flight may take to finish after Ctrl-C or SIGTERM.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Loads the configuration, serves on `clock` until Ctrl-C or SIGTERM, then shuts down
/// gracefully.
pub(crate) async fn run(config_path: &Path, clock: Clock) -> anyhow::Result<()> {
    let config = BrokerConfig::load(config_path)?;
    let broker = server::start(config, clock)
        .await
        .context("the broker could not start")?;
    tracing::info!(url = %broker.base_url(), "broker ready");
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, waiting for requests in flight");
    broker.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        () = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
