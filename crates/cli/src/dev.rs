//! `portcullis dev`: the whole stack on one machine — a broker on loopback with SQLite in
//! DIR, its signing key and a self-signed certificate, a demo user with a random password,
//! an echo service this command runs itself, offered direct and tunneled, and a tunnel
//! server for the tunneled one. Everything a launcher or a test needs is written to
//! DIR/dev.json.
//!
//! Running it again on the same DIR keeps what tickets and launchers hold on to: the demo
//! rows (service ids), the password, the tunnel server's registration and token, and —
//! when they are still free — the echo and tunnel ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use portcullis_broker::config::{BrokerConfig, TlsMode};
use portcullis_broker::keys::PublicKeyInfo;
use portcullis_broker::model::{Protocol, Transport};
use portcullis_broker::password::{hash_password, verify_password};
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::state::system_clock;
use portcullis_broker::store::{
    NewService, NewTunnelServer, Readiness, Store, StoreError, TokenHash, unix_millis,
};
use portcullis_tunnel::config::{BrokerLink, BrokerToken, TunnelConfig, read_token};
use portcullis_tunnel::server::{RunningTunnel, StartError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::serve::{SHUTDOWN_GRACE, shutdown_signal};

const DEMO_USER: &str = "demo";
const DEMO_GROUP: &str = "demo";
const DEV_TUNNEL_GROUP: &str = "dev";
/// The dev tunnel server's name at the broker.
const DEV_TUNNEL_NAME: &str = "dev-tunnel";
/// Its broker token, in DIR (mode 0600).
const DEV_TUNNEL_TOKEN_FILE: &str = "dev-tunnel.token";

/// The contents of DIR/dev.json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DevInfo {
    /// The broker's base URL.
    pub broker_url: String,
    /// Path of the PEM certificate to trust for `broker_url`.
    pub ca_cert: PathBuf,
    /// The demo user.
    pub username: String,
    /// The demo user's password (a dev stack only: never do this in production).
    pub password: String,
    /// Base64 of the broker's raw ML-DSA-65 public key, for launchers to pin.
    pub broker_public_key: String,
    /// Its SHA-256 fingerprint.
    pub broker_key_fingerprint: String,
    /// The demo services.
    pub services: Vec<DevService>,
    /// Where launchers reach the dev tunnel server, `127.0.0.1:PORT` (empty in a dev.json
    /// written before there was one).
    #[serde(default)]
    pub tunnel_address: String,
}

/// One demo service in dev.json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DevService {
    /// Service id (for `POST /api/services/{id}/connect`).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: String,
    /// Transport.
    pub transport: String,
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
}

