//! `portcullis dev`: the whole stack on one machine — a broker on loopback with SQLite in
//! DIR, its signing key and a self-signed certificate, a demo user with a random password,
//! and an echo service this command runs itself, offered direct and tunneled. Everything a
//! launcher or a test needs is written to DIR/dev.json.

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
use portcullis_broker::store::{NewService, Readiness, Store, StoreError, unix_millis};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::serve::{SHUTDOWN_GRACE, shutdown_signal};

const DEMO_USER: &str = "demo";
const DEMO_GROUP: &str = "demo";
const DEV_TUNNEL_GROUP: &str = "dev";

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

    let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
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
    let key = PublicKeyInfo::new(broker.state.signing_key.verifying_key());
    let info = DevInfo {
        broker_url: broker.base_url(),
        ca_cert: portcullis_broker::tls::self_signed_paths(&dir).0,
        username: DEMO_USER.to_owned(),
        password,
        broker_public_key: key.public_key_b64.clone(),
        broker_key_fingerprint: key.fingerprint.clone(),
        services,
    };
    write_private(&info_path, &serde_json::to_vec_pretty(&info)?)?;
    print_summary(&info, &info_path, &broker);

    shutdown_signal().await;
    println!("stopping…");
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
        if store.service_by_name(name).await?.is_some() {
            store.remove_service(name).await?;
        }
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
        let id = store
            .add_service(new.clone(), unix_millis(SystemTime::now()))
            .await?;
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

/// Writes `path` atomically (a 0600 temporary file renamed over it), so that a program
/// waiting for dev.json never reads half of it.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("json.tmp");
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
