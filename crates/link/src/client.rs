//! The client end of tunnel protocol v1: what the launcher runs for a tunneled service
//! (docs/protocol.md §8, client rules §8.7.5).
//!
//! A [`Forwarder`] listens on 127.0.0.1 with a port the OS chooses (or on a loopback
//! address and port of the caller's, [`Forwarder::start_at`]). The first local
//! connection opens the session with the ticket and the proof; later ones attach, in
//! parallel. A tunnel connection that drops is resumed with fresh keys and bounded retries
//! with back-off, so the local program does not notice; when the retries run out its local
//! connection is closed. Once the session is open, a hold (module `hold`) keeps it alive
//! for as long as the listener is open; when the session ends anyway, the forwarder stops
//! listening and says why ([`Forwarder::session_end`]). [`Forwarder::end_session`] sends
//! `EndSession` (on the hold: it dials nothing).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::tunnel::{
    CLIENT_HANDSHAKE_TIMEOUT, Connection, ConnectionConfig, ErrorCode, ServerMessage,
    SessionCredentials, client, fresh_random,
};
use portcullis_proto::{ConnectionId, Error, SharedSecret, TicketId};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::relay::{self, Farewell, LinkEnd, LocalState, RelayContext};
use crate::stream::TunnelStream;

mod hold;

/// Where the tunnel server is, and how to reach it.
#[derive(Clone)]
pub struct TunnelAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS around the tunnel connection, with the name to verify.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for TunnelAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The record layer's settings.
    pub connection: ConnectionConfig,
    /// Hello to `Accept`, TCP connect included.
    pub handshake_timeout: Duration,
    /// Resume attempts after a drop before the local connection is given up.
    pub resume_attempts: u32,
    /// The first wait between resume attempts; it doubles up to 2 s.
    pub resume_backoff: Duration,
    /// Hold the session while the listener is open (docs/protocol.md §8.7.7); without a
    /// hold the server ends the session 10 s after its last connection.
    pub hold: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            handshake_timeout: CLIENT_HANDSHAKE_TIMEOUT,
            resume_attempts: 8,
            resume_backoff: Duration::from_millis(100),
            hold: true,
        }
    }
}

/// Why a tunnel handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused with this code.
    #[error("the tunnel server refused: {0}")]
    Refused(ErrorCode),
    /// No `Accept` within the handshake timeout.
    #[error("the tunnel server did not answer in time")]
    Timeout,
    /// TCP or TLS failed.
    #[error("cannot reach the tunnel server: {0}")]
    Io(#[from] std::io::Error),
    /// The server's messages broke the protocol (a bad confirm, a wrong message).
    #[error("tunnel handshake failed: {0}")]
    Protocol(Error),
}

impl From<Error> for ClientError {
    fn from(error: Error) -> Self {
        match error {
            Error::Refused(code) => Self::Refused(code),
            other => Self::Protocol(other),
        }
    }
}

/// Why a session ended while the launcher still held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The tunnel server ended it and said why on the hold.
    Ended(portcullis_proto::tunnel::EndReason),
    /// The tunnel server no longer knows it: it restarted, or the session ended while the
    /// launcher could not reach it.
    Unknown,
}

/// One session's local endpoint.
#[derive(Debug)]
pub struct Forwarder {
    local_addr: SocketAddr,
    shared: Arc<ClientShared>,
    stop: CancellationToken,
    listening: CancellationToken,
    tasks: TaskTracker,
}

