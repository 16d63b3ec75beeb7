//! A live connection as its user and its administrator see it: the `portcullis-launcher`
//! binary run on a link and the portal's user API and admin forms over HTTPS. Shared by the operators' tests and the
//! `end_connection` benchmark (which includes this file).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_broker::model::{Protocol, Transport};
use portcullis_broker::password::hash_password;
use portcullis_broker::store::{NewService, NewTunnelServer, Readiness, Store, TokenHash};
use portcullis_link::client::{TunnelAddress, test_server};
use serde_json::{Value, json};

/// How long any one step may take.
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// The launcher built beside `portcullis` (`cargo build --workspace` builds it).
pub(crate) fn launcher_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_portcullis")).with_file_name("portcullis-launcher");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p portcullis-launcher` \
         (bash scripts/test.sh builds every binary)",
        path.display()
    );
    path
}

/// The launcher binary running on one link, without a display or a terminal (its messages
/// on stderr, collected).
pub(crate) struct LauncherRun {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl LauncherRun {
    /// Starts the launcher on `link`, trusting the broker's key `fingerprint` and the CA
    /// file `ca`, with its files under `home`.
    pub(crate) fn start(link: &str, fingerprint: &str, ca: &Path, home: &Path) -> Self {
        let mut child = Command::new(launcher_binary())
            .arg("--trust-fingerprint")
            .arg(fingerprint)
            .arg("--ca-file")
            .arg(ca)
            .arg(link)
            .env("PORTCULLIS_LAUNCHER_HOME", home)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stderr }
    }

