//! Two tunnel servers of one group behind a round-robin balancer that sends PROXY v2
//! (docs/protocol.md §8.16): the session's later connections land on either server, and
//! the one that does not hold the session forwards them to the one that does. The real
//! thing, with HAProxy and two `portcullis tunnel` processes, is in the `portcullis`
//! crate's tests (`balancer.rs`); this one runs in-process and fast.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_link::client::{ClientConfig, ClientError, Forwarder, handshake_at};
use portcullis_proto::proxy_v2::{self, ProxyHeader};
use portcullis_proto::tunnel::{ErrorCode, client};
use portcullis_testkit::unused_loopback_addr;
use portcullis_testkit::{EchoTarget, bounded, eventually};
use portcullis_tunnel::config::{ClusterPeer, TunnelConfig};
use portcullis_tunnel::server::RunningTunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::relay::echo_round_trip;
use crate::support::{STEP, Stack, detail, ghost_credentials};

const LIMIT: Duration = Duration::from_secs(20);

/// A cluster member's configuration: node `id` on `address`, its peers on `peers`.
fn member(id: u16, address: SocketAddr, peers: &[(u16, SocketAddr)]) -> TunnelConfig {
    let mut config = TunnelConfig {
        listen: vec![address],
        proxy_protocol: true,
        proxy_protocol_trusted: vec!["127.0.0.0/8".parse().unwrap()],
        ..TunnelConfig::default()
    };
    config.cluster.node_id = Some(id);
    config.cluster.peers = peers
        .iter()
        .map(|&(node_id, address)| ClusterPeer { node_id, address })
        .collect();
    config
}

/// A layer-4 balancer: round-robin over `backends`, a PROXY v2 header first (as HAProxy's
/// `send-proxy-v2`), and every connection cut on demand.
struct Balancer {
    addr: SocketAddr,
    cut: Arc<tokio::sync::Notify>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(tokio::sync::Notify::new());
        let signal = Arc::clone(&cut);
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut down, client)) = listener.accept().await {
                let backend = backends[next.fetch_add(1, Ordering::SeqCst) % backends.len()];
                let signal = Arc::clone(&signal);
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let header = proxy_v2::encode(&ProxyHeader::Proxy {
                        source: client,
                        destination: addr,
                        forwarded_by: None,
                    });
                    if up.write_all(&header).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        () = signal.notified() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }
}

/// Two members behind a balancer, beside the stack's broker.
async fn cluster(stack: &Stack) -> (RunningTunnel, RunningTunnel, Balancer) {
    let (a_addr, b_addr) = (unused_loopback_addr(), unused_loopback_addr());
    let a = stack
        .start_member("member-a", member(1, a_addr, &[(2, b_addr)]))
        .await;
    let b = stack
        .start_member("member-b", member(2, b_addr, &[(1, a_addr)]))
        .await;
    let balancer = Balancer::start(vec![a.local_addrs()[0], b.local_addrs()[0]]).await;
    (a, b, balancer)
}

fn sessions(member: &RunningTunnel) -> usize {
    member.shared().sessions.len()
}

fn forwarded(member: &RunningTunnel) -> f64 {
    let text = member.shared().metrics.encode();
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == r#"portcullis_tunnel_handshakes_total{reason="forwarded"}"#)
                .then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_landing_on_another_member_reach_the_session() {
    let stack = Stack::start().await;
    let echo = EchoTarget::start().await;
    let (a, b, balancer) = cluster(&stack).await;
    let (ticket, secret) = stack.ticket_to(echo.addr).await;
    let mut address = stack.address();
    address.port = balancer.addr.port();
    let forwarder = Forwarder::start(address, ticket, secret, ClientConfig::default())
        .await
        .unwrap();
    // Open on one member, the hold on the other; attaches alternate.
    let mut connections = Vec::new();
    for n in 0..4u8 {
        let mut local = TcpStream::connect(forwarder.local_addr()).await.unwrap();
        echo_round_trip(&mut local, &[n; 1000]).await;
        connections.push(local);
    }
    eventually("the session is held", LIMIT, || forwarder.is_held()).await;
    assert_eq!(sessions(&a) + sessions(&b), 1, "one session, on one member");
    assert!(
        forwarded(&a) + forwarded(&b) >= 2.0,
        "some connections were forwarded"
    );
    // Every tunnel connection is cut: the resumes land on either member and go on.
    balancer.cut.notify_waiters();
    for (n, local) in connections.iter_mut().enumerate() {
        echo_round_trip(local, &[n as u8 + 10; 5000]).await;
    }
    assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
    for mut local in connections {
        local.shutdown().await.unwrap();
        let mut rest = Vec::new();
        bounded("the close", STEP, local.read_to_end(&mut rest))
            .await
            .unwrap();
    }
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"], 4 * 6000, "{stop}");
    assert_eq!(stop["recv"], 4 * 6000, "{stop}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_connection_is_never_forwarded_again_and_a_gone_member_is_session_unknown() {
    let stack = Stack::start().await;
    // Member 1 lists a member 3 that does not run (nothing listens on its port).
    let (a_addr, ghost_addr) = (unused_loopback_addr(), unused_loopback_addr());
    let a = stack
        .start_member("member-a", member(1, a_addr, &[(3, ghost_addr)]))
        .await;
    // A session of node 3's: member 1 tries to forward, and nothing listens there.
    let mut bytes = [9u8; 16];
    bytes[..2].copy_from_slice(&3u16.to_be_bytes());
    let ghost = ghost_credentials(bytes);
    let mut through_balancer = stack.address();
    let balancer = Balancer::start(vec![a.local_addrs()[0]]).await;
    through_balancer.port = balancer.addr.port();
    let refused = handshake_at(&through_balancer, LIMIT, |random, out| {
        client::attach(&ghost, random, out)
    })
    .await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused(ErrorCode::SessionUnknown))
        ),
        "{refused:?}"
    );
    // A connection that says it was forwarded already is not forwarded a second time.
    let mut stream = TcpStream::connect(a.local_addrs()[0]).await.unwrap();
    let mut head = proxy_v2::encode(&ProxyHeader::Proxy {
        source: "198.51.100.9:40000".parse().unwrap(),
        destination: a.local_addrs()[0],
        forwarded_by: Some(2),
    });
    let _ = client::attach(&ghost, [5; 32], &mut head);
    stream.write_all(&head).await.unwrap();
    let mut answer = [0u8; 3];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, [0x03, 0x00, 0x07], "Refuse(SessionUnknown)");
    assert_eq!(forwarded(&a), 0.0);
}