/// What the forwarder's connections share.
struct ClientShared {
    address: TunnelAddress,
    config: ClientConfig,
    ticket: TicketId,
    secret: SharedSecret,
    /// Set by the first successful `Open`; later connections attach with it. Erased when
    /// the session ends.
    credentials: Mutex<Option<Arc<SessionCredentials>>>,
    /// Held while an `Open` runs, so only one local connection opens the session; the
    /// others then attach in parallel.
    opening: tokio::sync::Mutex<()>,
    /// Cancelled when the forwarder stops.
    stop: CancellationToken,
    /// Cancelled when the listener closes.
    listening: CancellationToken,
    /// The forwarder's tasks (local connections, the hold).
    tasks: TaskTracker,
    /// The hold task runs.
    holding: AtomicBool,
    /// A hold connection is up.
    held: AtomicBool,
    /// Why the session ended, once it did; published once the listener is closed.
    end: tokio::sync::watch::Sender<Option<SessionEnd>>,
    /// Whether the listener is closed, and a session end waiting for that.
    listener: Mutex<ListenerState>,
    sent: AtomicU64,
    received: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// Links up now: `EndSession` goes out on them.
    live_links: AtomicUsize,
    /// Local connections open now (their tunnel link up or being resumed).
    local_connections: AtomicUsize,
    /// Local connections accepted since the start.
    accepted: AtomicUsize,
    /// Set by [`Forwarder::end_session`]: stopped links say `EndSession`.
    ending: AtomicBool,
    /// Bumped when a local connection is accepted or closed and when an error is recorded.
    events: tokio::sync::watch::Sender<()>,
}

impl ClientShared {
    /// Records an error of the forwarder's connections.
    fn fail(&self, error: String) {
        lock(&self.errors).push(error);
        self.events.send_replace(());
    }
}