    /// What it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The local address the built-in `tcp` script shows (`… is reachable at ADDR.`).
    pub(crate) async fn local_address(&self) -> SocketAddr {
        let deadline = Instant::now() + STEP;
        loop {
            let text = self.stderr();
            if let Some(start) = text.find("is reachable at ") {
                let rest = &text[start + "is reachable at ".len()..];
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                return address.trim_end_matches('.').parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the launcher showed no local address:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most [`STEP`]) for the launcher's end: its exit code and its stderr.
    pub(crate) async fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reading thread ends with the pipe.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status.code(), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the launcher did not end:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LauncherRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker's portal and user API over HTTPS, as its users and administrators use it.
#[derive(Clone)]
pub(crate) struct Portal {
    http: reqwest::Client,
    base: String,
}

/// A form's answer: its status and body.
pub(crate) struct Posted {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Portal {
    /// The portal at `base` (`https://127.0.0.1:PORT`), trusting the CA file `ca`.
    pub(crate) fn new(base: &str, ca: &Path) -> Self {
        let certificate = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(certificate)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STEP)
            .build()
            .unwrap();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Signs in with the user API: the session cookie (`portcullis_session=…`).
    pub(crate) async fn sign_in(&self, username: &str, password: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/api/login", self.base))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "sign-in of {username}: {}",
            answer.status()
        );
        let cookie = answer
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("portcullis_session="))
            .unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// Connect on service `id`: the `udssv2://` link.
    pub(crate) async fn connect(&self, cookie: &str, id: i64) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/api/services/{id}/connect", self.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["url"].as_str().unwrap().to_owned()
    }

    /// The page at `path`.
    pub(crate) async fn page(&self, cookie: &str, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The session's CSRF token, from the admin overview.
    pub(crate) async fn csrf(&self, cookie: &str) -> String {
        let page = self.page(cookie, "/admin").await;
        let marker = "name=\"csrf\" value=\"";
        let start = page.find(marker).expect("a CSRF field") + marker.len();
        page[start..].split('"').next().unwrap().to_owned()
    }

    /// Posts a form (with `csrf` among `fields`).
    pub(crate) async fn form(&self, cookie: &str, path: &str, fields: &[(&str, &str)]) -> Posted {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Posted {
            status: answer.status().as_u16(),
            body: answer.text().await.unwrap_or_default(),
        }
    }

    /// The administrator's *End* on live session `session` (the admin page's form, with
    /// the session's CSRF token `csrf`), answered with a redirect.
    pub(crate) async fn end(&self, cookie: &str, csrf: &str, session: &str) {
        let posted = self
            .form(
                cookie,
                "/admin/connections/end",
                &[("csrf", csrf), ("session", session)],
            )
            .await;
        assert_eq!(posted.status, 303, "{}", posted.body);
    }

    /// The live sessions as the admin page's script sees them.
    pub(crate) async fn live_sessions(&self, cookie: &str) -> Vec<Value> {
        let answer: Value =
            serde_json::from_str(&self.page(cookie, "/admin/connections.json").await)
                .expect("the live sessions as JSON");
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Waits for a live session (at most [`STEP`]): its reference.
    pub(crate) async fn one_live_session(&self, cookie: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(session) = self.live_sessions(cookie).await.first() {
                return session["session"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no live session");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) use portcullis_testkit::free_port;

/// A `portcullis` process (a broker or a tunnel server), killed on drop.
pub(crate) struct Process {
    child: Child,
    /// Its base URL (a broker).
    pub(crate) url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `portcullis broker` named `name` on a free port with the data directory `data`
/// (shared by a test's brokers: one signing key, one self-signed certificate),
/// `database_url`, and `[admin] groups = ["admins"]`; waits until it is healthy.
pub(crate) async fn start_broker(
    dir: &Path,
    name: &str,
    data: &Path,
    database_url: &str,
) -> Process {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\ndatabase_url = {database_url:?}\n\
             [tls]\nmode = \"self-signed\"\n[admin]\ngroups = [\"admins\"]\n",
            data = data.to_str().unwrap(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["broker", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut broker = Process {
        child,
        url: format!("https://127.0.0.1:{port}"),
    };
    let ca = data.join("tls").join("cert.pem");
    let deadline = Instant::now() + STEP * 2;
    loop {
        if ca.is_file() {
            let portal = Portal::new(&broker.url, &ca);
            if let Ok(answer) = portal
                .http
                .get(format!("{}/health", broker.url))
                .send()
                .await
            {
                if answer.status().is_success() {
                    return broker;
                }
            }
        }
        if let Some(status) = broker.child.try_wait().unwrap() {
            panic!("the broker {name} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the broker {name} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `portcullis tunnel` on `listen`, a client of the broker at `broker_url` with
/// `token` and the CA file `ca`; waits until it answers a `Test` hello.
pub(crate) async fn start_tunnel(
    dir: &Path,
    listen: SocketAddr,
    broker_url: &str,
    token: &str,
    ca: &Path,
) -> Process {
    let token_file = dir.join("tunnel.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("tunnel.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{listen}\"]\n[broker]\nurl = {broker_url:?}\ntoken_file = {token:?}\n\
             ca_file = {ca:?}\n",
            token = token_file.to_str().unwrap(),
            ca = ca.to_str().unwrap(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["tunnel", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STEP;
    loop {
        let address = TunnelAddress {
            host: listen.ip().to_string(),
            port: listen.port(),
            tls: None,
        };
        // The protocol's Test command: the server answers once it is up.
        if test_server(&address, STEP).await.is_ok() {
            return Process {
                child,
                url: String::new(),
            };
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the tunnel server exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel server never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tunnel server's token in [`TwoBrokers`].
const TUNNEL_TOKEN: &str = "sk-operators-test-token-0123456789abcdefghijklm";

/// Two `portcullis broker` processes on one fresh PostgreSQL database and a `portcullis
/// tunnel` process whose control channel is held by broker `a`: `alice` (group `staff`,
/// password `alice-password`) may use the service `echo` to a target through tunnel group
/// `dc1`; `bob` (group `admins`, password `bob-password`) administers.
pub(crate) struct TwoBrokers {
    /// The tunnel server, stopped on drop before the brokers (its control channel would
    /// complain of them gone).
    _tunnel: Process,
    pub(crate) store: Store,
    pub(crate) a: Process,
    pub(crate) b: Process,
    /// The service's id.
    pub(crate) service: i64,
    pub(crate) fingerprint: String,
    pub(crate) ca: PathBuf,
}

impl TwoBrokers {
    /// Starts them with their files under `dir`, the service reaching `target`.
    pub(crate) async fn start(dir: &Path, target: SocketAddr) -> Self {
        let database_url = portcullis_testkit::postgres::create_database().await;
        let data = dir.join("data");
        let store = Store::connect(&database_url).await.unwrap();
        let now = portcullis_broker::clock::unix_millis(std::time::SystemTime::now());
        for (user, group) in [("alice", "staff"), ("bob", "admins")] {
            store.add_group(group).await.unwrap();
            let hash = hash_password(&format!("{user}-password")).unwrap();
            store.add_user(user, &hash, now).await.unwrap();
            store.add_member(group, user).await.unwrap();
        }
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        store
            .add_tunnel_server(
                NewTunnelServer {
                    name: "t1".into(),
                    public_address: listen.to_string(),
                    token_hash: TokenHash::of(TUNNEL_TOKEN.as_bytes()),
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
                    host: target.ip().to_string(),
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
            .unwrap();
        let a = start_broker(dir, "a", &data, &database_url).await;
        let b = start_broker(dir, "b", &data, &database_url).await;
        let ca = data.join("tls").join("cert.pem");
        let tunnel = start_tunnel(dir, listen, &a.url, TUNNEL_TOKEN, &ca).await;
        let fingerprint = portcullis_broker::keys::load(&data)
            .unwrap()
            .verifying_key()
            .fingerprint();
        Self {
            store,
            a,
            b,
            _tunnel: tunnel,
            service: service.0,
            fingerprint,
            ca,
        }
    }
}
