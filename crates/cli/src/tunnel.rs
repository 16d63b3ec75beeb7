//! `portcullis tunnel --config FILE`.

use std::path::Path;

use anyhow::Context;
use portcullis_tunnel::config::{TunnelConfig, read_token};
use portcullis_tunnel::server;

/// Loads and validates the configuration, reads the broker token, serves until Ctrl-C or
/// SIGTERM, then shuts down in two phases (stop accepting; live sessions get
/// `timeouts.shutdown_grace_secs`; every `stop` report is sent).
pub(crate) async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = TunnelConfig::from_file(config_path)?;
    // The token's errors name its file or variable; a missing one names the setting.
    let token = read_token(&config.broker).with_context(|| format!("{}", config_path.display()))?;
    let running = server::start(config, token)
        .await
        .context("the tunnel server could not start")?;
    tracing::info!(
        listen = ?running.local_addrs(),
        ops = ?running.ops_addr(),
        "tunnel server ready"
    );
    crate::serve::shutdown_signal().await;
    // Logs its phases itself.
    running.shutdown().await;
    Ok(())
}
