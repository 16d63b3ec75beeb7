//! The product as separate processes, the way an operator and a user run it:
//! `portcullis dev` (the broker: HTTPS, SQLite, the portal API), `portcullis tunnel`
//! servers registered with `portcullis admin`, and `portcullis-launcher` on the
//! `udssv2://` link the portal's Connect returns, running the built-in `tcp-linux.js`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::programs::{Binaries, Process, free_port, log_tail, run_to_end, wait_listening};

/// Set, the processes' directory (logs, configurations, the dev stack) is kept.
const KEEP_ENV: &str = "PORTCULLIS_BENCH_KEEP";

/// The dev stack's demo group: its user may use the services added here.
const DEMO_GROUP: &str = "demo";

/// A broker (`portcullis dev`) and the tunnel servers registered at it.
pub(crate) struct RealStack {
    pub(crate) dir: TempDir,
    binaries: Binaries,
    _dev: Process,
    info: Value,
    http: reqwest::Client,
    cookie: String,
    runtime: tokio::runtime::Runtime,
    tunnels: Vec<Process>,
    launches: usize,
}

impl RealStack {
    /// Starts `portcullis dev` and signs in as its demo user.
    pub(crate) fn start(binaries: Binaries) -> Self {
        let mut dir = tempfile::tempdir().unwrap();
        if std::env::var_os(KEEP_ENV).is_some() {
            dir.disable_cleanup(true);
            println!("keeping the processes' files in {}", dir.path().display());
        }
        let dev_dir = dir.path().join("dev");
        let mut command = Command::new(&binaries.portcullis);
        command
            .args(["dev", "--port", "0", "--dir"])
            .arg(&dev_dir)
            .env("RUST_LOG", "warn");
        let mut dev = Process::spawn("portcullis dev", command, &dir.path().join("dev.log"));
        let info_path = dev_dir.join("dev.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        let info: Value = loop {
            if let Some(info) = std::fs::read(&info_path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            {
                break info;
            }
            dev.check_alive();
            assert!(
                Instant::now() < deadline,
                "portcullis dev wrote no dev.json in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let pem = std::fs::read(info["ca_cert"].as_str().unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let login = runtime
            .block_on(
                http.post(format!("{}/api/login", broker_url(&info)))
                    .json(&json!({"username": info["username"], "password": info["password"]}))
                    .send(),
            )
            .unwrap();
        assert!(login.status().is_success(), "sign-in: {}", login.status());
        let cookie = login.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Self {
            dir,
            binaries,
            _dev: dev,
            info,
            http,
            cookie,
            runtime,
            tunnels: Vec::new(),
            launches: 0,
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        let data_dir = self.dir.path().join("dev");
        run_to_end(
            &format!("portcullis admin {}", args.join(" ")),
            Command::new(&self.binaries.portcullis)
                .arg("admin")
                .arg("--data-dir")
                .arg(&data_dir)
                .args(args),
        )
    }

    /// Registers a tunnel server of `group` that launchers reach at `public` and starts
    /// `portcullis tunnel` on `listen` with the `[limits]` lines `limits`.
    pub(crate) fn add_tunnel(
        &mut self,
        group: &str,
        listen: SocketAddr,
        public: SocketAddr,
        limits: &str,
    ) {
        let name = format!("bench-{group}");
        let token = self.admin(&[
            "tunnel",
            "add",
            &name,
            "--address",
            &public.to_string(),
            "--group",
            group,
        ]);
        let token_file = self.dir.path().join(format!("{name}.token"));
        write_private(&token_file, token.trim());
        let config = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "listen = [\"{listen}\"]\n\n[broker]\nurl = {}\ntoken_file = {}\nca_file = {}\n\n\
             [limits]\n{limits}\n",
            toml_string(&broker_url(&self.info)),
            toml_string(&token_file.display().to_string()),
            toml_string(self.info["ca_cert"].as_str().unwrap()),
        );
        write_private(&config, &text);
        let mut command = Command::new(&self.binaries.portcullis);
        command
            .arg("tunnel")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info");
        let log = self.dir.path().join(format!("{name}.log"));
        let mut tunnel = Process::spawn(&format!("portcullis tunnel ({group})"), command, &log);
        wait_listening(listen, &mut tunnel);
        self.tunnels.push(tunnel);
    }

    /// How many tunnel servers were started.
    pub(crate) fn tunnel_count(&self) -> usize {
        self.tunnels.len()
    }

    /// The `portcullis tunnel` process of the `index`-th [`RealStack::add_tunnel`].
    pub(crate) fn tunnel(&self, index: usize) -> &Process {
        &self.tunnels[index]
    }

    /// Adds a tunneled TCP service to `target` through tunnel group `group`; its id.
    pub(crate) fn add_service(&self, name: &str, target: SocketAddr, group: &str) -> i64 {
        self.admin(&[
            "service",
            "add",
            name,
            "--host",
            &target.ip().to_string(),
            "--port",
            &target.port().to_string(),
            "--protocol",
            "tcp",
            "--transport",
            "tunneled",
            "--tunnel-group",
            group,
            "--group",
            DEMO_GROUP,
            "--readiness",
            "off",
        ]);
        let services: Value = self.call(self.http.get(self.url("/api/services")));
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|service| service["name"] == name)
            .and_then(|service| service["id"].as_i64())
            .unwrap_or_else(|| panic!("service {name} not in /api/services: {services}"))
    }

    /// Clicks Connect on `service` and runs `portcullis-launcher` on the link, as the URL
    /// handler would; returns once the script's local listener is open.
    pub(crate) fn launch(&mut self, service: i64) -> Launch {
        let connect: Value = self.call(
            self.http
                .post(self.url(&format!("/api/services/{service}/connect")))
                .json(&json!({})),
        );
        let link = connect["url"].as_str().unwrap().to_owned();
        self.launches += 1;
        let home = self.dir.path().join(format!("launcher-{}", self.launches));
        let mut command = Command::new(&self.binaries.launcher);
        command
            .arg("--trust-fingerprint")
            .arg(self.info["broker_key_fingerprint"].as_str().unwrap())
            .arg("--ca-file")
            .arg(self.info["ca_cert"].as_str().unwrap())
            .arg(&link)
            .env("PORTCULLIS_LAUNCHER_HOME", &home)
            .env("RUST_LOG", "info")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        let mut process = Process::spawn(
            "portcullis-launcher",
            command,
            &self
                .dir
                .path()
                .join(format!("launcher-{}.out", self.launches)),
        );
        let log = home.join("launcher.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        let local = loop {
            if let Some(local) = tunnel_open_at(&log) {
                break local;
            }
            process.check_alive();
            assert!(
                Instant::now() < deadline,
                "the launcher opened no listener in 30 s; its log:\n{}",
                log_tail(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Launch { process, local }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", broker_url(&self.info))
    }

    fn call(&self, request: reqwest::RequestBuilder) -> Value {
        self.runtime.block_on(async {
            let answer = request
                .header(reqwest::header::COOKIE, &self.cookie)
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{status}: {body}");
            body
        })
    }
}

/// A running launcher whose tunnel listener is open.
pub(crate) struct Launch {
    pub(crate) process: Process,
    /// The script's local listener.
    pub(crate) local: SocketAddr,
}

impl Launch {
    /// Disconnects as a user does (Ctrl-C: the launcher ends its session).
    pub(crate) fn end(self) {
        self.process.interrupt(Duration::from_secs(10));
    }
}

/// The address of `tcp-linux.js`'s "Tunnel open at 127.0.0.1:PORT" log line.
fn tunnel_open_at(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = text.find("Tunnel open at ")? + "Tunnel open at ".len();
    let address: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    address.parse().ok()
}

fn broker_url(info: &Value) -> String {
    info["broker_url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn write_private(path: &PathBuf, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// A fresh loopback address for a server of this bench.
pub(crate) fn fresh_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}