impl std::fmt::Debug for ClientShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShared")
            .field("address", &self.address)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Listens on 127.0.0.1 (an OS-chosen port) for the session of `ticket` with tunnel
    /// secret `secret` at `address`.
    pub async fn start(
        address: TunnelAddress,
        ticket: TicketId,
        secret: SharedSecret,
        config: ClientConfig,
    ) -> std::io::Result<Self> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_at(listen, address, ticket, secret, config).await
    }

    /// Like [`Forwarder::start`], listening on `listen` (port 0: one the OS chooses). Only
    /// loopback addresses are accepted: the endpoint is for programs on this machine.
    pub async fn start_at(
        listen: SocketAddr,
        address: TunnelAddress,
        ticket: TicketId,
        secret: SharedSecret,
        config: ClientConfig,
    ) -> std::io::Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{listen} is not a loopback address"),
            ));
        }
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let listening = stop.child_token();
        let tasks = TaskTracker::new();
        let shared = Arc::new(ClientShared {
            address,
            config,
            ticket,
            secret,
            credentials: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            stop: stop.clone(),
            listening: listening.clone(),
            tasks: tasks.clone(),
            holding: AtomicBool::new(false),
            held: AtomicBool::new(false),
            end: tokio::sync::watch::Sender::new(None),
            listener: Mutex::new(ListenerState::default()),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            live_links: AtomicUsize::new(0),
            local_connections: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            ending: AtomicBool::new(false),
            events: tokio::sync::watch::Sender::new(()),
        });
        tasks.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            listening.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        Ok(Self {
            local_addr,
            shared,
            stop,
            listening,
            tasks,
        })
    }

    /// The local address programs connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Application bytes sent to and received from the tunnel server so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (
            self.shared.sent.load(Ordering::Relaxed),
            self.shared.received.load(Ordering::Relaxed),
        )
    }

    /// Local connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.local_connections.load(Ordering::SeqCst)
    }

    /// Local connections accepted since the start.
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting new local connections; open ones go on.
    pub fn stop_listening(&self) {
        self.listening.cancel();
    }

    /// Changes whenever a local connection is accepted or closed and when an error is
    /// recorded: a caller waits on it instead of polling the counts.
    pub fn events(&self) -> tokio::sync::watch::Receiver<()> {
        self.shared.events.subscribe()
    }

    /// What went wrong on the forwarder's connections (refusals, given-up resumes).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }

    /// Whether a hold connection is up now (the session is held).
    pub fn is_held(&self) -> bool {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Why the session ended while held, if it did; the listener is closed then.
    pub fn session_end(&self) -> Option<SessionEnd> {
        *self.shared.end.borrow()
    }

    /// Waits until the session ended while held (never, if it does not).
    pub async fn ended(&self) -> SessionEnd {
        let mut end = self.shared.end.subscribe();
        loop {
            if let Some(reason) = *end.borrow_and_update() {
                return reason;
            }
            if end.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ends the session: `EndSession` on the hold and on every live tunnel connection (or,
    /// when none is up, on a hold of its own: it dials nothing), then closes the listener
    /// and every local connection.
    pub async fn end_session(self) -> Result<(), ClientError> {
        self.shared.ending.store(true, Ordering::SeqCst);
        let credentials = lock(&self.shared.credentials).clone();
        let live = self.shared.live_links.load(Ordering::SeqCst);
        let holding = self.shared.holding.load(Ordering::SeqCst);
        // The hold task, when it runs, says EndSession itself as it stops.
        let result = match credentials {
            Some(credentials) if live == 0 && !holding => {
                hold::end_on_new_hold(&self.shared, &credentials).await
            }
            _ => Ok(()),
        };
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        result
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ClientShared>,
    listening: CancellationToken,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = listening.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((local, _)) => {
                relay::tune(&local);
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                shared.local_connections.fetch_add(1, Ordering::SeqCst);
                shared.events.send_replace(());
                let shared = Arc::clone(&shared);
                let stop = stop.clone();
                tasks.spawn(async move {
                    serve_local(&shared, local, stop).await;
                    shared.local_connections.fetch_sub(1, Ordering::SeqCst);
                    shared.events.send_replace(());
                });
            }
            Err(error) => {
                tracing::warn!(%error, "local accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let pending = {
        let mut state = lock(&shared.listener);
        state.closed = true;
        state.pending_end.take()
    };
    if let Some(end) = pending {
        shared.publish_end(end);
    }
}

/// The local listener's state, for publishing a session's end only once it is closed.
#[derive(Debug, Default)]
struct ListenerState {
    closed: bool,
    pending_end: Option<SessionEnd>,
}

/// What the relay reports to, on the client.
struct ClientContext<'a> {
    shared: &'a ClientShared,
}

impl RelayContext for ClientContext<'_> {
    fn activity(&self) {}

    fn sent(&self, bytes: usize) {
        self.shared.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn received(&self, bytes: usize) {
        self.shared
            .received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn local_failure_code(&self) -> ErrorCode {
        ErrorCode::Internal
    }

    fn farewell(&self) -> Option<Farewell> {
        self.shared
            .ending
            .load(Ordering::SeqCst)
            .then_some(Farewell::EndSession)
    }

    fn peer_error(&self, code: ErrorCode) {
        // An authenticated record: the session ended at the broker's request. Known before
        // the local connection closes, so whoever sees that close can tell why, whether or
        // not the hold's `SessionEnded` came first.
        if code == ErrorCode::EndedByAdministrator {
            self.shared.session_ended(SessionEnd::Ended(
                portcullis_proto::tunnel::EndReason::EndedByAdministrator,
            ));
        }
    }
}

/// One local connection: open or attach, then relay, resuming after drops.
async fn serve_local(shared: &Arc<ClientShared>, local: TcpStream, stop: CancellationToken) {
    let (stream, established, credentials) = match first_link(shared).await {
        Ok(first) => first,
        Err(error) => {
            tracing::warn!(%error, "tunnel connection failed");
            shared.fail(error.to_string());
            return;
        }
    };
    let id = established.connection_id;
    let mut connection = Connection::new_client(id, &shared.config.connection);
    if let Err(error) = connection.attach_link(established.sealer, established.opener, 0) {
        shared.fail(error.to_string());
        return;
    }
    let connection = Mutex::new(connection);
    let context = ClientContext { shared };
    let (mut local_read, mut local_write) = local.into_split();
    let mut state = LocalState::default();
    let mut stream = Some(stream);
    while let Some(link) = stream.take() {
        shared.live_links.fetch_add(1, Ordering::SeqCst);
        let end = relay::run_link(
            &context,
            &connection,
            link,
            &mut local_read,
            &mut local_write,
            &mut state,
            &stop,
        )
        .await;
        shared.live_links.fetch_sub(1, Ordering::SeqCst);
        match end {
            LinkEnd::Dropped => {
                lock_connection(&connection).link_lost();
                stream = resume(shared, &credentials, &connection, id, &stop).await;
            }
            LinkEnd::Finished
            | LinkEnd::EndSession
            | LinkEnd::LocalFailed(_)
            | LinkEnd::Stopped => {}
        }
    }
}

/// The first link of a local connection: `Open` for the first one, `Attach` after. Only
/// the `Open` is serialized (the others need its session id); attaches run in parallel.
async fn first_link(
    shared: &Arc<ClientShared>,
) -> Result<(TunnelStream, client::Established, Arc<SessionCredentials>), ClientError> {
    let opened = lock(&shared.credentials).clone();
    if let Some(credentials) = opened {
        return attach(shared, credentials).await;
    }
    let opening = shared.opening.lock().await;
    let opened = lock(&shared.credentials).clone();
    if let Some(credentials) = opened {
        drop(opening);
        return attach(shared, credentials).await;
    }
    if shared.end.borrow().is_some() {
        return Err(ClientError::Refused(ErrorCode::SessionUnknown));
    }
    let (stream, opened) = handshake(shared, |random, out| {
        client::open(&shared.ticket, &shared.secret, random, out)
    })
    .await?;
    let credentials = Arc::new(opened.credentials);
    *lock(&shared.credentials) = Some(Arc::clone(&credentials));
    drop(opening);
    if shared.config.hold {
        shared.holding.store(true, Ordering::SeqCst);
        shared
            .tasks
            .spawn(hold::keep(Arc::clone(shared), Arc::clone(&credentials)));
    }
    Ok((stream, opened.connection, credentials))
}

/// An `Attach` to the open session.
async fn attach(
    shared: &ClientShared,
    credentials: Arc<SessionCredentials>,
) -> Result<(TunnelStream, client::Established, Arc<SessionCredentials>), ClientError> {
    let (stream, established) = handshake(shared, |random, out| {
        client::attach(&credentials, random, out)
    })
    .await?;
    Ok((stream, established, credentials))
}

impl ClientShared {
    /// The session ended while held: erase its key, stop listening, tell whoever waits.
    fn session_ended(&self, end: SessionEnd) {
        tracing::info!(%end, "the tunnel session ended; the local listener closes");
        lock(&self.credentials).take();
        // Published once the listener is closed, so that whoever learns of the end can
        // count on connections being refused.
        let closed = {
            let mut state = lock(&self.listener);
            if !state.closed {
                state.pending_end = Some(end);
            }
            state.closed
        };
        if closed {
            self.publish_end(end);
        } else {
            self.listening.cancel();
        }
    }

    fn publish_end(&self, end: SessionEnd) {
        self.end.send_replace(Some(end));
        self.events.send_replace(());
    }
}

/// Resumes connection `id` with bounded retries and back-off.
async fn resume(
    shared: &ClientShared,
    credentials: &SessionCredentials,
    connection: &Mutex<Connection>,
    id: ConnectionId,
    stop: &CancellationToken,
) -> Option<TunnelStream> {
    let mut wait = shared.config.resume_backoff;
    for attempt in 1..=shared.config.resume_attempts {
        if stop.is_cancelled() {
            return None;
        }
        let received = lock_connection(connection).received();
        let result = handshake(shared, |random, out| {
            client::resume(credentials, id, received, random, out)
        })
        .await;
        match result {
            Ok((stream, established)) => {
                let attached = lock_connection(connection).attach_link(
                    established.sealer,
                    established.opener,
                    established.server_received,
                );
                match attached {
                    Ok(()) => return Some(stream),
                    Err(error) => {
                        shared.fail(format!("resume: {error}"));
                        return None;
                    }
                }
            }
            Err(ClientError::Refused(ErrorCode::ResumeImpossible))
                if lock_connection(connection).awaiting_peer_close() =>
            {
                // We had sent Close, so all our Data was acknowledged; the server finished
                // the connection and only its Close was lost (docs/protocol.md §8.12.3).
                tracing::debug!(connection = id.0, "closed by the server during the drop");
                return None;
            }
            Err(ClientError::Refused(ErrorCode::SessionUnknown)) => {
                // The session is gone (the server restarted, or ended it while this
                // connection was down): the session's end, said once, not a tunnel failure.
                shared.session_ended(SessionEnd::Unknown);
                return None;
            }
            Err(ClientError::Refused(code)) if !code.is_retryable() => {
                shared.fail(format!("resume refused: {code}"));
                return None;
            }
            Err(error) => {
                tracing::debug!(attempt, %error, "resume failed; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
    shared.fail(format!(
        "connection {} could not be resumed after {} attempts",
        id.0, shared.config.resume_attempts
    ));
    None
}

/// One handshake with the forwarder's address and timeout.
async fn handshake<T: client::Outcome>(
    shared: &ClientShared,
    start: impl FnOnce(portcullis_proto::tunnel::Random, &mut Vec<u8>) -> client::AwaitChallenge<T>,
) -> Result<(TunnelStream, T), ClientError> {
    handshake_at(&shared.address, shared.config.handshake_timeout, start).await
}

/// Connects (TCP, then TLS when configured) and runs one handshake within `limit`:
/// `start` appends the hello for a fresh client random (`client::open`, `client::attach`,
/// `client::resume` or `client::hold`); the stream and what the handshake ended in
/// ([`client::Opened`] for an `Open`, [`client::Established`] for the others).
pub async fn handshake_at<T: client::Outcome>(
    address: &TunnelAddress,
    limit: Duration,
    start: impl FnOnce(portcullis_proto::tunnel::Random, &mut Vec<u8>) -> client::AwaitChallenge<T>,
) -> Result<(TunnelStream, T), ClientError> {
    let random = fresh_random()?;
    tokio::time::timeout(limit, async {
        let mut stream = connect(address).await?;
        let mut out = Vec::new();
        let state = start(random, &mut out);
        stream.write_all(&out).await?;
        let challenge = read_server_message(&mut stream).await?;
        out.clear();
        let state = state.handle(challenge, &mut out)?;
        stream.write_all(&out).await?;
        let accept = read_server_message(&mut stream).await?;
        let established = state.handle(accept)?;
        Ok((stream, established))
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

/// The protocol's health check: a `Test` hello answered `OK` within `limit` (no broker
/// call, nothing kept on the server).
pub async fn test_server(address: &TunnelAddress, limit: Duration) -> Result<(), ClientError> {
    tokio::time::timeout(limit, async {
        let mut stream = connect(address).await?;
        let mut hello = Vec::new();
        let state = client::test(&mut hello);
        stream.write_all(&hello).await?;
        let answer = read_server_message(&mut stream).await?;
        state.handle(answer)?;
        Ok(())
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

/// TCP (`TCP_NODELAY`, keepalive) and TLS when configured.
pub async fn connect(address: &TunnelAddress) -> std::io::Result<TunnelStream> {
    let tcp = TcpStream::connect((address.host.as_str(), address.port)).await?;
    relay::tune(&tcp);
    match &address.tls {
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            Ok(Box::new(connector.connect(name.clone(), tcp).await?))
        }
        None => Ok(Box::new(tcp)),
    }
}

/// Reads one server handshake message, byte-exact: never past it into the records that
/// may follow an `Accept` at once.
pub async fn read_server_message(stream: &mut TunnelStream) -> Result<ServerMessage, ClientError> {
    let mut buf = [0u8; ServerMessage::ACCEPT_LEN];
    stream.read_exact(&mut buf[..1]).await?;
    let len = ServerMessage::len_for_kind(buf[0]).ok_or(ClientError::Protocol(
        Error::Unexpected("unknown handshake message"),
    ))?;
    stream.read_exact(&mut buf[1..len]).await?;
    match ServerMessage::decode(&buf[..len])? {
        Some((message, used)) if used == len => Ok(message),
        _ => Err(ClientError::Protocol(Error::Unexpected(
            "malformed handshake message",
        ))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_connection(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    lock(connection)
}

#[cfg(test)]
mod tests {
    use portcullis_proto::tunnel::MAX_WINDOW;

    use super::ClientConfig;

    /// An upload over a long round trip needs the launcher's window to grow as the server's
    /// does (docs/protocol.md §8.12.2); a fixed default kept it at 256 KiB per round trip.
    #[test]
    fn the_launchers_windows_grow_by_default() {
        let config = ClientConfig::default();
        assert_eq!(config.connection.max_window, MAX_WINDOW);
        assert!(config.connection.window_budget.limit() >= MAX_WINDOW);
    }
}
