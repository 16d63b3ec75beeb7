//! A whole tunneled stack on loopback for the tests: a real broker (SQLite, plain HTTP on
//! 127.0.0.1) and a tunnel server registered at it; the launcher's side is
//! [`portcullis_link::client`], the targets and relays are `portcullis_testkit`'s.
//!
//! Tunnel tickets are issued the way an exchange commits them (client ticket consumed,
//! tunnel ticket stored with the KEM secret sealed under the ticket id), without the HTTP
//! client API, which the broker's own tests cover.

// The tunnel benchmarks and the `portcullis` crate's balancer test include this module with
// `#[path]` (it needs portcullis-broker, which portcullis-testkit must not depend on) and use
// part of it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use portcullis_broker::clock::{system_clock, unix_millis};
use portcullis_broker::config::{BrokerConfig, PublicUrl, TlsMode};
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::store::{
    AuditEvent, NewClientTicket, NewService, NewTunnelServer, NewTunnelTicket, Protocol, Readiness,
    ServiceId, StoredAuditEvent, TokenHash, Transport, UserId,
};
use portcullis_broker::tickets::crypto::{seal_secret, ticket_hash};
use portcullis_link::client::{ClientConfig, Forwarder, TunnelAddress};
use portcullis_proto::tunnel::derive_tunnel_secret;
use portcullis_proto::{Scrambler, SharedSecret, TicketId};
use portcullis_testkit::{bounded, eventually};
use portcullis_tunnel::config::{BrokerToken, TunnelConfig};
use portcullis_tunnel::server::{RunningTunnel, start};
use tempfile::TempDir;

/// The tunnel group of the test tunnel server.
pub const GROUP: &str = "dc1";

/// How long one step of a test may take before it fails (a 64 MiB transfer of a debug
/// build included).
pub const STEP: Duration = Duration::from_secs(60);

/// Ends a local connection the way a program does (half-close, read to the end), and waits
/// until the forwarder has finished it.
pub async fn close_local(forwarder: &Forwarder, mut local: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    local.shutdown().await.unwrap();
    let mut rest = Vec::new();
    bounded("the close handshake", STEP, local.read_to_end(&mut rest))
        .await
        .unwrap();
    drop(local);
    eventually(
        "the local connection is done",
        Duration::from_secs(20),
        || forwarder.open_connections() == 0,
    )
    .await;
}

/// Installs a log subscriber once (RUST_LOG, default warn), for failing tests' output.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A broker and a tunnel server on loopback.
pub struct Stack {
    pub dir: TempDir,
    pub broker: RunningBroker,
    pub tunnel: Option<RunningTunnel>,
    pub config: TunnelConfig,
    pub token: String,
    user: UserId,
    service: ServiceId,
}

