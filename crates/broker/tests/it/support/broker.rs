//! Real brokers on loopback for the HTTP tests, and the three parties that talk to them.
//!
//! - [`TestBroker`]: a broker started with `server::start` on `127.0.0.1:0`, HTTPS with
//!   its self-signed certificate (which the test's HTTP client trusts, and nothing else),
//!   SQLite in a temporary directory unless [`BrokerBuilder::database`] says otherwise,
//!   and a [`TestClock`] the test moves to expire tickets without sleeping.
//! - The portal user: [`TestBroker::login`], [`TestBroker::connect`], … with a
//!   [`Session`] cookie.
//! - The launcher: [`Launcher`] (a fresh ML-KEM-768 key per launcher, with or without the
//!   Portcullis `client` extension) and what it opens, [`Opened`].
//! - The tunnel server: [`TunnelServer`] (its bearer token and ML-KEM-768 key), and
//!   [`proof_for`] to make the launcher's handshake proof.
//! - [`World`]: the users, services and tunnel servers most tests start from.
//!
//! Every network call is bounded by [`IO_TIMEOUT`] ([`bounded`]); every listener binds
//! `127.0.0.1` only.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use portcullis_broker::clock::{Clock, unix_millis};
use portcullis_broker::config::{BrokerConfig, DatabaseUrl, PublicUrl, TlsMode};
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::state::AppState;
use portcullis_broker::store::{
    NewService, NewTunnelServer, Protocol, Readiness, ServiceId, Store, TokenHash, Transport,
};
use portcullis_broker::tls::self_signed_paths;
use portcullis_proto::api::{
    Answer, ClientInfo, ErrorBody, LaunchUrl, StartProof, TUNNEL_TICKET_PATH, TicketRequest,
    TunnelRequest, TunnelStart, capability, ticket_exchange_path,
};
use portcullis_proto::kem::{DecapsulationKey, EncapsulationKey};
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::{
    self, DecodedPayload, SignaturePolicy, VerifiedPayload, VerifyingKey,
};
use portcullis_proto::tunnel::{compute_open_proof, derive_tunnel_secret};
use portcullis_proto::{SharedSecret, TicketId};
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// The longest any one network call (or broker start, or shutdown) may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The password of every test user.
pub const PASSWORD: &str = "Demo-Passw0rd!correct-horse";
/// The launcher download link the test brokers are configured with.
pub const CLIENT_LINK: &str = "https://portcullis.example/download";
/// A client ticket's lifetime (the broker's default).
pub const CLIENT_TICKET_TTL: Duration = Duration::from_secs(60);

/// Awaits `future`, failing the test if it takes longer than [`IO_TIMEOUT`].
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    portcullis_testkit::bounded(what, IO_TIMEOUT, future).await
}

// ---------------------------------------------------------------------------------------
// Time

/// The broker's clock in a test: starts at the real time and moves only when told.
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock at the current system time.
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(unix_millis(
            std::time::SystemTime::now(),
        ))))
    }

    /// The clock to hand to `server::start`.
    pub fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    /// The current test time, Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).expect("a short duration");
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// Targets

/// A TCP service on loopback that accepts connections and closes them at once: what the
/// broker's readiness check connects to. Stops listening when dropped.
#[derive(Debug)]
pub struct Target {
    /// Its port on 127.0.0.1.
    pub port: u16,
    acceptor: JoinHandle<()>,
}