/// Runs the dev stack until Ctrl-C.
pub(crate) async fn run(dir: &Path, port: u16) -> anyhow::Result<()> {
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
    tokio::spawn(run_echo(echo));

    let mut config = BrokerConfig::for_dev(&dir);
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(port)?));
    config.tls.mode = TlsMode::SelfSigned;
    let broker = server::start(config, system_clock())
        .await
        .context("the dev broker could not start (is the port taken? try --port 0)")?;
    let store = &broker.state.store;

    let password = ensure_demo_user(store, previous.as_ref()).await?;
    let services = ensure_demo_services(store, echo_port).await?;
    let ca_cert = portcullis_broker::tls::self_signed_paths(&dir).0;
    let tunnel = match start_dev_tunnel(&dir, &broker, &ca_cert, previous.as_ref()).await {
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
    let info = DevInfo {
        broker_url: broker.base_url(),
        ca_cert,
        username: DEMO_USER.to_owned(),
        password,
        broker_public_key: key.public_key_b64.clone(),
        broker_key_fingerprint: key.fingerprint.clone(),
        services,
        tunnel_address,
    };
    write_private(&info_path, &serde_json::to_vec_pretty(&info)?)?;
    print_summary(&info, &info_path, &broker);

    shutdown_signal().await;
    println!("stopping…");
    // The tunnel server first: its shutdown sends every session's `stop` report, which
    // needs the broker still running.
    tunnel.shutdown().await;
    broker.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Starts the dev tunnel server on 127.0.0.1 (the previous run's port when it is free) and
/// registers it at the broker as `dev-tunnel` in tunnel group `dev`, with its real listen
/// address as the public address and the token kept in DIR.
async fn start_dev_tunnel(
    dir: &Path,
    broker: &RunningBroker,
    ca_cert: &Path,
    previous: Option<&DevInfo>,
) -> anyhow::Result<RunningTunnel> {
    let token_path = dir.join(DEV_TUNNEL_TOKEN_FILE);
    let token = dev_tunnel_token(&token_path)?;
    let config = TunnelConfig {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        broker: BrokerLink {
            url: broker.base_url(),
            token_file: Some(token_path),
            ca_file: Some(ca_cert.to_path_buf()),
        },
        ..TunnelConfig::default()
    };
    config
        .validate()
        .context("the dev tunnel server's configuration")?;
    let previous_port = previous
        .and_then(|info| info.tunnel_address.parse::<SocketAddr>().ok())
        .map(|address| address.port())
        .filter(|port| *port != 0);
    let tunnel = match previous_port {
        Some(port) => {
            let mut wanted = config.clone();
            wanted.listen = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))];
            match portcullis_tunnel::server::start(wanted, token_copy(&token)?).await {
                // The port was taken meanwhile: any free one will do.
                Err(StartError::Bind { .. }) => None,
                other => Some(other),
            }
        }
        None => None,
    };
    let tunnel = match tunnel {
        Some(started) => started,
        None => portcullis_tunnel::server::start(config, token_copy(&token)?).await,
    }
    .context("the dev tunnel server could not start")?;
    let Some(address) = tunnel.local_addrs().first().copied() else {
        tunnel.shutdown().await;
        anyhow::bail!("the dev tunnel server has no listen address");
    };
    if let Err(error) = register_dev_tunnel(&broker.state.store, &token, address).await {
        tunnel.shutdown().await;
        return Err(error);
    }
    Ok(tunnel)
}

/// The dev tunnel server's token: the one in `path` when it is readable and well formed,
/// otherwise a new one written there (0600).
fn dev_tunnel_token(path: &Path) -> anyhow::Result<BrokerToken> {
    let link = BrokerLink {
        token_file: Some(path.to_path_buf()),
        ..BrokerLink::default()
    };
    if path.exists() {
        if let Ok(token) = read_token(&link) {
            return Ok(token);
        }
    }
    let token = crate::admin::new_tunnel_token()?;
    write_private(path, token.as_bytes())?;
    BrokerToken::new(&token).map_err(|reason| anyhow::anyhow!("a new tunnel token {reason}"))
}

fn token_copy(token: &BrokerToken) -> anyhow::Result<BrokerToken> {
    BrokerToken::new(token.expose()).map_err(|reason| anyhow::anyhow!("the tunnel token {reason}"))
}

