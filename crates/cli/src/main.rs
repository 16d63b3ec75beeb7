//! `portcullis`: the server-side command — the broker, its admin CLI, the tunnel server, and
//! `dev`, the whole stack on one machine with SQLite and demo data.

#![forbid(unsafe_code)]
// A command-line program talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_broker::clock::system_clock;
use portcullis_broker::config::BrokerConfig;

mod admin;
mod dev;
mod logging;
mod serve;
mod tunnel;

/// Portcullis: a post-quantum connection broker for remote desktops and services.
///
/// Users sign in to the broker's portal and click Connect; the launcher fetches its
/// instructions end-to-end encrypted under ML-KEM-768, signed with ML-DSA-65.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about)]
struct Cli {
    /// Log filter (e.g. `info`, `debug`, `portcullis_broker=trace`); overrides RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack on this machine: a broker on loopback with SQLite serving the
    /// web portal and its admin pages, a signing key, a TLS certificate, a tunnel server, a
    /// demo user, an administrator `admin` (both with printed passwords) and demo
    /// services (an echo service, direct and tunneled; SSH through the tunnel to the SSH
    /// server on 127.0.0.1:22 when one listens). Prints the portal's address, the
    /// credentials and the launcher's set-up commands, and writes them to DIR/dev.json.
    /// Ctrl-C stops it (tunnel sessions are reported first); running it again reuses DIR.
    Dev {
        /// Where the dev stack keeps its database, keys, certificate and dev.json.
        #[arg(long, default_value = "./portcullis-dev", value_name = "DIR")]
        dir: PathBuf,
        /// The broker's port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// The SSH service's target (default: 127.0.0.1:22 when an SSH server listens
        /// there; with this option, dev refuses to start when nothing listens).
        #[arg(long, value_name = "HOST:PORT")]
        ssh: Option<std::net::SocketAddr>,
        /// A directory of launcher scripts replacing the built-in ones of the same name
        /// (the broker's `scripts_dir`, see docs/launcher-scripts.md).
        #[arg(long, value_name = "DIR")]
        scripts_dir: Option<PathBuf>,
    },
    /// Run a broker from a configuration file (see docs/broker.md for every setting).
    Broker {
        /// The TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a tunnel server from a configuration file (see docs/tunnel.md, and
    /// docs/tunnel.example.toml for every setting).
    ///
    /// The tunnel server accepts launchers' tunnel connections (optionally behind TLS and a
    /// PROXY protocol v2 load balancer), redeems each tunnel ticket once at the broker, and
    /// relays the encrypted connection to the service's target. It authenticates to the
    /// broker with the token `portcullis admin tunnel add` printed, read from the file
    /// named by `broker.token_file` or, when that is unset, from the environment variable
    /// PORTCULLIS_TUNNEL_TOKEN.
    ///
    /// Ctrl-C or SIGTERM stops it in two phases: no new connections, live sessions go on
    /// for `timeouts.shutdown_grace_secs`, then every session ends and its `stop` report
    /// (bytes each way) is sent to the broker before the process exits.
    Tunnel {
        /// The TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Administer a broker's database: users, groups, services, tunnel servers, the
    /// signing key and the audit log.
    Admin(admin::AdminArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `broker` logs at its configuration's `log.level` unless `--log` or RUST_LOG say
    // otherwise; a file that does not load is reported by the command itself.
    let config_level = match &cli.command {
        Command::Broker { config } => BrokerConfig::load(config)
            .ok()
            .map(|config| config.log.level),
        _ => None,
    };
    logging::init(cli.log.as_deref(), config_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The one clock of this process: the broker's, and what admin and dev date rows by.
    let clock = system_clock();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev {
                dir,
                port,
                ssh,
                scripts_dir,
            } => {
                dev::run(
                    dev::DevOptions {
                        dir,
                        port,
                        ssh,
                        scripts_dir,
                    },
                    clock,
                )
                .await
            }
            Command::Broker { config } => serve::run(&config, clock).await,
            Command::Tunnel { config } => tunnel::run(&config).await,
            Command::Admin(args) => admin::run(args, &clock).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
