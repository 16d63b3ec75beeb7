//! The stack the launcher tests run against: a real broker (HTTPS with its self-signed
//! certificate, SQLite), a real tunnel server registered at it (optionally behind a
//! cuttable relay), an echo target, and a test UI that answers the prompts.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::clock::{system_clock, unix_millis};
use portcullis_broker::config::BrokerConfig;
use portcullis_broker::password::hash_password;
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::store::{
    NewService, NewTunnelServer, Protocol, Readiness, TokenHash, Transport,
};
use portcullis_launcher::launch::LaunchOptions;
use portcullis_launcher::paths::Dirs;
use portcullis_launcher::script::{HostFuture, ScriptEnv, ScriptLimits};
use portcullis_launcher::ui::Ui;
use portcullis_proto::tunnel::{ClientHello, Command};
use portcullis_testkit::EchoTarget;
pub(crate) use portcullis_testkit::bounded;
use portcullis_tunnel::config::{BrokerToken, TunnelConfig};
use portcullis_tunnel::server::RunningTunnel;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::Notify;

/// Alice's portal password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A test user: records messages, answers the first-contact prompt, and closes the
/// `waitUntilClosed` window when told.
#[derive(Default)]
pub(crate) struct TestUi {
    pub(crate) messages: Mutex<Vec<String>>,
    pub(crate) shown: Notify,
    /// The close button of the newest window.
    pub(crate) closer: Mutex<Option<Arc<Notify>>>,
}

impl TestUi {
    /// Waits for the script's first message and returns it.
    pub(crate) async fn first_message(&self) -> String {
        if tokio::time::timeout(Duration::from_secs(30), self.shown.notified())
            .await
            .is_err()
        {
            panic!("no message from the script: {:?}", self.messages());
        }
        self.messages()[0].clone()
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Presses Disconnect on the newest `waitUntilClosed` window.
    pub(crate) fn disconnect(&self) {
        self.closer.lock().unwrap().take().unwrap().notify_one();
    }
}

impl Ui for TestUi {
    fn progress(&self, _label: &str, percent: u8) {
        self.messages
            .lock()
            .unwrap()
            .push(format!("progress {percent}"));
    }
    fn progress_done(&self) {}
    fn message(&self, text: &str) {
        self.messages.lock().unwrap().push(text.to_owned());
        self.shown.notify_one();
    }
    fn error(&self, text: &str) {
        self.messages.lock().unwrap().push(format!("error: {text}"));
    }
    fn confirm_new_broker(&self, _host: &str, _fingerprint: &str) -> HostFuture<bool> {
        Box::pin(async { false })
    }
    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        self.message(text);
        let close = Arc::new(Notify::new());
        let waiter = Arc::clone(&close);
        *self.closer.lock().unwrap() = Some(close);
        Box::pin(async move { waiter.notified().await })
    }
}

/// How a [`Stack`] differs from the default one.
#[derive(Default)]
pub(crate) struct Setup {
    /// The broker's `scripts_dir`.
    pub(crate) scripts_dir: Option<PathBuf>,
    /// Register the tunnel server at the broker behind a [`Cutter`], so that launchers
    /// reach it through the relay.
    pub(crate) cuttable: bool,
    /// The tunnel server's `timeouts.max_session_secs`.
    pub(crate) max_session_secs: Option<u64>,
    /// The tunnel server speaks TLS, with the broker's self-signed certificate.
    pub(crate) tunnel_tls: bool,
    /// The broker has an SSH user CA, and its certificates are valid this long.
    pub(crate) ssh_ca: Option<u64>,
    /// The broker's `tickets.tunnel_startup_secs`.
    pub(crate) tunnel_startup_secs: Option<u64>,
}

pub(crate) struct Stack {
    pub(crate) dir: TempDir,
    pub(crate) broker: RunningBroker,
    pub(crate) tunnel: RunningTunnel,
    /// The relay in front of the tunnel server, with [`Setup::cuttable`].
    pub(crate) cutter: Option<Cutter>,
    /// A tunneled TCP service to the echo target.
    pub(crate) service: i64,
    http: reqwest::Client,
    /// Alice's portal session, signed in once: the broker limits sign-ins per minute.
    session: tokio::sync::OnceCell<String>,
}

