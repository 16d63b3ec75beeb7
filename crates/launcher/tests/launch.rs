//! The launcher end to end on loopback: a real broker (HTTPS with its self-signed
//! certificate, SQLite), a real tunnel server, an echo target, the built-in `tcp-linux.js`
//! script; the user's side is a test UI that answers the prompts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_broker::config::BrokerConfig;
use portcullis_broker::password::hash_password;
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::state::system_clock;
use portcullis_broker::store::{
    NewService, NewTunnelServer, Protocol, Readiness, TokenHash, Transport, unix_millis,
};
use portcullis_launcher::failure::Kind;
use portcullis_launcher::launch::{LaunchOptions, launch};
use portcullis_launcher::paths::Dirs;
use portcullis_launcher::script::{HostFuture, ScriptEnv, ScriptLimits};
use portcullis_launcher::ui::Ui;
use portcullis_tunnel::config::{BrokerToken, TunnelConfig};
use portcullis_tunnel::server::RunningTunnel;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const PASSWORD: &str = "correct horse battery staple";

/// A test user: records messages, answers the first-contact prompt, and closes the
/// `waitUntilClosed` window when told.
#[derive(Default)]
struct TestUi {
    messages: Mutex<Vec<String>>,
    shown: Notify,
    /// The close button of the newest window.
    closer: Mutex<Option<Arc<Notify>>>,
    trust: bool,
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
    fn confirm_new_broker(&self, _host: &str, _fingerprint: &str) -> bool {
        self.trust
    }
    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        self.message(text);
        let close = Arc::new(Notify::new());
        let waiter = Arc::clone(&close);
        *self.closer.lock().unwrap() = Some(close);
        Box::pin(async move { waiter.notified().await })
    }
}

struct Stack {
    dir: TempDir,
    broker: RunningBroker,
    _tunnel: RunningTunnel,
    echo: SocketAddr,
    service: i64,
    http: reqwest::Client,
}