impl Target {
    /// A target on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding a target");
        Self::serve(listener)
    }

    /// A target on `port` (a port the test saw closed before).
    pub async fn on_port(port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap_or_else(|error| panic!("binding the target port {port} again: {error}"));
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Self {
        let port = listener.local_addr().expect("target address").port();
        let acceptor = tokio::spawn(async move {
            // Accept (so the backlog never fills) and close.
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        Self { port, acceptor }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// A loopback port on which nothing listens (it was free a moment ago).
pub use portcullis_testkit::free_port as closed_port;

// ---------------------------------------------------------------------------------------
// Brokers

/// A change to the configuration before the broker starts.
type Tweak = Box<dyn FnOnce(&mut BrokerConfig)>;

/// How to start a [`TestBroker`]; see [`TestBroker::builder`].
pub struct BrokerBuilder {
    database_url: Option<String>,
    data_dir: Option<Arc<TempDir>>,
    clock: Option<TestClock>,
    tweaks: Vec<Tweak>,
}

impl BrokerBuilder {
    /// Uses this database (a PostgreSQL URL from `support::postgres_url`) instead of a
    /// fresh SQLite file.
    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// Shares `other`'s data directory (signing key and TLS certificate) and clock: a
    /// second broker of the same deployment.
    pub fn sibling_of(mut self, other: &TestBroker) -> Self {
        self.data_dir = Some(Arc::clone(&other.dir));
        self.clock = Some(other.clock.clone());
        self
    }

    /// Serves plain HTTP, as behind a TLS-terminating proxy at `https://broker.example`
    /// (so that a test can speak raw HTTP/1.1 to it).
    pub fn plain_http(self) -> Self {
        self.config(|config| {
            config.tls.mode = TlsMode::Off;
            config.public_url = Some(PublicUrl::parse("https://broker.example").expect("a URL"));
        })
    }

    /// Creates an SSH user CA in the data directory before the broker starts.
    pub fn ssh_ca(self) -> Self {
        self.config(|config| {
            let now = portcullis_broker::clock::unix_millis(std::time::SystemTime::now());
            portcullis_broker::credentials::ssh_ca::SshCa::init(&config.data_dir, false, now)
                .expect("an SSH CA");
        })
    }

    /// Changes the configuration before the broker starts.
    pub fn config(mut self, tweak: impl FnOnce(&mut BrokerConfig) + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Starts the broker and an HTTP client that trusts (only) its certificate.
    pub async fn start(self) -> TestBroker {
        let dir = match self.data_dir {
            Some(dir) => dir,
            None => Arc::new(tempfile::tempdir().expect("temporary directory")),
        };
        let clock = self.clock.unwrap_or_default();
        let mut config = BrokerConfig::for_dev(dir.path());
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        config.client.client_link = Some(CLIENT_LINK.to_owned());
        if let Some(url) = &self.database_url {
            config.database_url = Some(DatabaseUrl::parse(url).expect("a database URL"));
        }
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        config.validate().expect("the test configuration is valid");
        let tls = config.tls.mode != TlsMode::Off;
        let running = bounded("starting the broker", server::start(config, clock.clock()))
            .await
            .expect("the broker starts");
        let http = http_client(tls.then(|| self_signed_paths(dir.path()).0).as_deref());
        let base = running.base_url();
        TestBroker {
            running: Some(running),
            clock,
            http,
            base,
            dir,
        }
    }
}

/// An HTTP client for loopback: no proxy, bounded requests, and, with `root`, HTTPS
/// that trusts that certificate alone.
pub fn http_client(root: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(IO_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(root) = root {
        let pem = std::fs::read(root).expect("reading the broker's certificate");
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
            .https_only(true);
    }
    builder.build().expect("an HTTP client")
}

/// A running broker, its clock, and an HTTP client for it.
pub struct TestBroker {
    running: Option<RunningBroker>,
    /// The broker's clock.
    pub clock: TestClock,
    /// A client that trusts the broker's certificate.
    pub http: reqwest::Client,
    /// `https://127.0.0.1:PORT` (or `http://` with TLS off).
    pub base: String,
    dir: Arc<TempDir>,
}

/// An HTTP answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The body as JSON (fails the test if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!("not JSON ({error}): HTTP {} {:?}", self.status, self.body)
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Sends a request, bounded by [`IO_TIMEOUT`], and reads the whole answer.
pub async fn send(request: RequestBuilder) -> Reply {
    bounded("an HTTP request", async move {
        let response = request.send().await.expect("the HTTP request completes");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("reading the answer");
        Reply {
            status,
            headers,
            body,
        }
    })
    .await
}

impl TestBroker {
    /// A broker with the default test configuration (HTTPS, SQLite).
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A broker with other settings.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            database_url: None,
            data_dir: None,
            clock: None,
            tweaks: Vec::new(),
        }
    }

    fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("the broker is running")
    }

    /// The broker's shared state.
    pub fn state(&self) -> &AppState {
        &self.running().state
    }

    /// The broker's store (the test sets up users and services through it).
    pub fn store(&self) -> &Store {
        &self.state().store
    }

    /// The broker's public key, as a launcher pins it.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.state().signing_key.verifying_key().clone()
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running().addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the broker (letting requests in flight finish).
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            bounded(
                "shutting the broker down",
                running.shutdown(Duration::from_secs(5)),
            )
            .await;
        }
    }

    /// `GET path`, with the session cookie when given.
    pub async fn get(&self, path: &str, session: Option<&Session>) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(session) = session {
            request = request.header(COOKIE, session.cookie());
        }
        send(request).await
    }

    /// `POST path` with a JSON body, with the session cookie when given.
    pub async fn post_json(&self, path: &str, body: &Value, session: Option<&Session>) -> Reply {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(session) = session {
            request = request.header(COOKIE, session.cookie());
        }
        send(request).await
    }

    // --- set-up through the store ------------------------------------------------------

    /// Adds a user with [`PASSWORD`] and puts them in `groups` (created when missing).
    pub async fn add_user(&self, name: &str, groups: &[&str]) {
        let store = self.store();
        store
            .add_user(name, &cheap_password_hash(PASSWORD), self.clock.now())
            .await
            .expect("adding a user");
        for group in groups {
            self.ensure_group(group).await;
            store
                .add_member(group, name)
                .await
                .expect("adding a member");
        }
    }

    /// Creates `group` unless it exists.
    pub async fn ensure_group(&self, group: &str) {
        let store = self.store();
        let groups = store.list_groups().await.expect("listing groups");
        if !groups.iter().any(|known| known.name == group) {
            store.add_group(group).await.expect("adding a group");
        }
    }

    /// Adds a service (its allowed groups must exist).
    pub async fn add_service(&self, service: NewService) -> ServiceId {
        for group in &service.allowed_groups {
            self.ensure_group(group).await;
        }
        self.store()
            .add_service(service, self.clock.now())
            .await
            .expect("adding a service")
    }

    /// Registers a tunnel server in `group` with a fresh `sk-` token.
    pub async fn add_tunnel_server(&self, name: &str, group: &str, legacy: bool) -> TunnelServer {
        let token = format!("sk-{}", TicketId::generate().expect("random").expose());
        let public_address = format!("{name}.example:7443");
        self.store()
            .add_tunnel_server(
                NewTunnelServer {
                    name: name.to_owned(),
                    public_address: public_address.clone(),
                    token_hash: TokenHash::of(token.as_bytes()),
                    legacy,
                    group: group.to_owned(),
                },
                self.clock.now(),
            )
            .await
            .expect("registering a tunnel server");
        TunnelServer {
            token,
            key: DecapsulationKey::generate().expect("an ML-KEM-768 key"),
        }
    }

    /// The standard test world; see [`World`].
    pub async fn world(&self) -> World {
        let target = Target::start().await;
        self.add_user("alice", &["staff"]).await;
        self.add_user("bob", &["admins"]).await;
        let desk = self
            .add_service(direct_service("desk", target.port, &["staff"]))
            .await;
        let vault = self
            .add_service(direct_service("vault", target.port, &["admins"]))
            .await;
        let shell = self
            .add_service(tunneled_service("shell", target.port, "dc1", &["staff"]))
            .await;
        let old_app = self
            .add_service(tunneled_service(
                "old-app",
                target.port,
                "legacy",
                &["staff"],
            ))
            .await;
        let dc1 = self.add_tunnel_server("tunnel-dc1", "dc1", false).await;
        let legacy = self
            .add_tunnel_server("tunnel-legacy", "legacy", true)
            .await;
        let dc2 = self.add_tunnel_server("tunnel-dc2", "dc2", false).await;
        World {
            target,
            desk,
            vault,
            shell,
            old_app,
            dc1,
            legacy,
            dc2,
        }
    }

    // --- the portal user ---------------------------------------------------------------

    /// `POST /api/login`, whatever the outcome.
    pub async fn try_login(&self, username: &str, password: &str) -> Reply {
        self.post_json(
            "/api/login",
            &json!({ "username": username, "password": password }),
            None,
        )
        .await
    }

    /// Signs in (which must succeed) and returns the session cookie.
    pub async fn login(&self, username: &str, password: &str) -> Session {
        let reply = self.try_login(username, password).await;
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.body);
        assert_eq!(reply.json(), json!({ "username": username }));
        Session::from_reply(&reply)
    }

    /// `GET /api/services` (which must succeed).
    pub async fn services(&self, session: &Session) -> Vec<Value> {
        let reply = self.get("/api/services", Some(session)).await;
        assert_eq!(reply.status, StatusCode::OK, "services: {}", reply.body);
        match reply.json() {
            Value::Array(services) => services,
            other => panic!("services: not an array: {other}"),
        }
    }

    /// `POST /api/services/{id}/connect`, whatever the outcome.
    pub async fn try_connect(&self, session: &Session, service: i64) -> Reply {
        self.post_json(
            &format!("/api/services/{service}/connect"),
            &json!({}),
            Some(session),
        )
        .await
    }

    /// Starts a connection (which must succeed): the launch URL and the status URL.
    pub async fn connect(&self, session: &Session, service: ServiceId) -> Launch {
        let reply = self.try_connect(session, service.0).await;
        assert_eq!(reply.status, StatusCode::OK, "connect: {}", reply.body);
        let answer = reply.json();
        let url = answer["url"].as_str().expect("a launch URL");
        let status_url = answer["status_url"].as_str().expect("a status URL");
        Launch {
            url: LaunchUrl::parse(url).expect("a valid udssv2:// URL"),
            status_url: status_url.to_owned(),
        }
    }

    /// The connection's state as the portal polls it (`{"state": …}`).
    pub async fn connection_state(&self, session: &Session, launch: &Launch) -> Value {
        let reply = self.get(&launch.status_url, Some(session)).await;
        assert_eq!(reply.status, StatusCode::OK, "status: {}", reply.body);
        reply.json()
    }

    // --- the launcher's side of the client API ---------------------------------------

    /// `POST /uds/rest/client/{ticket}/ticket` with a raw body.
    pub async fn exchange_raw(&self, ticket: &str, body: Vec<u8>) -> Reply {
        send(
            self.http
                .post(self.url(&format!("/uds/rest/client/{ticket}/ticket")))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Exchanges a raw body and expects the error envelope (with HTTP 200).
    pub async fn refusal(&self, ticket: &str, body: Vec<u8>) -> ErrorBody {
        let reply = self.exchange_raw(ticket, body).await;
        match answer_of(&reply) {
            Answer::Error(error) => error,
            Answer::Result(_) => panic!("expected a refusal, got a payload"),
        }
    }

    // --- the tunnel server's side ------------------------------------------------------

    /// `POST /uds/rest/tunnel/ticket` with `Authorization: <authorization>` (if any).
    pub async fn tunnel_api(&self, authorization: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(self.url(TUNNEL_TICKET_PATH))
            .header("content-type", "application/json")
            .body(body);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        send(request).await
    }

    /// `POST /uds/rest/tunnel/control` with `Authorization: <authorization>` (if any).
    pub async fn control_api(&self, authorization: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(self.url(portcullis_proto::api::CONTROL_PATH))
            .header("content-type", "application/json")
            .body(body);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        send(request).await
    }

    // --- operations --------------------------------------------------------------------

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body
    }
}

