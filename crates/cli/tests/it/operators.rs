//! The operator's powers over live connections, with the real programs: `portcullis
//! admin user disable` ends a user's tunnel at once (the broker notices the end asked for in
//! the database and tells the tunnel server on its control channel) and cancels their
//! unused links; and with two brokers on one PostgreSQL, an administrator who ends a
//! connection on one broker reaches a tunnel server whose control channel is held by the
//! other. Each time the user's launcher says "The administrator ended this connection."
//! and exits with code 12.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_testkit::EchoTarget;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::operator::{LauncherRun, Portal, STEP, TwoBrokers};
use crate::support::{interrupt, run, start_dev, stdout, wait_with_timeout};

/// The sentence and the exit code of a launcher whose connection an administrator ended.
const ENDED: &str = "The administrator ended this connection.";
const ENDED_CODE: i32 = 12;

/// A round trip through the launcher's local listener; the open connection.
async fn echo_through(local: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(local).await.unwrap();
    stream.write_all(b"through the tunnel").await.unwrap();
    let mut back = [0u8; 18];
    tokio::time::timeout(STEP, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"through the tunnel");
    stream
}

/// Reads `stream` to its end (at most [`STEP`]).
async fn until_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
        .await
        .expect("the connection was never closed");
}

/// The audit events of the dev stack in `dir`, oldest first.
fn audit(dir: &Path) -> Vec<Value> {
    let output = run(
        &[
            "admin",
            "--data-dir",
            dir.to_str().unwrap(),
            "audit",
            "export",
            "--since",
            "0",
        ],
        None,
    );
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_with_the_cli_ends_their_tunnel_and_cancels_their_links() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("dev");
    let (dev, info) = start_dev(&dir, &[]);
    let ca = Path::new(info["ca_cert"].as_str().unwrap()).to_owned();
    let fingerprint = info["broker_key_fingerprint"].as_str().unwrap();
    let portal = Portal::new(info["broker_url"].as_str().unwrap(), &ca);
    let echo = info["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["name"] == "Echo (tunneled)")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let demo = portal
        .sign_in("demo", info["password"].as_str().unwrap())
        .await;
    let link = portal.connect(&demo, echo).await;
    let unused = portal.connect(&demo, echo).await;

    let home = work.path().join("home");
    let launcher = LauncherRun::start(&link, fingerprint, &ca, &home);
    let mut stream = echo_through(launcher.local_address().await).await;

    let started = Instant::now();
    let disabled = run(
        &[
            "admin",
            "--data-dir",
            dir.to_str().unwrap(),
            "user",
            "disable",
            "demo",
        ],
        None,
    );
    let said = stdout(&disabled);
    assert!(
        said.contains("1 live connection(s) ending, 1 unused ticket(s) cancelled"),
        "{said}"
    );
    until_closed(&mut stream).await;
    eprintln!(
        "the user's connection closed {:?} after `admin user disable` started",
        started.elapsed()
    );
    let (code, stderr) = launcher.finish().await;
    assert_eq!(code, Some(ENDED_CODE), "{stderr}");
    assert!(stderr.contains(ENDED), "{stderr}");

    // The unused link is cancelled: its launcher is refused.
    let refused = LauncherRun::start(&unused, fingerprint, &ca, &home);
    let (code, stderr) = refused.finish().await;
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("Ticket not found"), "{stderr}");

    let events = audit(&dir);
    let disabled = events
        .iter()
        .find(|event| event["event"] == "admin.user.disabled")
        .unwrap();
    assert!(
        disabled["actor"].as_str().unwrap().starts_with("cli:"),
        "{disabled}"
    );
    assert_eq!(disabled["detail"]["sessions_ended"], 1);
    let stopped = events
        .iter()
        .rfind(|event| event["event"] == "tunnel.stopped")
        .unwrap();
    assert_eq!(stopped["detail"]["ended_by"], "user_disabled", "{stopped}");
    interrupt(&dev);
    let stopped = tokio::task::spawn_blocking(move || wait_with_timeout(dev, STEP))
        .await
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_asked_on_one_broker_reaches_a_tunnel_server_held_by_the_other() {
    let work = tempfile::tempdir().unwrap();
    let mut echo = EchoTarget::start().await;
    // Broker A holds the tunnel server's control channel; the administrator uses B.
    let stack = TwoBrokers::start(work.path(), echo.addr).await;

    let on_a = Portal::new(&stack.a.url, &stack.ca);
    let alice = on_a.sign_in("alice", "alice-password").await;
    let link = on_a.connect(&alice, stack.service).await;
    let home = work.path().join("home");
    let launcher = LauncherRun::start(&link, &stack.fingerprint, &stack.ca, &home);
    let mut stream = echo_through(launcher.local_address().await).await;

    let on_b = Portal::new(&stack.b.url, &stack.ca);
    let bob = on_b.sign_in("bob", "bob-password").await;
    let session = on_b.one_live_session(&bob).await;
    let csrf = on_b.csrf(&bob).await;
    let clicked = Instant::now();
    on_b.end(&bob, &csrf, &session).await;
    let closed = echo.closed_after(clicked, STEP).await;
    let took = closed.saturating_duration_since(clicked);
    eprintln!("the target's connection closed {took:?} after the click on the other broker");
    assert!(took < Duration::from_secs(10), "{took:?}");
    until_closed(&mut stream).await;
    let (code, stderr) = launcher.finish().await;
    assert_eq!(code, Some(ENDED_CODE), "{stderr}");
    assert!(stderr.contains(ENDED), "{stderr}");

    // The stop reached the database through broker A: who ended it, and when.
    let deadline = Instant::now() + STEP;
    let stopped = loop {
        let events = stack.store.audit_tail(50).await.unwrap();
        if let Some(event) = events
            .iter()
            .rfind(|event| event.event.kind == "tunnel.stopped")
        {
            break serde_json::from_str::<Value>(&event.event.detail).unwrap();
        }
        assert!(Instant::now() < deadline, "no tunnel.stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stopped["ended_by"], "administrator", "{stopped}");
    assert_eq!(stopped["end_requested_by"], "bob", "{stopped}");
}
