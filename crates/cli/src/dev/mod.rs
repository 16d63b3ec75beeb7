//! `portcullis dev`: the whole stack on one machine — a broker on loopback with SQLite in
//! DIR (which serves the web portal), its signing key and a self-signed certificate, a
//! demo user with a random password, an administrator `admin` (the admin pages at
//! `/admin`, group `portcullis-admins`), an echo service this command runs itself (offered
//! direct and tunneled), SSH to a local `sshd` when one listens, and a tunnel server for
//! the tunneled services. Everything a launcher or a test needs is written to
//! DIR/dev.json.
//!
//! Running it again on the same DIR keeps what tickets and launchers hold on to: the demo
//! rows (service ids), the password, the tunnel server's registration and token, and —
//! when they are still free — the echo and tunnel ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use portcullis_broker::clock::Clock;
use portcullis_broker::config::{BrokerConfig, TlsMode};
use portcullis_broker::keys::PublicKeyInfo;
use portcullis_broker::server;
use tokio::net::TcpListener;

use crate::serve::{SHUTDOWN_GRACE, shutdown_signal};

mod demo;
mod info;
mod tunnel;

use info::DevInfo;

/// Where the SSH demo service points unless `--ssh` says otherwise.
const DEFAULT_SSH_TARGET: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 22);

/// What `portcullis dev` was asked for.
#[derive(Debug)]
pub(crate) struct DevOptions {
    /// The data directory.
    pub dir: PathBuf,
    /// The broker's port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// The SSH service's target; `None`: 127.0.0.1:22 when something listens there.
    pub ssh: Option<SocketAddr>,
    /// Launcher scripts replacing the built-in ones (the broker's `scripts_dir`).
    pub scripts_dir: Option<PathBuf>,
}

/// Runs the dev stack until Ctrl-C, on `clock` (the broker's, and what the demo rows are
/// dated by).
pub(crate) async fn run(options: DevOptions, clock: Clock) -> anyhow::Result<()> {
    let dir = &options.dir;
    portcullis_broker::files::ensure_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let info_path = dir.join("dev.json");
    let previous: Option<DevInfo> = std::fs::read(&info_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());

    // The previous run's echo port when it is free, so that its tickets still reach it.
    let previous_echo = previous
        .as_ref()
        .and_then(|info| info.services.first())
        .map(|service| service.port);
    let echo = match previous_echo {
        Some(port) => match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await,
        },
        None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await,
    }
    .context("cannot start the echo service")?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(demo::run_echo(echo));

    let ssh_target = options.ssh.unwrap_or(DEFAULT_SSH_TARGET);
    let (ssh, ssh_hint) = if demo::ssh_listens(ssh_target).await {
        (Some(ssh_target), None)
    } else if options.ssh.is_some() {
        anyhow::bail!(
            "nothing listens at {ssh_target}, given with --ssh: start the SSH server first"
        );
    } else {
        let hint = format!(
            "nothing listens on {ssh_target}, so there is no SSH service; install and start \
             an SSH server (apt install openssh-server) or pass --ssh HOST:PORT, then run \
             portcullis dev again"
        );
        (None, Some(hint))
    };

    let mut config = BrokerConfig::for_dev(&dir);
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(options.port)?));
    config.tls.mode = TlsMode::SelfSigned;
    config.scripts_dir = options.scripts_dir.clone();
    config.admin.groups = vec![demo::ADMIN_GROUP.to_owned()];
    let broker = server::start(config, clock.clone())
        .await
        .context("the dev broker could not start (is the port taken? try --port 0)")?;
    let store = &broker.state.store;

    let password = demo::ensure_demo_user(store, &clock, previous.as_ref()).await?;
    let admin_password = demo::ensure_admin_user(store, &clock, previous.as_ref()).await?;
    let services = demo::ensure_demo_services(store, &clock, echo_port, ssh).await?;
    let ca_cert = portcullis_broker::tls::self_signed_paths(&dir).0;
    let previous_tunnel_port = previous.as_ref().and_then(DevInfo::tunnel_port);
    let tunnel = match tunnel::start_dev_tunnel(&dir, &broker, &ca_cert, previous_tunnel_port).await
    {
        Ok(tunnel) => tunnel,
        Err(error) => {
            broker.shutdown(SHUTDOWN_GRACE).await;
            return Err(error);
        }
    };
    let tunnel_address = tunnel
        .local_addrs()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let key = PublicKeyInfo::new(broker.state.signing_key.verifying_key());
    let broker_url = broker.base_url();
    let broker_host = broker_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let info = DevInfo {
        portal_url: format!("{}/", broker_url.trim_end_matches('/')),
        launcher_trust_command: info::trust_command(&broker_host, &key.public_key_b64, &ca_cert),
        launcher_register_command: "portcullis-launcher register".to_owned(),
        broker_url,
        ca_cert,
        username: demo::DEMO_USER.to_owned(),
        password,
        admin_username: demo::ADMIN_USER.to_owned(),
        admin_password,
        broker_public_key: key.public_key_b64.clone(),
        broker_key_fingerprint: key.fingerprint.clone(),
        services,
        tunnel_address,
    };
    info::write_private(&info_path, &serde_json::to_vec_pretty(&info)?)?;
    info::print_summary(
        &info,
        &info_path,
        (tunnel::DEV_TUNNEL_NAME, tunnel::DEV_TUNNEL_GROUP),
        ssh_hint.as_deref(),
    );

    shutdown_signal().await;
    println!("stopping…");
    // The tunnel server first: its shutdown sends every session's `stop` report, which
    // needs the broker still running.
    tunnel.shutdown().await;
    broker.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// `port`, or a free loopback port when it is 0.
fn free_port(port: u16) -> anyhow::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(probe.local_addr()?.port())
}