/// Sends `head` (request line and headers, no body) over plain TCP to a broker running
/// without TLS, and returns everything it answers until it closes the connection.
///
/// For requests that announce a body the broker refuses from the headers alone: sending
/// no body means the broker's early close cannot reset the connection under our feet.
pub async fn raw_http(addr: SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded("a raw HTTP exchange", async move {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connecting");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("writing the head");
        let mut answer = Vec::new();
        // The broker closes after its answer; a reset after the answer is fine too.
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
}

/// Parses a client-API answer, which is always HTTP 200.
pub fn answer_of(reply: &Reply) -> Answer<Envelope> {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the client API answers HTTP 200: {}",
        reply.body
    );
    Answer::from_json(reply.body.as_bytes())
        .unwrap_or_else(|error| panic!("not a client-API answer ({error}): {}", reply.body))
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .map_or(0.0, |(_, value)| value.parse().expect("a number"))
}

/// A cheap Argon2id hash of `password` (8 KiB, one pass). The broker verifies with the
/// parameters stored in the hash, so logins stay fast in debug builds; the production
/// parameters are exercised once, in the user API tests.
pub fn cheap_password_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hashing")
        .to_string()
}

/// A direct TCP service on 127.0.0.1:`port`, granted to `groups`.
pub fn direct_service(name: &str, port: u16, groups: &[&str]) -> NewService {
    NewService {
        name: name.to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        protocol: Protocol::Tcp,
        transport: Transport::Direct,
        tunnel_group: None,
        max_session_secs: 3600,
        readiness: Readiness::Tcp,
        allowed_groups: groups.iter().map(|group| (*group).to_owned()).collect(),
    }
}

