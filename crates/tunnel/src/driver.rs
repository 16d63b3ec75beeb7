//! The tunnel server's driver of one connection id: it owns the connection's stream state
//! and its target socket for the connection's whole life, runs one [`relay`] link at a time,
//! and accepts the `Resume` that replaces a dropped (or stale) link.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::api::Remote;
use portcullis_proto::tunnel::{Command, Connection, ErrorCode, server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::limits::ConnectionPermit;
use crate::metrics::DirectionLabels;
use crate::session::{EndReason, ResumeRequest, Session};
use crate::shared::Shared;
use portcullis_link::TunnelStream;
use portcullis_link::relay::{self, Farewell, LinkEnd, LocalState, RelayContext};

/// A tunnel TCP connection carrying one connection id.
#[derive(Debug)]
pub struct Link {
    /// The stream (after PROXY header and TLS).
    pub stream: TunnelStream,
    /// Counts the connection against the limits while it lives.
    pub permit: ConnectionPermit,
}

/// Connects to the first remote that accepts within `limit` for all of them together.
pub async fn connect_target(remotes: &[Remote], limit: Duration) -> Result<TcpStream, String> {
    let attempt = async {
        let mut last = String::from("no remote");
        for remote in remotes {
            match TcpStream::connect((remote.host.as_str(), remote.port)).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = format!("{}:{}: {error}", remote.host, remote.port),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| format!("no remote answered within {} s", limit.as_secs()))??;
    relay::tune(&stream);
    Ok(stream)
}

/// What the relay reports to, on the server.
struct ServerContext<'a> {
    session: &'a Session,
    to_launcher: prometheus_client::metrics::counter::Counter,
    from_launcher: prometheus_client::metrics::counter::Counter,
}

impl RelayContext for ServerContext<'_> {
    // Control records do not restart the idle timer: only application bytes do, and a
    // connected link stops it (docs/protocol.md §8.1).
    fn activity(&self) {}

    fn sent(&self, bytes: usize) {
        self.session.count_sent(bytes);
        self.to_launcher.inc_by(bytes as u64);
    }

    fn received(&self, bytes: usize) {
        self.session.count_received(bytes);
        self.from_launcher.inc_by(bytes as u64);
    }

    fn local_failure_code(&self) -> ErrorCode {
        ErrorCode::TargetUnreachable
    }

    fn farewell(&self) -> Option<Farewell> {
        let code = self.session.end_reason().and_then(EndReason::error_code)?;
        let message = match code {
            ErrorCode::ShuttingDown => "the tunnel server is shutting down",
            ErrorCode::EndedByAdministrator => "an administrator ended the session",
            _ => "the session expired",
        };
        Some(Farewell::Error(code, message))
    }
}

/// Drives `connection` of `session` until it finishes or the session ends.
pub async fn drive(
    shared: Arc<Shared>,
    session: Arc<Session>,
    connection: Connection,
    target: TcpStream,
    first: Link,
    mut resumes: mpsc::Receiver<ResumeRequest>,
) {
    let id = connection.id();
    let connection = Mutex::new(connection);
    // One statement per counter: a family's read guard lives to the end of its statement,
    // and creating the second label needs the family's write lock.
    let to_launcher = direction_counter(&shared, "to_launcher");
    let from_launcher = direction_counter(&shared, "from_launcher");
    let context = ServerContext {
        session: &session,
        to_launcher,
        from_launcher,
    };
    let (mut target_read, mut target_write) = target.into_split();
    let mut local = LocalState::default();
    let mut link = Some(first);
    loop {
        let request = match link.take() {
            Some(Link { stream, permit }) => {
                shared.metrics.connections.inc();
                session.link_up();
                let stop = CancellationToken::new();
                let session_end = session.end_token().clone();
                let watcher = async {
                    tokio::select! {
                        request = resumes.recv() => { stop.cancel(); request }
                        () = session_end.cancelled() => { stop.cancel(); None }
                        () = stop.cancelled() => None,
                    }
                };
                let relayed = async {
                    let end = relay::run_link(
                        &context,
                        &connection,
                        stream,
                        &mut target_read,
                        &mut target_write,
                        &mut local,
                        &stop,
                    )
                    .await;
                    stop.cancel();
                    end
                };
                let (end, request) = tokio::join!(relayed, watcher);
                drop(permit);
                shared.metrics.connections.dec();
                session.link_down();
                match end {
                    LinkEnd::Dropped => {
                        let mut connection = lock(&connection);
                        connection.link_lost();
                        connection.shrink();
                        tracing::debug!(session = %session.id(), connection = id.0, "link dropped; held for resume");
                    }
                    LinkEnd::EndSession => {
                        session.end(EndReason::EndSession);
                        break;
                    }
                    LinkEnd::Finished | LinkEnd::LocalFailed(_) => break,
                    LinkEnd::Stopped => {}
                }
                match request {
                    Some(request) => request,
                    None if session.end_token().is_cancelled() => break,
                    None => match wait_for_resume(&session, &mut resumes).await {
                        Some(request) => request,
                        None => break,
                    },
                }
            }
            None => match wait_for_resume(&session, &mut resumes).await {
                Some(request) => request,
                None => break,
            },
        };
        lock(&connection).link_lost();
        link = resume(&shared, &session, &connection, request).await;
        if link.is_none() && lock(&connection).is_finished() {
            break;
        }
    }
    session.release_connection(id);
}

/// The relayed-bytes counter of `direction`.
fn direction_counter(
    shared: &Shared,
    direction: &'static str,
) -> prometheus_client::metrics::counter::Counter {
    shared
        .metrics
        .bytes
        .get_or_create(&DirectionLabels { direction })
        .clone()
}

/// Waits for a `Resume` of a dropped link, or the session's end.
async fn wait_for_resume(
    session: &Session,
    resumes: &mut mpsc::Receiver<ResumeRequest>,
) -> Option<ResumeRequest> {
    tokio::select! {
        request = resumes.recv() => request,
        () = session.end_token().cancelled() => None,
    }
}

/// Accepts a verified `Resume` after the old link stopped: the range check, then `Accept`
/// with the receive counter, then fresh keys and retransmission. A range the replay buffer
/// cannot serve ends the connection id (docs/protocol.md §8.7.4).
async fn resume(
    shared: &Shared,
    session: &Session,
    connection: &Mutex<Connection>,
    request: ResumeRequest,
) -> Option<Link> {
    let ResumeRequest {
        verified,
        mut stream,
        permit,
    } = request;
    let client_received = verified.client_received();
    let mut out = Vec::new();
    let accepted = {
        let mut connection = lock(connection);
        connection.check_resume(client_received).and_then(|()| {
            let received = connection.received();
            let established = verified.accept(session.key(), received, &mut out)?;
            connection.attach_link(established.sealer, established.opener, client_received)
        })
    };
    match accepted {
        Ok(()) => {
            if stream.write_all(&out).await.is_err() {
                lock(connection).link_lost();
                return None;
            }
            shared.metrics.handshake_completed(Command::Resume);
            Some(Link { stream, permit })
        }
        Err(error) => {
            out.clear();
            server::refuse(ErrorCode::ResumeImpossible, &mut out);
            let _ = stream.write_all(&out).await;
            shared.metrics.handshake_failed("resume_impossible");
            tracing::info!(session = %session.id(), %error, "resume refused; the connection ends");
            // The bytes are gone for good: end this connection id, and with it its target
            // connection (docs/protocol.md §8.7.4).
            lock(connection).abandon();
            None
        }
    }
}

fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
