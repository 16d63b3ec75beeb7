//! The dev stack's demo data: the demo user and its services (the echo service this
//! command runs, direct and tunneled, and SSH to a local `sshd` when there is one).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use portcullis_broker::clock::Clock;
use portcullis_broker::model::{Protocol, Transport};
use portcullis_broker::password::{hash_password, verify_password};
use portcullis_broker::store::{NewService, Readiness, Store, StoreError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::info::{DevInfo, DevService};
use super::tunnel::DEV_TUNNEL_GROUP;

pub(super) const DEMO_USER: &str = "demo";
const DEMO_GROUP: &str = "demo";
/// The administrator of the dev stack, in [`ADMIN_GROUP`].
pub(super) const ADMIN_USER: &str = "admin";
/// The dev broker's `[admin] groups`.
pub(super) const ADMIN_GROUP: &str = "portcullis-admins";
/// The SSH demo service's name: offered only while its target listens.
const SSH_SERVICE: &str = "SSH (tunneled)";
/// How long the probe of the SSH target may take.
const SSH_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The demo user exists with a known password: the one in the previous dev.json when it
/// still matches, a fresh random one otherwise.
pub(super) async fn ensure_demo_user(
    store: &Store,
    clock: &Clock,
    previous: Option<&DevInfo>,
) -> anyhow::Result<String> {
    let known = previous.map(|previous| previous.password.as_str());
    ensure_user(store, clock, DEMO_USER, DEMO_GROUP, known).await
}

/// The administrator `admin` exists, in the administrators' group, enabled, with a known
/// password (the previous dev.json's when it still matches).
pub(super) async fn ensure_admin_user(
    store: &Store,
    clock: &Clock,
    previous: Option<&DevInfo>,
) -> anyhow::Result<String> {
    let known = previous
        .map(|previous| previous.admin_password.as_str())
        .filter(|password| !password.is_empty());
    let password = ensure_user(store, clock, ADMIN_USER, ADMIN_GROUP, known).await?;
    if store
        .user_by_name(ADMIN_USER)
        .await?
        .is_some_and(|user| user.disabled_at.is_some())
    {
        store.set_user_disabled(ADMIN_USER, None, None).await?;
    }
    Ok(password)
}

/// `name` exists in `group` (created when missing) with a known password: `known` when it
/// still matches, a fresh random one otherwise.
async fn ensure_user(
    store: &Store,
    clock: &Clock,
    name: &str,
    group: &str,
    known: Option<&str>,
) -> anyhow::Result<String> {
    match store.add_group(group).await {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let existing = store.user_by_name(name).await?;
    if let Some(user) = &existing {
        match store.add_member(group, name).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(known) = known {
            if verify_password(known, &user.password_hash).unwrap_or(false) {
                return Ok(known.to_owned());
            }
        }
    }
    let password = random_password()?;
    let hash = hash_password(&password)?;
    match existing {
        Some(user) => store.set_password_hash(user.id, &hash).await?,
        None => {
            store.add_user(name, &hash, clock()).await?;
            store.add_member(group, name).await?;
        }
    }
    Ok(password)
}

/// Whether an SSH server accepts connections at `target` (a quick TCP connect).
pub(super) async fn ssh_listens(target: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(SSH_PROBE_TIMEOUT, TcpStream::connect(target)).await,
        Ok(Ok(_))
    )
}

/// The demo services: the echo service, direct and tunneled, at this run's echo port, and
/// the tunneled SSH service at `ssh` (removed when there is none, so that the portal never
/// offers a service nothing answers).
pub(super) async fn ensure_demo_services(
    store: &Store,
    clock: &Clock,
    echo_port: u16,
    ssh: Option<SocketAddr>,
) -> anyhow::Result<Vec<DevService>> {
    let mut wanted = vec![
        demo_service(
            "Echo (direct)",
            Protocol::Tcp,
            Transport::Direct,
            echo_target(echo_port),
        ),
        demo_service(
            "Echo (tunneled)",
            Protocol::Tcp,
            Transport::Tunneled,
            echo_target(echo_port),
        ),
    ];
    match ssh {
        Some(target) => wanted.push(demo_service(
            SSH_SERVICE,
            Protocol::Ssh,
            Transport::Tunneled,
            target,
        )),
        None => match store.remove_service(SSH_SERVICE, clock()).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        },
    }
    let mut services = Vec::new();
    for new in wanted {
        let id = ensure_service(store, clock, &new).await?;
        services.push(DevService {
            id,
            name: new.name,
            protocol: new.protocol.as_str().to_owned(),
            transport: new.transport.as_str().to_owned(),
            host: new.host,
            port: new.port,
        });
    }
    Ok(services)
}

fn echo_target(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn demo_service(
    name: &str,
    protocol: Protocol,
    transport: Transport,
    target: SocketAddr,
) -> NewService {
    NewService {
        name: name.to_owned(),
        host: target.ip().to_string(),
        port: target.port(),
        protocol,
        transport,
        tunnel_group: (transport == Transport::Tunneled).then(|| DEV_TUNNEL_GROUP.to_owned()),
        max_session_secs: 8 * 3600,
        readiness: Readiness::Tcp,
        allowed_groups: vec![DEMO_GROUP.to_owned()],
    }
}

/// The service row `new` exists; its id.
async fn ensure_service(store: &Store, clock: &Clock, new: &NewService) -> anyhow::Result<i64> {
    let id = match store.service_by_name(&new.name).await? {
        // The row stays (its id, and the tickets issued for it, survive a restart); only
        // the target may have changed.
        Some(existing)
            if existing.protocol == new.protocol
                && existing.transport == new.transport
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
            store.remove_service(&new.name, clock()).await?;
            store.add_service(new.clone(), clock()).await?
        }
        None => store.add_service(new.clone(), clock()).await?,
    };
    Ok(id.0)
}

/// Echoes every byte back, for every connection, until the process ends.
pub(super) async fn run_echo(listener: TcpListener) {
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