impl Stack {
    /// A stack with the default tunnel configuration (listening on 127.0.0.1:0).
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// A stack whose tunnel configuration `tweak` changed first.
    pub async fn with(tweak: impl FnOnce(&mut TunnelConfig)) -> Self {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker(&dir).await;
        let store = &broker.state.store;
        let now = now_ms();
        let user = store
            .add_user(
                "alice",
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
                now,
            )
            .await
            .unwrap();
        store.add_group("staff").await.unwrap();
        store.add_member("staff", "alice").await.unwrap();
        let service = store
            .add_service(
                NewService {
                    name: "shell".into(),
                    host: "127.0.0.1".into(),
                    port: 22,
                    protocol: Protocol::Ssh,
                    transport: Transport::Tunneled,
                    tunnel_group: Some(GROUP.into()),
                    max_session_secs: 3600,
                    readiness: Readiness::Off,
                    allowed_groups: vec!["staff".into()],
                },
                now,
            )
            .await
            .unwrap();
        let token = format!("sk-{}", TicketId::generate().unwrap().expose());
        store
            .add_tunnel_server(
                NewTunnelServer {
                    name: "t1".into(),
                    public_address: "127.0.0.1:7443".into(),
                    token_hash: TokenHash::of(token.as_bytes()),
                    legacy: false,
                    group: GROUP.into(),
                },
                now,
            )
            .await
            .unwrap();
        let mut config = TunnelConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            ..TunnelConfig::default()
        };
        config.broker.url = broker.base_url();
        tweak(&mut config);
        let mut stack = Self {
            dir,
            broker,
            tunnel: None,
            config,
            token,
            user,
            service,
        };
        stack.start_tunnel().await;
        stack
    }

    /// (Re)starts the tunnel server with `self.config`.
    pub async fn start_tunnel(&mut self) {
        let token = BrokerToken::new(&self.token).unwrap();
        self.tunnel = Some(start(self.config.clone(), token).await.unwrap());
    }

    /// Registers one more tunnel server of group `dc1` at the broker, named `name`, and
    /// starts it with `config` (its broker URL set here).
    pub async fn start_member(&self, name: &str, mut config: TunnelConfig) -> RunningTunnel {
        let token = self.register_member(name).await;
        config.broker.url = self.broker.base_url();
        start(config, BrokerToken::new(&token).unwrap())
            .await
            .unwrap()
    }

    /// Registers one more tunnel server of group `dc1` at the broker; its token.
    pub async fn register_member(&self, name: &str) -> String {
        let token = format!("sk-{}", TicketId::generate().unwrap().expose());
        self.broker
            .state
            .store
            .add_tunnel_server(
                NewTunnelServer {
                    name: name.into(),
                    public_address: "127.0.0.1:7443".into(),
                    token_hash: TokenHash::of(token.as_bytes()),
                    legacy: false,
                    group: GROUP.into(),
                },
                now_ms(),
            )
            .await
            .unwrap();
        token
    }

    /// The running tunnel server.
    pub fn tunnel(&self) -> &RunningTunnel {
        self.tunnel.as_ref().expect("the tunnel server runs")
    }

    /// Where launchers reach the tunnel server.
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.tunnel().local_addrs()[0]
    }

    /// The tunnel server's address for the client.
    pub fn address(&self) -> TunnelAddress {
        TunnelAddress {
            host: "127.0.0.1".into(),
            port: self.tunnel_addr().port(),
            tls: None,
        }
    }

    /// A fresh tunnel ticket for `target` (issued to tunnel group `dc1`), and the tunnel
    /// secret the launcher derives for it.
    pub async fn ticket_to(&self, target: SocketAddr) -> (TicketId, SharedSecret) {
        self.ticket_for_group(target, GROUP).await
    }

    /// A fresh tunnel ticket of tunnel group `group`.
    pub async fn ticket_for_group(
        &self,
        target: SocketAddr,
        group: &str,
    ) -> (TicketId, SharedSecret) {
        let store = &self.broker.state.store;
        let now = now_ms();
        let client = TicketId::generate().unwrap();
        let client_hash = ticket_hash(&client);
        store
            .insert_client_ticket(NewClientTicket {
                id_hash: client_hash,
                status_id: Scrambler::generate().unwrap().as_str().to_owned(),
                user_id: self.user,
                service_id: self.service,
                scrambler: "scrambler".into(),
                client_os: None,
                created_at: now,
                expires_at: now + 60_000,
                credential: None,
            })
            .await
            .unwrap();
        let tunnel = TicketId::generate().unwrap();
        let kem_secret = SharedSecret::generate().unwrap();
        let exchanged = store
            .exchange_client_ticket(
                &client_hash,
                now,
                Some(NewTunnelTicket {
                    id_hash: ticket_hash(&tunnel),
                    secret_enc: seal_secret(&tunnel, &kem_secret).unwrap(),
                    target_host: target.ip().to_string(),
                    target_port: target.port(),
                    service_id: self.service,
                    user_id: self.user,
                    tunnel_group: group.into(),
                    max_session_secs: 3600,
                    created_at: now,
                    expires_at: now + 120_000,
                    issued_to_legacy: false,
                }),
                AuditEvent {
                    actor: None,
                    at: now,
                    kind: "ticket.exchanged".into(),
                    username: Some("alice".into()),
                    service: Some("shell".into()),
                    source_ip: Some("127.0.0.1".into()),
                    detail: String::new(),
                },
            )
            .await
            .unwrap();
        assert!(exchanged);
        let secret = derive_tunnel_secret(&kem_secret, &tunnel).unwrap();
        (tunnel, secret)
    }

    /// A forwarder (the launcher's local endpoint) for a new ticket to `target`.
    pub async fn forwarder(&self, target: SocketAddr) -> Forwarder {
        self.forwarder_with(target, ClientConfig::default()).await
    }

    /// A forwarder with a client configuration.
    pub async fn forwarder_with(&self, target: SocketAddr, config: ClientConfig) -> Forwarder {
        let (ticket, secret) = self.ticket_to(target).await;
        Forwarder::start(self.address(), ticket, secret, config)
            .await
            .unwrap()
    }

    /// The newest audit events of `kind`, newest first.
    pub async fn audit(&self, kind: &str) -> Vec<StoredAuditEvent> {
        self.broker
            .state
            .store
            .audit_tail(200)
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.event.kind == kind)
            .collect()
    }

    /// Waits for the `tunnel.stopped` audit events to reach `count`.
    pub async fn wait_for_stops(&self, count: usize) -> Vec<StoredAuditEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let stops = self.audit("tunnel.stopped").await;
            if stops.len() >= count {
                return stops;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} tunnel.stopped events after 20 s",
                stops.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A metric's value from the tunnel server's registry (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.tunnel().shared().metrics.encode();
        text.lines()
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }
}

async fn start_broker(dir: &TempDir) -> RunningBroker {
    let mut config = BrokerConfig::for_dev(dir.path());
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.tls.mode = TlsMode::Off;
    config.public_url = Some(PublicUrl::parse("https://broker.example").unwrap());
    config.validate().unwrap();
    server::start(config, system_clock()).await.unwrap()
}

/// Credentials of a session no tunnel server knows: the id `session_id` under a fresh key.
pub fn ghost_credentials(session_id: [u8; 16]) -> portcullis_proto::tunnel::SessionCredentials {
    portcullis_proto::tunnel::SessionCredentials::new(
        portcullis_proto::SessionId::from_bytes(session_id),
        portcullis_proto::tunnel::SessionKey::derive(
            &portcullis_proto::SharedSecret::generate().unwrap(),
            &portcullis_proto::TicketId::generate().unwrap(),
        ),
    )
}

/// Now, in the store's Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_millis(SystemTime::now())
}

/// The detail JSON of an audit event.
pub fn detail(event: &StoredAuditEvent) -> serde_json::Value {
    serde_json::from_str(&event.event.detail).unwrap()
}
