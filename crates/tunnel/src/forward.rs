//! Forwarding within a cluster (docs/protocol.md §8.16): a launcher's `Attach`, `Resume` or
//! `Hold` that the balancer sent to a server which does not hold the session goes, before
//! any `Challenge`, to the member whose node id starts the session id, behind a PROXY v2
//! header that names the launcher and this member; then the bytes are relayed unchanged.
//! The owner runs the handshake and counts the bytes; this member only moves them.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_proto::SessionId;
use portcullis_proto::proxy_v2::{self, ProxyHeader};
use portcullis_proto::tunnel::{ClientHello, ErrorCode, FORWARD_CONNECT_TIMEOUT, server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::limits::ConnectionPermit;
use crate::metrics::ReasonLabels;
use crate::shared::Shared;
use portcullis_link::TunnelStream;

/// The session a hello names, for the commands that join an existing one.
fn session_of(hello: &ClientHello) -> Option<SessionId> {
    match hello {
        ClientHello::Attach { session_id, .. }
        | ClientHello::Resume { session_id, .. }
        | ClientHello::Hold { session_id, .. } => Some(*session_id),
        ClientHello::Test | ClientHello::Open { .. } => None,
    }
}

/// The member to forward `hello` to: another member named by its session id, when this
/// server does not hold that session.
pub fn owner(shared: &Shared, hello: &ClientHello) -> Option<SocketAddr> {
    let session = session_of(hello)?;
    if shared.sessions.get(session).is_some() {
        return None;
    }
    shared.config.cluster.owner_of(session)
}

/// Where the launcher is and where it connected, for the owner's PROXY header.
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    /// The launcher's address and port.
    pub client: SocketAddr,
    /// The address it connected to (the balancer's, or this server's).
    pub destination: SocketAddr,
}

/// Forwards the connection to `owner` and relays until either side ends; refuses it when
/// the owner cannot be reached (`SessionUnknown` when nothing listens there: the member is
/// gone, and its sessions with it; `Busy` otherwise, which the launcher retries).
pub async fn forward(
    shared: Arc<Shared>,
    mut stream: TunnelStream,
    hello: &ClientHello,
    ends: Ends,
    owner: SocketAddr,
    permit: ConnectionPermit,
) {
    let Some(node) = shared.config.cluster.node() else {
        return;
    };
    let connected = tokio::time::timeout(FORWARD_CONNECT_TIMEOUT, TcpStream::connect(owner)).await;
    let mut upstream = match connected {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            let refused = error.kind() == std::io::ErrorKind::ConnectionRefused;
            tracing::warn!(%owner, %error, "cannot reach the cluster member that holds the session");
            let code = if refused {
                ErrorCode::SessionUnknown
            } else {
                ErrorCode::Busy
            };
            return refuse(&shared, stream, code).await;
        }
        Err(_) => {
            tracing::warn!(%owner, "the cluster member that holds the session did not answer in time");
            return refuse(&shared, stream, ErrorCode::Busy).await;
        }
    };
    portcullis_link::relay::tune(&upstream);
    let mut head = proxy_v2::encode(&ProxyHeader::Proxy {
        source: ends.client,
        destination: ends.destination,
        forwarded_by: Some(node.get()),
    });
    hello.encode(&mut head);
    if upstream.write_all(&head).await.is_err() {
        return refuse(&shared, stream, ErrorCode::Busy).await;
    }
    shared
        .metrics
        .handshakes
        .get_or_create(&ReasonLabels {
            reason: "forwarded",
        })
        .inc();
    tracing::debug!(%owner, client = %ends.client, "connection forwarded to the session's member");
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
    drop(permit);
}

async fn refuse(shared: &Shared, mut stream: TunnelStream, code: ErrorCode) {
    shared.metrics.handshake_failed("forward_failed");
    let mut out = Vec::new();
    server::refuse(code, &mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}