/// A tunneled SSH service on 127.0.0.1:`port` behind tunnel group `tunnel_group`.
pub fn tunneled_service(name: &str, port: u16, tunnel_group: &str, groups: &[&str]) -> NewService {
    NewService {
        name: name.to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        protocol: Protocol::Ssh,
        transport: Transport::Tunneled,
        tunnel_group: Some(tunnel_group.to_owned()),
        max_session_secs: 3600,
        readiness: Readiness::Tcp,
        allowed_groups: groups.iter().map(|group| (*group).to_owned()).collect(),
    }
}

/// What most tests start from:
///
/// | user | groups |
/// |---|---|
/// | `alice` | `staff` |
/// | `bob` | `admins` |
///
/// | service | transport | granted to | target |
/// |---|---|---|---|
/// | `desk` (tcp) | direct | `staff` | `target` |
/// | `vault` (tcp) | direct | `admins` | `target` |
/// | `shell` (ssh) | tunneled, group `dc1` | `staff` | `target` |
/// | `old-app` (ssh) | tunneled, group `legacy` | `staff` | `target` |
///
/// Tunnel servers: `dc1` (v1, group `dc1`), `legacy` (legacy, group `legacy`), `dc2`
/// (v1, group `dc2`, which no service uses).
pub struct World {
    /// The listener every service points at.
    pub target: Target,
    /// `desk`.
    pub desk: ServiceId,
    /// `vault`.
    pub vault: ServiceId,
    /// `shell`.
    pub shell: ServiceId,
    /// `old-app`.
    pub old_app: ServiceId,
    /// The v1 tunnel server of `dc1`.
    pub dc1: TunnelServer,
    /// The legacy tunnel server of `legacy`.
    pub legacy: TunnelServer,
    /// The v1 tunnel server of `dc2`.
    pub dc2: TunnelServer,
}

