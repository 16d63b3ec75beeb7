//! Logging to stderr through `tracing`. Nothing logged anywhere in Portcullis contains a
//! secret, a token or a whole ticket id, at any level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. The filter is the first usable one of: `--log` (`cli`), the
/// `RUST_LOG` environment variable, the configuration's `log.level` (`config`), `info`.
pub(crate) fn init(cli: Option<&str>, config: Option<&str>) {
    let env = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::new(choose(cli, env.as_deref(), config));
    // A second initialisation (never done here) would be refused; ignoring that is right.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The filter in force: `cli`, else a valid `env`, else `config`, else `info`. (An
/// invalid `--log` is used as given, so its mistakes show; an invalid or empty `RUST_LOG`
/// is skipped, as before `log.level` existed.)
fn choose<'a>(cli: Option<&'a str>, env: Option<&'a str>, config: Option<&'a str>) -> &'a str {
    let env = env.filter(|env| !env.trim().is_empty() && EnvFilter::try_new(env).is_ok());
    cli.or(env).or(config).unwrap_or("info")
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn flag_then_environment_then_configuration_then_info() {
        assert_eq!(choose(Some("trace"), Some("warn"), Some("debug")), "trace");
        assert_eq!(choose(None, Some("warn"), Some("debug")), "warn");
        assert_eq!(choose(None, None, Some("debug")), "debug");
        assert_eq!(choose(None, None, None), "info");
        assert_eq!(choose(None, Some(""), Some("debug")), "debug");
        assert_eq!(choose(None, Some("not a [filter"), Some("debug")), "debug");
    }
}