impl Stack {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_dev(dir.path());
        // A real port: the links and the portal's origin name it.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        config.validate().unwrap();
        let broker = server::start(config, system_clock()).await.unwrap();
        let ca = ca_file(&dir);
        let echo = echo().await;

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
        let tunnel =
            portcullis_tunnel::server::start(tunnel_config, BrokerToken::new(&token).unwrap())
                .await
                .unwrap();
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
                    public_address: tunnel.local_addrs()[0].to_string(),
                    token_hash: TokenHash::of(token.as_bytes()),
                    legacy: false,
                    group: "dc1".into(),
                },
                now,
            )
            .await
            .unwrap();
        let service = store
            .add_service(
                NewService {
                    name: "echo".into(),
                    host: "127.0.0.1".into(),
                    port: echo.port(),
                    protocol: Protocol::Tcp,
                    transport: Transport::Tunneled,
                    tunnel_group: Some("dc1".into()),
                    max_session_secs: 3600,
                    readiness: Readiness::Off,
                    allowed_groups: vec!["staff".into()],
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
        Self {
            dir,
            broker,
            _tunnel: tunnel,
            echo,
            service: service.0,
            http,
        }
    }

    /// Adds a tunneled service to `target` whose readiness the broker checks.
    async fn checked_service(&self, target: SocketAddr) -> i64 {
        let now = unix_millis(std::time::SystemTime::now());
        self.broker
            .state
            .store
            .add_service(
                NewService {
                    name: "late".into(),
                    host: "127.0.0.1".into(),
                    port: target.port(),
                    protocol: Protocol::Tcp,
                    transport: Transport::Tunneled,
                    tunnel_group: Some("dc1".into()),
                    max_session_secs: 3600,
                    readiness: Readiness::Tcp,
                    allowed_groups: vec!["staff".into()],
                },
                now,
            )
            .await
            .unwrap()
            .0
    }

    /// Signs in and clicks Connect: the `udssv2://` link.
    async fn link(&self) -> String {
        self.link_to(self.service).await
    }

    /// Signs in and clicks Connect on `service`.
    async fn link_to(&self, service: i64) -> String {
        let base = self.broker.base_url();
        let login = self
            .http
            .post(format!("{base}/api/login"))
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(login.status().is_success());
        let cookie = login.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
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

    fn options(&self, url: String, home: &TempDir) -> LaunchOptions {
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

    fn fingerprint(&self) -> String {
        self.broker.state.signing_key.verifying_key().fingerprint()
    }
}

fn ca_file(dir: &TempDir) -> PathBuf {
    portcullis_broker::tls::self_signed_paths(dir.path()).0
}

async fn echo() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    address
}

/// The `host:port` the script's message names.
fn local_address(message: &str) -> SocketAddr {
    let start = message
        .find("127.0.0.1:")
        .expect("an address in the message");
    let text: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.trim_end_matches('.').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunneled_tcp_service_runs_through_the_launcher_and_is_accounted() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let link = stack.link().await;
    let mut options = stack.options(link, &home);
    options.trust_fingerprint = Some(stack.fingerprint().to_uppercase());
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));

    if tokio::time::timeout(Duration::from_secs(30), ui.shown.notified())
        .await
        .is_err()
    {
        panic!(
            "no message from the script: {:?}",
            ui.messages.lock().unwrap()
        );
    }
    let message = ui.messages.lock().unwrap()[0].clone();
    let local = local_address(&message);
    for round in 0..4u8 {
        let mut stream = TcpStream::connect(local).await.unwrap();
        let data = vec![round; 100_000];
        stream.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
    }
    // The user presses Disconnect: the launcher ends its session and returns.
    ui.closer.lock().unwrap().take().unwrap().notify_one();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the launcher ends")
        .unwrap()
        .unwrap();
    // The broker pinned on first contact, and recorded the session's bytes.
    let trust = std::fs::read_to_string(home.path().join("trust.json")).unwrap();
    assert!(trust.contains(&stack.fingerprint()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = stack.broker.state.store.audit_tail(50).await.unwrap();
        if let Some(stop) = events.iter().find(|e| e.event.kind == "tunnel.stopped") {
            let detail: Value = serde_json::from_str(&stop.event.detail).unwrap();
            assert_eq!(detail["recv"], 400_000, "{detail}");
            assert_eq!(detail["sent"], 400_000, "{detail}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no tunnel.stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stack.echo;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_failures_and_bad_links_get_their_own_exit_codes() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let ui: Arc<dyn Ui> = Arc::new(TestUi::default());

    // A link that is not one.
    let bad = launch(
        stack.options("https://example.com/x".into(), &home),
        Arc::clone(&ui),
    )
    .await;
    assert_eq!(bad.unwrap_err().kind, Kind::Usage);

    // An unknown broker, not confirmed: refused, nothing exchanged.
    let link = stack.link().await;
    let untrusted = launch(stack.options(link.clone(), &home), Arc::clone(&ui)).await;
    let failure = untrusted.unwrap_err();
    assert_eq!(failure.kind, Kind::Untrusted, "{}", failure.message);
    assert!(
        failure.message.contains(&stack.fingerprint()),
        "{}",
        failure.message
    );

    // A fingerprint that does not match.
    let mut options = stack.options(link.clone(), &home);
    options.trust_fingerprint = Some("00".repeat(32));
    assert_eq!(
        launch(options, Arc::clone(&ui)).await.unwrap_err().kind,
        Kind::Untrusted
    );

    // A pinned key that is not the broker's: the payload does not verify, and the message
    // says the key changed.
    let other = portcullis_proto::payload::SigningKey::generate().unwrap();
    let mut store =
        portcullis_launcher::trust::TrustStore::load(&home.path().join("trust.json")).unwrap();
    let host = link
        .trim_start_matches("udssv2://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    store.pin(&host, other.verifying_key().clone()).unwrap();
    store.save().unwrap();
    let changed = launch(stack.options(link, &home), Arc::clone(&ui))
        .await
        .unwrap_err();
    assert_eq!(changed.kind, Kind::Untrusted);
    assert!(
        changed.message.contains("different key"),
        "{}",
        changed.message
    );

    // A used or expired ticket: refused by the broker, start again from the portal.
    store.remove(&host);
    store.save().unwrap();
    let mut options = stack.options(
        format!("udssv2://{host}/{}/scrambler", "A".repeat(48)),
        &home,
    );
    options.trust_fingerprint = Some(stack.fingerprint());
    let refused = launch(options, Arc::clone(&ui)).await.unwrap_err();
    assert_eq!(refused.kind, Kind::Refused, "{}", refused.message);
    assert!(refused.message.contains("portal"), "{}", refused.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_its_own_failure() {
    let home = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let options = LaunchOptions {
        url: format!("udssv2://{closed}/{}/scrambler", "A".repeat(48)),
        trust_fingerprint: None,
        ca_file: None,
        dirs: Dirs {
            config: home.path().to_owned(),
            state: home.path().to_owned(),
        },
        max_wait: Duration::from_secs(5),
        limits: ScriptLimits::default(),
        env: ScriptEnv::default(),
    };
    let failure = launch(options, Arc::new(TestUi::default()))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Unreachable, "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparing_service_is_retried_until_the_target_listens() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let service = stack.checked_service(target).await;
    let link = stack.link_to(service).await;
    // The target starts listening a few seconds after the launch.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let listener = TcpListener::bind(target).await.unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let mut options = stack.options(link, &home);
    options.trust_fingerprint = Some(stack.fingerprint());
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = ui
            .messages
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("127.0.0.1:"));
        if shown {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            ui.messages.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = ui.messages.lock().unwrap().clone();
    assert!(
        messages.iter().any(|m| m.starts_with("progress")),
        "the launcher showed the broker's progress: {messages:?}"
    );
    ui.closer.lock().unwrap().take().unwrap().notify_one();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the launcher ends")
        .unwrap()
        .unwrap();
}
