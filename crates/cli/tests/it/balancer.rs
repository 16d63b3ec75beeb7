//! Two `portcullis tunnel` processes of one tunnel group behind a real HAProxy (round-robin,
//! `send-proxy-v2`, no affinity), each trusting only loopback for PROXY v2 and listing the
//! other as its cluster peer (docs/tunnel.md, "Several tunnel servers"; docs/protocol.md
//! §8.16). A launcher's tunnel client sends 64 MiB through HAProxy on one connection whose
//! TCP connections are cut three times on the way; the resumes land on either server, the
//! one without the session forwards them, and the bytes come back whole (SHA-256 equal),
//! counted once in the broker's audit log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use portcullis_link::client::{ClientConfig, Forwarder, test_server};
use portcullis_testkit::{
    Cutter, EchoTarget, bounded, echo_through_cuts, program, unused_loopback_addr,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tunnel integration tests' loopback stack: a broker on SQLite with tickets issued
/// through its store (included: it needs portcullis-broker and the tunnel server, which
/// portcullis-testkit must not depend on).
#[path = "../../../tunnel/tests/it/support/mod.rs"]
mod tunnel_support;

use tunnel_support::{STEP, Stack, detail};

/// 64 MiB through the tunnel.
const TOTAL: usize = 64 << 20;

/// Child processes killed when the test ends, whatever its outcome.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `portcullis tunnel` cluster member: node `id` listening on `listen`, its operations
/// endpoint on `ops`, its peer `peer`.
fn tunnel_member(
    dir: &Path,
    broker: &str,
    token: &str,
    (id, listen, ops): (u16, SocketAddr, SocketAddr),
    (peer_id, peer): (u16, SocketAddr),
) -> Child {
    let config = dir.join(format!("tunnel-{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = [\"{listen}\"]\nops_listen = \"{ops}\"\n\
             proxy_protocol = true\nproxy_protocol_trusted = [\"127.0.0.0/8\"]\n\
             [broker]\nurl = \"{broker}\"\n\
             [cluster]\nnode_id = {id}\n\
             [[cluster.peers]]\nnode_id = {peer_id}\naddress = \"{peer}\"\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["tunnel", "--config", config.to_str().unwrap()])
        .env("PORTCULLIS_TUNNEL_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// HAProxy in front of `backends`: TCP mode, round-robin, PROXY v2 to each backend, the
/// tunnel protocol's `Test` hello as the health check (docs/tunnel.md's set-up).
fn haproxy(dir: &Path, front: SocketAddr, backends: &[SocketAddr]) -> Child {
    let config = dir.join("haproxy.cfg");
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(n, backend)| {
            format!("    server t{n} {backend} send-proxy-v2 check check-send-proxy inter 1s\n")
        })
        .collect();
    std::fs::write(
        &config,
        format!(
            "global\n    maxconn 1024\n    stats socket {socket} mode 600 level user\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 5m\n    \
             timeout server 5m\n\
             frontend tunnel\n    bind {front}\n    default_backend members\n\
             backend members\n    balance roundrobin\n    option tcp-check\n    \
             tcp-check send-binary 5043544e0101\n    tcp-check expect binary 4f4b\n{servers}",
            socket = stats_socket(dir).display(),
        ),
    )
    .unwrap();
    Command::new(program("haproxy", "haproxy"))
        .args(["-db", "-f", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// HAProxy's stats socket in `dir`.
fn stats_socket(dir: &Path) -> std::path::PathBuf {
    dir.join("haproxy.sock")
}

/// How many servers of the `members` backend HAProxy has up now (its stats socket in `dir`;
/// `show servers state`, whose sixth field is the operational state, 2 for running).
async fn servers_up(dir: &Path) -> usize {
    let Ok(mut stream) = tokio::net::UnixStream::connect(stats_socket(dir)).await else {
        return 0;
    };
    let mut state = String::new();
    if stream
        .write_all(b"show servers state members\n")
        .await
        .is_err()
        || stream.read_to_string(&mut state).await.is_err()
    {
        return 0;
    }
    state
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split_whitespace().nth(5) == Some("2"))
        .count()
}

/// A metric's value from a tunnel server's `/metrics` (0 when absent).
async fn metric(client: &reqwest::Client, ops: SocketAddr, name: &str) -> f64 {
    let text = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    let mut context = Context::new(&SHA256);
    context.update(bytes);
    context.finish().as_ref().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_through_haproxy_round_robin_survive_cuts_across_two_tunnel_servers() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = stack.broker.base_url();
    // Each on an address of its own, so no other test takes a port in between.
    let (a, b, a_ops, b_ops, front) = (
        unused_loopback_addr(),
        unused_loopback_addr(),
        unused_loopback_addr(),
        unused_loopback_addr(),
        unused_loopback_addr(),
    );
    let token_a = stack.register_member("member-a").await;
    let token_b = stack.register_member("member-b").await;
    let _children = Children(vec![
        tunnel_member(dir.path(), &broker, &token_a, (1, a, a_ops), (2, b)),
        tunnel_member(dir.path(), &broker, &token_b, (2, b, b_ops), (1, a)),
        haproxy(dir.path(), front, &[a, b]),
    ]);
    let haproxy_address = portcullis_link::client::TunnelAddress {
        host: front.ip().to_string(),
        port: front.port(),
        tls: None,
    };
    // HAProxy has both members up, and two Tests in a row through it are answered: with
    // both up, round-robin sent one to each member, so both listen. (Two answers alone
    // could both come from one member while HAProxy still counts the other down.)
    let answered = || test_server(&haproxy_address, Duration::from_secs(2));
    bounded("the members and HAProxy to start", STEP, async {
        while servers_up(dir.path()).await < 2
            || answered().await.is_err()
            || answered().await.is_err()
            || servers_up(dir.path()).await < 2
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    let cutter = Cutter::start(front).await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let address = portcullis_link::client::TunnelAddress {
        host: cutter.addr.ip().to_string(),
        port: cutter.addr.port(),
        tls: None,
    };
    let forwarder = Forwarder::start(address, ticket, secret, ClientConfig::default())
        .await
        .unwrap();
    let local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
    let (data, back) = echo_through_cuts(local, TOTAL, &cutter, 3).await;
    assert_eq!(back.len(), TOTAL, "no byte lost or duplicated");
    assert_eq!(sha256(&back), sha256(&data), "SHA-256 of what came back");
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());

    let http = reqwest::Client::new();
    let resume = r#"portcullis_tunnel_handshakes_total{reason="resume"}"#;
    let forwarded = r#"portcullis_tunnel_handshakes_total{reason="forwarded"}"#;
    let resumes = metric(&http, a_ops, resume).await + metric(&http, b_ops, resume).await;
    let forwards = metric(&http, a_ops, forwarded).await + metric(&http, b_ops, forwarded).await;
    assert!(resumes >= 3.0, "{resumes} resumes");
    assert!(forwards >= 1.0, "{forwards} connections forwarded");
    let sessions = metric(&http, a_ops, "portcullis_tunnel_sessions").await
        + metric(&http, b_ops, "portcullis_tunnel_sessions").await;
    assert_eq!(sessions, 1.0, "one session, on one member");

    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"], TOTAL as u64, "counted once: {stop}");
    assert_eq!(stop["recv"], TOTAL as u64, "counted once: {stop}");
}