// ---------------------------------------------------------------------------------------
// The portal user

/// A signed-in user's session cookie.
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie's value (a secret).
    pub token: String,
    /// The whole `Set-Cookie` header it came in.
    pub set_cookie: String,
}

impl Session {
    /// The session cookie of a login answer.
    pub fn from_reply(reply: &Reply) -> Self {
        let set_cookie = reply
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("portcullis_session="))
            .expect("a session cookie")
            .to_owned();
        let token = set_cookie
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .map(|(_, value)| value.to_owned())
            .expect("a cookie value");
        Self { token, set_cookie }
    }

    /// The `Cookie` header.
    pub fn cookie(&self) -> String {
        format!("portcullis_session={}", self.token)
    }

    /// The cookie's attributes (`HttpOnly`, `SameSite=Strict`, …), without the value.
    pub fn attributes(&self) -> Vec<String> {
        self.set_cookie
            .split(';')
            .skip(1)
            .map(|attribute| attribute.trim().to_owned())
            .collect()
    }
}

/// What `connect` answers.
#[derive(Debug)]
pub struct Launch {
    /// The `udssv2://` URL.
    pub url: LaunchUrl,
    /// Where the portal polls the connection's state.
    pub status_url: String,
}

impl Launch {
    /// The client ticket.
    pub fn ticket(&self) -> &TicketId {
        self.url.ticket()
    }
}

