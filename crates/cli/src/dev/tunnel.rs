//! The dev stack's tunnel server: on 127.0.0.1, registered at the broker as `dev-tunnel`
//! in tunnel group `dev`, its token kept in DIR.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use portcullis_broker::clock::Millis;
use portcullis_broker::files::{Existing, write_atomically};
use portcullis_broker::server::RunningBroker;
use portcullis_broker::store::{NewTunnelServer, Store, StoreError, TokenHash};
use portcullis_tunnel::config::{BrokerLink, BrokerToken, TunnelConfig, read_token};
use portcullis_tunnel::server::{RunningTunnel, StartError};

/// The dev tunnel server's tunnel group.
pub(super) const DEV_TUNNEL_GROUP: &str = "dev";
/// The dev tunnel server's name at the broker.
pub(super) const DEV_TUNNEL_NAME: &str = "dev-tunnel";
/// Its broker token, in DIR (mode 0600).
const DEV_TUNNEL_TOKEN_FILE: &str = "dev-tunnel.token";

/// Registers the dev tunnel server at the broker as `dev-tunnel` in tunnel group `dev`, with
/// its listen address as the public address and the token kept in DIR, and starts it on
/// 127.0.0.1 (`previous_port`, the previous run's, when it is free).
pub(super) async fn start_dev_tunnel(
    dir: &Path,
    broker: &RunningBroker,
    ca_cert: &Path,
    previous_port: Option<u16>,
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
    // Registered before it starts, so that its control channel's first request finds its
    // token: the previous run's port when it is free, else any free one (registered again
    // if another program takes it meanwhile).
    let mut port = previous_port
        .filter(|port| port_is_free(*port))
        .unwrap_or(0);
    for _ in 0..3 {
        if port == 0 {
            port = super::free_port(0).context("no free port for the dev tunnel server")?;
        }
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        register_dev_tunnel(&broker.state.store, &token, address, broker.state.now()).await?;
        let mut wanted = config.clone();
        wanted.listen = vec![address];
        match portcullis_tunnel::server::start(wanted, token_copy(&token)?).await {
            Err(StartError::Bind { .. }) => port = 0,
            started => return started.context("the dev tunnel server could not start"),
        }
    }
    anyhow::bail!("the dev tunnel server found no free port on 127.0.0.1")
}

/// Whether `port` on 127.0.0.1 can be bound now.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
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
    let token = portcullis_broker::admin::new_tunnel_token()?;
    write_atomically(
        path,
        format!("{token}\n").as_bytes(),
        0o600,
        Existing::Replace,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
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
    now: Millis,
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
            now,
        )
        .await
        .context("cannot register the dev tunnel server at the broker")?;
    Ok(())
}
