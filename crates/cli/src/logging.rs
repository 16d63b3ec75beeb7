//! Logging to stderr through `tracing`. Nothing logged anywhere in Portcullis contains a
//! secret, a token or a whole ticket id, at any level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber: `--log` wins over `RUST_LOG`, default `info`.
pub(crate) fn init(filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // A second initialisation (never done here) would be refused; ignoring that is right.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