/// `dev-tunnel` is registered with this token's hash, in tunnel group `dev`, at `address`:
/// kept as it is when it already is, otherwise registered again (a changed port, a new
/// token).
async fn register_dev_tunnel(
    store: &Store,
    token: &BrokerToken,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let token_hash = TokenHash::of(token.expose().as_bytes());
    let public_address = address.to_string();
    if let Some(server) = store.tunnel_server_by_token_hash(&token_hash).await? {
        if server.name == DEV_TUNNEL_NAME
            && server.public_address == public_address
            && server.group == DEV_TUNNEL_GROUP
            && !server.legacy
        {
            return Ok(());
        }
    }
    match store.remove_tunnel_server(DEV_TUNNEL_NAME).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    store
        .add_tunnel_server(
            NewTunnelServer {
                name: DEV_TUNNEL_NAME.to_owned(),
                public_address,
                token_hash,
                legacy: false,
                group: DEV_TUNNEL_GROUP.to_owned(),
            },
            unix_millis(SystemTime::now()),
        )
        .await
        .context("cannot register the dev tunnel server at the broker")?;
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

/// The demo user exists with a known password: the one in the previous dev.json when it
/// still matches, a fresh random one otherwise.
async fn ensure_demo_user(store: &Store, previous: Option<&DevInfo>) -> anyhow::Result<String> {
    match store.add_group(DEMO_GROUP).await {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(error) => return Err(error.into()),
    }
    if let (Some(user), Some(previous)) = (store.user_by_name(DEMO_USER).await?, previous) {
        if verify_password(&previous.password, &user.password_hash).unwrap_or(false) {
            return Ok(previous.password.clone());
        }
    }
    let password = random_password()?;
    let hash = hash_password(&password)?;
    if let Some(user) = store.user_by_name(DEMO_USER).await? {
        store.set_password_hash(user.id, &hash).await?;
    } else {
        store
            .add_user(DEMO_USER, &hash, unix_millis(SystemTime::now()))
            .await?;
        store.add_member(DEMO_GROUP, DEMO_USER).await?;
    }
    Ok(password)
}

/// The echo service, direct and tunneled, pointing at this run's echo port.
async fn ensure_demo_services(store: &Store, echo_port: u16) -> anyhow::Result<Vec<DevService>> {
    let mut services = Vec::new();
    for (name, transport) in [
        ("Echo (direct)", Transport::Direct),
        ("Echo (tunneled)", Transport::Tunneled),
    ] {
        let new = NewService {
            name: name.to_owned(),
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: echo_port,
            protocol: Protocol::Tcp,
            transport,
            tunnel_group: (transport == Transport::Tunneled).then(|| DEV_TUNNEL_GROUP.to_owned()),
            max_session_secs: 8 * 3600,
            readiness: Readiness::Tcp,
            allowed_groups: vec![DEMO_GROUP.to_owned()],
        };
        let id = match store.service_by_name(name).await? {
            // The row stays (its id, and the tickets issued for it, survive a restart);
            // only the echo port may have changed.
            Some(existing)
                if existing.transport == new.transport
                    && existing.tunnel_group == new.tunnel_group =>
            {
                if existing.host != new.host || existing.port != new.port {
                    store
                        .update_service_target(existing.id, &new.host, new.port)
                        .await?;
                }
                existing.id
            }
            // Changed by hand into something else: made a demo row again.
            Some(_) => {
                store.remove_service(name).await?;
                store
                    .add_service(new.clone(), unix_millis(SystemTime::now()))
                    .await?
            }
            None => {
                store
                    .add_service(new.clone(), unix_millis(SystemTime::now()))
                    .await?
            }
        };
        services.push(DevService {
            id: id.0,
            name: new.name,
            protocol: new.protocol.as_str().to_owned(),
            transport: new.transport.as_str().to_owned(),
            host: new.host,
            port: new.port,
        });
    }
    Ok(services)
}

/// Echoes every byte back, for every connection, until the process ends.
async fn run_echo(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        });
    }
}

fn random_password() -> anyhow::Result<String> {
    let bytes = portcullis_proto::random::array::<18>()?;
    Ok(portcullis_proto::b64::encode(&bytes).replace(['+', '/'], "x"))
}

/// Writes `contents` and a newline to `path` atomically (a 0600 temporary file renamed
/// over it), so that a program waiting for dev.json never reads half of it.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn print_summary(info: &DevInfo, info_path: &Path, broker: &RunningBroker) {
    println!();
    println!("Portcullis dev stack is running (Ctrl-C stops it)");
    println!("  broker       {}", info.broker_url);
    println!("  certificate  {}", info.ca_cert.display());
    println!("  sign in as   {} / {}", info.username, info.password);
    println!("  broker key   {}", info.broker_key_fingerprint);
    println!(
        "  tunnel       {} (tunnel server {DEV_TUNNEL_NAME}, tunnel group {DEV_TUNNEL_GROUP})",
        info.tunnel_address
    );
    for service in &info.services {
        println!(
            "  service {:>3}  {} ({} {}) -> {}:{}",
            service.id,
            service.name,
            service.protocol,
            service.transport,
            service.host,
            service.port
        );
    }
    println!("  everything above, for programs: {}", info_path.display());
    println!(
        "  try: curl --cacert {} {}/health",
        info.ca_cert.display(),
        broker.base_url()
    );
    println!();
}