// ---------------------------------------------------------------------------------------
// The launcher

/// A launcher with a fresh ML-KEM-768 key.
pub struct Launcher {
    key: DecapsulationKey,
    client: Option<ClientInfo>,
}

/// What a launcher gets from a successful exchange.
pub struct Opened {
    /// The decrypted payload document as JSON, before decoding.
    pub document: Value,
    /// The payload, verified as the launcher verifies it under the broker's key.
    pub payload: VerifiedPayload,
    /// The KEM shared secret (the tunnel secret of a tunneled service).
    pub secret: SharedSecret,
    /// The decrypted payload, to decode again.
    plaintext: Zeroizing<Vec<u8>>,
}

impl Opened {
    /// The payload decoded again, unverified: to verify it under other keys or policies.
    pub fn decode_again(&self) -> DecodedPayload {
        payload::decode(&self.plaintext).expect("the payload decodes")
    }

    /// The members of the payload document, sorted.
    pub fn members(&self) -> Vec<&str> {
        let mut members: Vec<&str> = self
            .document
            .as_object()
            .expect("the payload is a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        members
    }

    /// The params document.
    pub fn params(&self) -> &Value {
        self.payload.params_json()
    }

    /// The tunnel secret `S` the launcher derives for a v1 tunnel server (the KEM secret
    /// itself for an OpenUDS 5 tunnel server).
    pub fn tunnel_secret(&self) -> SharedSecret {
        if self.params()["tunnel"]["protocol"] == "v1" {
            derive_tunnel_secret(&self.secret, &self.tunnel_ticket()).expect("derivation")
        } else {
            self.secret.duplicate()
        }
    }

    /// The tunnel ticket of a tunneled service's params.
    pub fn tunnel_ticket(&self) -> TicketId {
        let text = self.params()["tunnel"]["ticket"]
            .as_str()
            .expect("a tunnel ticket in the params");
        TicketId::parse(text).expect("a valid tunnel ticket")
    }
}

impl Launcher {
    /// The Portcullis launcher: announces `payload-signature` and `tunnel-v1`.
    pub fn portcullis() -> Self {
        Self::with_capabilities(&[capability::PAYLOAD_SIGNATURE, capability::TUNNEL_V1])
    }

    /// A launcher with the `client` extension and these capabilities.
    pub fn with_capabilities(capabilities: &[&str]) -> Self {
        Self {
            key: DecapsulationKey::generate().expect("an ML-KEM-768 key"),
            client: Some(ClientInfo {
                name: "portcullis-launcher".to_owned(),
                version: "0.1.0".to_owned(),
                os: "linux".to_owned(),
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
                ssh_public_key: None,
            }),
        }
    }

    /// The Portcullis launcher that also sends this SSH public key (an OpenSSH line) with
    /// the `ssh-certificate` capability.
    pub fn with_ssh_key(line: &str) -> Self {
        let mut launcher = Self::with_capabilities(&[
            capability::PAYLOAD_SIGNATURE,
            capability::TUNNEL_V1,
            capability::SSH_CERTIFICATE,
        ]);
        if let Some(client) = &mut launcher.client {
            client.ssh_public_key = Some(line.to_owned());
        }
        launcher
    }

    /// An OpenUDS 5 launcher: no `client` extension.
    pub fn openuds5() -> Self {
        Self {
            key: DecapsulationKey::generate().expect("an ML-KEM-768 key"),
            client: None,
        }
    }

    /// The key the launcher sends.
    pub fn public_key(&self) -> &EncapsulationKey {
        self.key.encapsulation_key()
    }

