//! How long an administrator's *End* takes: from the admin page's `POST
//! /admin/connections/end` (the click) to the target's socket closed by the tunnel server,
//! with the real programs in processes of their own — `portcullis dev` (one broker on
//! SQLite with its tunnel server), then two `portcullis broker` processes on one PostgreSQL
//! and a `portcullis tunnel` process whose control channel is held by the broker the
//! administrator does *not* use. The user's side is the `portcullis-launcher` binary with
//! the built-in `tcp` script, a connection through its local port to an echo target in
//! this process.
//!
//! `cargo build --release -p portcullis-launcher && cargo bench -p portcullis --bench
//! end_connection` (about 15 s); without the `--bench` argument (as under `cargo test
//! --all-targets`) it is a smoke run of two tries on the dev stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::EchoTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The operators' tests' stack of `portcullis` processes (included: it needs the broker
/// and the built binaries, which portcullis-testkit must not depend on).
#[path = "../tests/it/support/operator.rs"]
#[allow(dead_code)]
mod operator;

use operator::{LauncherRun, Portal, STEP, TwoBrokers};

/// The goal: the target's socket closed within a second of the click.
const GOAL: Duration = Duration::from_secs(1);

/// Where a try connects and ends: the user's portal, the administrator's, the service.
struct Setup<'a> {
    user_portal: &'a Portal,
    user: &'a str,
    admin_portal: &'a Portal,
    admin: &'a str,
    service: i64,
    fingerprint: &'a str,
    ca: &'a Path,
    home: &'a Path,
}

/// One try: connect, a round trip through the tunnel, then *End*; the click → close time.
async fn one_try(setup: &Setup<'_>, echo: &mut EchoTarget) -> Duration {
    let link = setup.user_portal.connect(setup.user, setup.service).await;
    let launcher = LauncherRun::start(&link, setup.fingerprint, setup.ca, setup.home);
    let mut stream = tokio::net::TcpStream::connect(launcher.local_address().await)
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    let session = setup.admin_portal.one_live_session(setup.admin).await;
    let csrf = setup.admin_portal.csrf(setup.admin).await;
    let clicked = Instant::now();
    setup.admin_portal.end(setup.admin, &csrf, &session).await;
    let closed = echo.closed_after(clicked, STEP).await;
    let (code, stderr) = launcher.finish().await;
    assert_eq!(code, Some(12), "{stderr}");
    // The session's end must reach the database before the next try lists sessions.
    let deadline = Instant::now() + STEP;
    while !setup
        .admin_portal
        .live_sessions(setup.admin)
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the session never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closed.saturating_duration_since(clicked)
}

/// Milliseconds, two decimals.
fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let verdict = if max <= GOAL { "ok" } else { "over" };
    println!(
        "  {name:<62} {:>5} {:>10} {:>10}  {verdict} (max ≤ 1 s)",
        samples.len(),
        ms(p50),
        ms(max)
    );
}

/// The dev stack: `portcullis dev` (broker and tunnel server in one process), a service
/// to `echo` added by `admin service add`.
async fn dev_stack(tries: usize, echo: &mut EchoTarget) -> Vec<Duration> {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dev");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["dev", "--dir", dir.to_str().unwrap(), "--port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let info_path = dir.join("dev.json");
    let deadline = Instant::now() + STEP * 2;
    while !info_path.is_file() {
        assert!(dev.try_wait().unwrap().is_none(), "portcullis dev exited");
        assert!(
            Instant::now() < deadline,
            "portcullis dev never wrote dev.json"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    let added = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "admin",
            "--data-dir",
            dir.to_str().unwrap(),
            "service",
            "add",
            "bench-echo",
        ])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &echo.addr.port().to_string(),
        ])
        .args([
            "--protocol",
            "tcp",
            "--transport",
            "tunneled",
            "--tunnel-group",
            "dev",
        ])
        .args(["--group", "demo", "--readiness", "off"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let id: i64 = String::from_utf8_lossy(&added.stdout)
        .rsplit("(id ")
        .next()
        .and_then(|rest| rest.trim().trim_end_matches(')').parse().ok())
        .unwrap();
    let ca = Path::new(info["ca_cert"].as_str().unwrap()).to_owned();
    let portal = Portal::new(info["broker_url"].as_str().unwrap(), &ca);
    let demo = portal
        .sign_in("demo", info["password"].as_str().unwrap())
        .await;
    let admin = portal
        .sign_in("admin", info["admin_password"].as_str().unwrap())
        .await;
    let home = work.path().join("home");
    let setup = Setup {
        user_portal: &portal,
        user: &demo,
        admin_portal: &portal,
        admin: &admin,
        service: id,
        fingerprint: info["broker_key_fingerprint"].as_str().unwrap(),
        ca: &ca,
        home: &home,
    };
    let mut samples = Vec::new();
    for _ in 0..tries {
        samples.push(one_try(&setup, echo).await);
    }
    stop(dev);
    samples
}

/// Two brokers on one PostgreSQL and a tunnel server held by the first; the clicks on the
/// second.
async fn two_brokers(tries: usize, echo: &mut EchoTarget) -> Vec<Duration> {
    let work = tempfile::tempdir().unwrap();
    let stack = TwoBrokers::start(work.path(), echo.addr).await;
    let on_a = Portal::new(&stack.a.url, &stack.ca);
    let on_b = Portal::new(&stack.b.url, &stack.ca);
    let alice = on_a.sign_in("alice", "alice-password").await;
    let bob = on_b.sign_in("bob", "bob-password").await;
    let home = work.path().join("home");
    let setup = Setup {
        user_portal: &on_a,
        user: &alice,
        admin_portal: &on_b,
        admin: &bob,
        service: stack.service,
        fingerprint: &stack.fingerprint,
        ca: &stack.ca,
        home: &home,
    };
    let mut samples = Vec::new();
    for _ in 0..tries {
        samples.push(one_try(&setup, echo).await);
    }
    samples
}

/// Stops `portcullis dev` as Ctrl-C would.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .take(3)
                .map(str::to_owned)
                .reduce(|a, b| format!("{a} {b}"))
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut echo = EchoTarget::start().await;
        if !bench {
            println!(
                "(no --bench argument: smoke run of two tries; use `cargo bench` for numbers)"
            );
            let samples = dev_stack(2, &mut echo).await;
            println!("end to end, 2 tries: {:?}", samples);
            return;
        }
        println!("load average before: {}", load());
        let mut dev = dev_stack(20, &mut echo).await;
        let mut pg = two_brokers(20, &mut echo).await;
        println!();
        println!(
            "an administrator's End → the target's socket closed (click = the admin page's POST)"
        );
        println!(
            "  {:<62} {:>5} {:>10} {:>10}",
            "set-up", "tries", "p50", "max"
        );
        row("portcullis dev (one broker, SQLite)", &mut dev);
        row(
            "2 brokers on PostgreSQL, click on the one without the channel",
            &mut pg,
        );
        println!("load average after: {}", load());
    });
}