impl Stack {
    pub(crate) async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    pub(crate) async fn with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_dev(dir.path());
        // A real port: the links and the portal's origin name it.
        let port = free_port();
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        config.scripts_dir = setup.scripts_dir;
        if let Some(secs) = setup.ssh_ca {
            config.credentials.ssh_certificate_secs = secs;
            portcullis_broker::credentials::ssh_ca::SshCa::init(
                dir.path(),
                false,
                unix_millis(std::time::SystemTime::now()),
            )
            .unwrap();
        }
        if let Some(secs) = setup.tunnel_startup_secs {
            config.tickets.tunnel_startup_secs = secs;
        }
        config.validate().unwrap();
        let broker = server::start(config, system_clock()).await.unwrap();
        let ca = ca_file(&dir);
        let echo = EchoTarget::start().await.addr;

        let token = format!(
            "sk-{}",
            portcullis_proto::TicketId::generate().unwrap().expose()
        );
        let mut tunnel_config = TunnelConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            ..TunnelConfig::default()
        };
        tunnel_config.broker.url = broker.base_url();
        tunnel_config.broker.ca_file = Some(ca.clone());
        if let Some(secs) = setup.max_session_secs {
            tunnel_config.timeouts.max_session_secs = secs;
        }
        if setup.tunnel_tls {
            let (cert, key) = portcullis_broker::tls::self_signed_paths(dir.path());
            tunnel_config.tls.cert = Some(cert);
            tunnel_config.tls.key = Some(key);
        }
        let tunnel =
            portcullis_tunnel::server::start(tunnel_config, BrokerToken::new(&token).unwrap())
                .await
                .unwrap();
        let cutter = if setup.cuttable {
            Some(Cutter::start(tunnel.local_addrs()[0]).await)
        } else {
            None
        };
        let public_address = cutter
            .as_ref()
            .map_or(tunnel.local_addrs()[0], Cutter::addr);
        let store = &broker.state.store;
        let now = unix_millis(std::time::SystemTime::now());
        store
            .add_user("alice", &hash_password(PASSWORD).unwrap(), now)
            .await
            .unwrap();
        store.add_group("staff").await.unwrap();
        store.add_member("staff", "alice").await.unwrap();
        store
            .add_tunnel_server(
                NewTunnelServer {
                    name: "t1".into(),
                    public_address: public_address.to_string(),
                    token_hash: TokenHash::of(token.as_bytes()),
                    legacy: false,
                    group: "dc1".into(),
                },
                now,
            )
            .await
            .unwrap();
        let pem = std::fs::read(&ca).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let mut stack = Self {
            dir,
            broker,
            tunnel,
            cutter,
            service: 0,
            http,
            session: tokio::sync::OnceCell::new(),
        };
        stack.service = stack
            .add_service("echo", Protocol::Tcp, Transport::Tunneled, echo)
            .await;
        stack
    }

    /// Adds a service to `target` that the staff group may use; its id.
    pub(crate) async fn add_service(
        &self,
        name: &str,
        protocol: Protocol,
        transport: Transport,
        target: SocketAddr,
    ) -> i64 {
        self.add(name, protocol, transport, target, Readiness::Off)
            .await
    }

    /// Adds a tunneled TCP service to `target` whose readiness the broker checks.
    pub(crate) async fn checked_service(&self, target: SocketAddr) -> i64 {
        self.add(
            "late",
            Protocol::Tcp,
            Transport::Tunneled,
            target,
            Readiness::Tcp,
        )
        .await
    }

    async fn add(
        &self,
        name: &str,
        protocol: Protocol,
        transport: Transport,
        target: SocketAddr,
        readiness: Readiness,
    ) -> i64 {
        let now = unix_millis(std::time::SystemTime::now());
        let tunnel_group = (transport == Transport::Tunneled).then(|| "dc1".to_owned());
        self.broker
            .state
            .store
            .add_service(
                NewService {
                    name: name.into(),
                    host: target.ip().to_string(),
                    port: target.port(),
                    protocol,
                    transport,
                    tunnel_group,
                    max_session_secs: 3600,
                    readiness,
                    allowed_groups: vec!["staff".into()],
                },
                now,
            )
            .await
            .unwrap()
            .0
    }

    /// Clicks Connect on the echo service: the `udssv2://` link.
    pub(crate) async fn link(&self) -> String {
        self.link_to(self.service).await
    }

    /// Clicks Connect on `service` (signed in).
    pub(crate) async fn link_to(&self, service: i64) -> String {
        let base = self.broker.base_url();
        let cookie = self.session.get_or_init(|| self.sign_in()).await;
        let connect: Value = self
            .http
            .post(format!("{base}/api/services/{service}/connect"))
            .header(reqwest::header::COOKIE, cookie)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        connect["url"].as_str().unwrap().to_owned()
    }

    /// Signs in as alice: the session cookie.
    async fn sign_in(&self) -> String {
        let login = self
            .http
            .post(format!("{}/api/login", self.broker.base_url()))
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(login.status().is_success(), "{}", login.status());
        login.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// Launch options for `url` with the user's files in `home` (nothing pinned yet).
    pub(crate) fn options(&self, url: String, home: &TempDir) -> LaunchOptions {
        LaunchOptions {
            url,
            trust_fingerprint: None,
            ca_file: Some(ca_file(&self.dir)),
            dirs: Dirs {
                config: home.path().to_owned(),
                state: home.path().to_owned(),
            },
            max_wait: Duration::from_secs(20),
            limits: ScriptLimits::default(),
            env: ScriptEnv::default(),
        }
    }

    /// Launch options for `url` that confirm the broker's fingerprint on first contact.
    pub(crate) fn trusting_options(&self, url: String, home: &TempDir) -> LaunchOptions {
        let mut options = self.options(url, home);
        options.trust_fingerprint = Some(self.fingerprint());
        options
    }

    pub(crate) fn fingerprint(&self) -> String {
        self.broker.state.signing_key.verifying_key().fingerprint()
    }

    /// Sessions the tunnel server ended for `reason` (`end_session`: the launcher's
    /// `EndSession`).
    pub(crate) fn sessions_ended(&self, reason: &str) -> u64 {
        let metrics = self.tunnel.shared().metrics.encode();
        let label = format!("portcullis_tunnel_sessions_ended_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&label))
            .map_or(0, |count| count.trim().parse().unwrap())
    }

    /// Waits until the tunnel server ended a session because the launcher sent
    /// `EndSession`.
    pub(crate) async fn end_session_reached_the_tunnel_server(&self) {
        bounded(
            "EndSession at the tunnel server",
            Duration::from_secs(20),
            async {
                while self.sessions_ended("end_session") == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await;
    }

    /// Waits for the broker's `tunnel.stopped` audit event and returns its detail.
    pub(crate) async fn tunnel_stopped(&self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.broker.state.store.audit_tail(50).await.unwrap();
            if let Some(stop) = events.iter().find(|e| e.event.kind == "tunnel.stopped") {
                return serde_json::from_str(&stop.event.detail).unwrap();
            }
            assert!(tokio::time::Instant::now() < deadline, "no tunnel.stopped");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) fn ca_file(dir: &TempDir) -> PathBuf {
    portcullis_broker::tls::self_signed_paths(dir.path()).0
}

pub(crate) use portcullis_testkit::free_port;

/// The `host:port` the script's message names.
pub(crate) fn local_address(message: &str) -> SocketAddr {
    let start = message
        .find("127.0.0.1:")
        .expect("an address in the message");
    let text: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.trim_end_matches('.').parse().unwrap()
}

/// testkit's cutting relay between the launcher and the tunnel server, which can also drop
/// the connections that resume a data connection.
pub(crate) struct Cutter {
    relay: portcullis_testkit::Cutter,
    /// `Resume` connections still to be dropped at once, unrelayed.
    refuse: Arc<AtomicUsize>,
}

impl Cutter {
    async fn start(upstream: SocketAddr) -> Self {
        let refuse = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::clone(&refuse);
        // The hello's fixed prefix says the command (the tests' tunnel has no TLS): only
        // resumes are refused, holds and attaches pass.
        let prefix = ClientHello::wanted_len(&[]);
        let relay = portcullis_testkit::Cutter::gated(upstream, prefix, move |head| {
            head.last().copied().and_then(Command::from_u8) != Some(Command::Resume)
                || refusing
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
        })
        .await;
        Self { relay, refuse }
    }

    /// Where launchers reach the tunnel server.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.relay.addr
    }

    /// Drops the next `count` connections that resume a data connection at once, as an
    /// unreachable server would (the session's hold and new connections still pass).
    pub(crate) fn refuse_next(&self, count: usize) {
        self.refuse.store(count, Ordering::SeqCst);
    }

    /// TCP connections relayed since the start.
    pub(crate) fn accepted(&self) -> usize {
        self.relay.accepted()
    }

    /// Cuts every connection relayed now (both sides see the TCP connection end).
    pub(crate) fn cut_all(&self) {
        self.relay.cut_all();
    }
}

/// A running SHA-256 (aws-lc-rs, through rustls's provider: no extra dependency).
pub(crate) fn sha256() -> Box<dyn rustls::crypto::hash::Context> {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    suite.tls13().unwrap().common.hash_provider.start()
}