    /// The payload signatures the launcher accepts: it requires the payload signature
    /// when it announces the capability.
    pub fn signature_policy(&self) -> SignaturePolicy {
        let announced = self
            .client
            .as_ref()
            .is_some_and(|client| client.has_capability(capability::PAYLOAD_SIGNATURE));
        if announced {
            SignaturePolicy::Required
        } else {
            SignaturePolicy::IfPresent
        }
    }

    /// The ticket request for `url`.
    pub fn request(&self, url: &LaunchUrl) -> TicketRequest {
        TicketRequest::new(
            url.scrambler(),
            self.public_key(),
            "launcher-host",
            self.client.clone(),
        )
    }

    /// Exchanges the ticket of `url`: the opened and verified payload, or the error
    /// envelope.
    pub async fn exchange(
        &self,
        broker: &TestBroker,
        url: &LaunchUrl,
    ) -> Result<Opened, ErrorBody> {
        self.send(broker, url.ticket(), &self.request(url)).await
    }

    /// Sends `request` for `ticket`, opens the answer and verifies it under `broker`'s key.
    pub async fn send(
        &self,
        broker: &TestBroker,
        ticket: &TicketId,
        request: &TicketRequest,
    ) -> Result<Opened, ErrorBody> {
        let body = serde_json::to_vec(request).expect("serializing a ticket request");
        let reply = send(
            broker
                .http
                .post(broker.url(&ticket_exchange_path(ticket)))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        match answer_of(&reply) {
            Answer::Result(envelope) => Ok(self.open(&envelope, ticket, &broker.verifying_key())),
            Answer::Error(error) => Err(error),
        }
    }

    /// Opens an envelope for `ticket`, decodes the payload and checks every signature as
    /// this launcher would, pinning `broker_key`.
    pub fn open(
        &self,
        envelope: &Envelope,
        ticket: &TicketId,
        broker_key: &VerifyingKey,
    ) -> Opened {
        let (plaintext, secret) = envelope
            .open(&self.key, ticket)
            .expect("the envelope opens with the launcher's key and ticket");
        let document = serde_json::from_slice(&plaintext).expect("the payload is JSON");
        let payload = payload::decode(&plaintext)
            .expect("the payload decodes")
            .verify(
                broker_key,
                ticket,
                self.public_key(),
                self.signature_policy(),
            )
            .expect("the payload verifies under the broker's key");
        Opened {
            document,
            payload,
            secret,
            plaintext,
        }
    }

    /// Exchanges, expecting success.
    pub async fn exchange_verified(&self, broker: &TestBroker, url: &LaunchUrl) -> Opened {
        match self.exchange(broker, url).await {
            Ok(opened) => opened,
            Err(error) => panic!("the exchange was refused: {error:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tunnel server

/// A registered tunnel server: its bearer token and its ML-KEM-768 key.
pub struct TunnelServer {
    /// Its bearer token (`sk-…`), a secret.
    pub token: String,
    key: DecapsulationKey,
}

/// The launcher address a test tunnel server reports unless told otherwise.
pub const LAUNCHER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

impl TunnelServer {
    /// The `Authorization` header.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Sends a raw body with this server's token.
    pub async fn post(&self, broker: &TestBroker, body: Vec<u8>) -> Reply {
        broker.tunnel_api(Some(&self.authorization()), body).await
    }

    /// The body of a `start` for `ticket`, for a launcher at 192.0.2.7.
    pub fn start_body(&self, ticket: &TicketId, proof: Option<&StartProof>) -> Vec<u8> {
        self.start_body_from(ticket, LAUNCHER_ADDRESS, proof)
    }

    /// The body of a `start` for `ticket`, for a launcher at `source`.
    pub fn start_body_from(
        &self,
        ticket: &TicketId,
        source: IpAddr,
        proof: Option<&StartProof>,
    ) -> Vec<u8> {
        let request = TunnelRequest::start(ticket, source, self.key.encapsulation_key(), proof);
        serde_json::to_vec(&request).expect("serializing")
    }

    /// `start` for `ticket` on behalf of a launcher at `source`, whatever the outcome.
    pub async fn start_from(
        &self,
        broker: &TestBroker,
        ticket: &TicketId,
        source: IpAddr,
        proof: Option<&StartProof>,
    ) -> Reply {
        self.post(broker, self.start_body_from(ticket, source, proof))
            .await
    }

    /// `start` for `ticket`, whatever the outcome.
    pub async fn start(
        &self,
        broker: &TestBroker,
        ticket: &TicketId,
        proof: Option<&StartProof>,
    ) -> Reply {
        self.post(broker, self.start_body(ticket, proof)).await
    }

    /// `start` that must succeed: the opened answer.
    pub async fn redeem(
        &self,
        broker: &TestBroker,
        ticket: &TicketId,
        proof: Option<&StartProof>,
    ) -> TunnelStart {
        let reply = self.start(broker, ticket, proof).await;
        assert_eq!(reply.status, StatusCode::OK, "start: {}", reply.body);
        self.open_start(&reply, ticket)
    }

    /// Opens a `start` answer (an envelope not wrapped in `result`) for `ticket`.
    pub fn open_start(&self, reply: &Reply, ticket: &TicketId) -> TunnelStart {
        let envelope: Envelope =
            serde_json::from_str(&reply.body).expect("a start answer is an envelope");
        let (plaintext, _) = envelope
            .open(&self.key, ticket)
            .expect("the start answer opens with the tunnel server's key and ticket");
        TunnelStart::from_json(&plaintext).expect("a valid start plaintext")
    }

    /// A control request (docs/protocol.md §7.8) with this server's token.
    pub async fn control(&self, broker: &TestBroker, body: &Value) -> Reply {
        broker
            .control_api(Some(&self.authorization()), body.to_string().into_bytes())
            .await
    }

    /// `stop` for `notify`.
    pub async fn stop(
        &self,
        broker: &TestBroker,
        notify: &TicketId,
        sent: u64,
        recv: u64,
    ) -> Reply {
        let body = serde_json::to_vec(&TunnelRequest::stop(notify, sent, recv)).expect("json");
        self.post(broker, body).await
    }
}

/// The launcher's `Open` proof of `secret` for `ticket`, with fresh randoms.
pub fn proof_for(secret: &SharedSecret, ticket: &TicketId) -> StartProof {
    let client_random = portcullis_proto::random::array().expect("random");
    let server_random = portcullis_proto::random::array().expect("random");
    StartProof {
        client_random,
        server_random,
        proof: compute_open_proof(secret, ticket, &client_random, &server_random)
            .expect("computing the proof"),
    }
}

/// A proof made with the wrong secret.
pub fn wrong_proof(ticket: &TicketId) -> StartProof {
    proof_for(&SharedSecret::generate().expect("random"), ticket)
}

/// Checks the one refusal of the tunnel-server API.
#[track_caller]
pub fn assert_access_denied(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "error": "Access denied" }));
}

/// A tunneled launch as far as the launcher gets: the tunnel ticket and its secret.
pub struct TunneledLaunch {
    /// The tunnel ticket from the params.
    pub ticket: TicketId,
    /// The tunnel secret the launcher derived (§6.7): what the tunnel server must receive.
    pub secret: SharedSecret,
    /// The KEM shared secret the launcher decapsulated, which no v1 tunnel server receives.
    pub kem_secret: SharedSecret,
    /// The client ticket's launch.
    pub launch: Launch,
}

impl TestBroker {
    /// Signs `session`'s user into a tunneled `service` with `launcher`, up to the tunnel
    /// ticket.
    pub async fn launch_tunneled(
        &self,
        session: &Session,
        service: ServiceId,
        launcher: &Launcher,
    ) -> TunneledLaunch {
        let launch = self.connect(session, service).await;
        let opened = launcher.exchange_verified(self, &launch.url).await;
        TunneledLaunch {
            ticket: opened.tunnel_ticket(),
            secret: opened.tunnel_secret(),
            kem_secret: opened.secret.duplicate(),
            launch,
        }
    }
}
