//! Live sessions: their connections, their timers and their end (docs/protocol.md §8.1).
//!
//! A session is created by a redeemed `Open` and ends at `EndSession`, at its idle timeout,
//! at its maximum duration, when it has had no connection for
//! [`EMPTY_SESSION_LINGER`], or at shutdown. Its supervisor task then waits for its
//! connection drivers to finish, erases the session key and sends `stop` with the
//! application bytes relayed each way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::api::Remote;
use portcullis_proto::tunnel::{EMPTY_SESSION_LINGER, ErrorCode, SessionKey, server};
use portcullis_proto::{ConnectionId, SessionId, TicketId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::BrokerClient;
use crate::handshake::TunnelStream;
use crate::metrics::Metrics;

/// Why a session ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndReason {
    /// The launcher sent `EndSession`.
    EndSession,
    /// No record or target byte moved for the idle timeout.
    Idle,
    /// The maximum session duration was reached.
    MaxDuration,
    /// No connection was left for [`EMPTY_SESSION_LINGER`].
    Empty,
    /// The client was gone before its `Accept` could be sent.
    ClientGone,
    /// The tunnel server is shutting down.
    Shutdown,
}

impl EndReason {
    /// The `Error` record sent on still-connected connections, if any.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            Self::Idle | Self::MaxDuration => Some(ErrorCode::SessionExpired),
            Self::Shutdown => Some(ErrorCode::ShuttingDown),
            Self::EndSession | Self::Empty | Self::ClientGone => None,
        }
    }

    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndSession => "end_session",
            Self::Idle => "idle_timeout",
            Self::MaxDuration => "max_duration",
            Self::Empty => "no_connection_left",
            Self::ClientGone => "client_gone",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A `Resume` whose proof verified, handed to the connection's driver, which owns the
/// connection's stream state.
#[derive(Debug)]
pub struct ResumeRequest {
    /// The verified handshake, to be accepted with the driver's receive counter.
    pub verified: server::VerifiedResume,
    /// The new tunnel connection.
    pub stream: TunnelStream,
    /// Keeps the connection counted while it lives.
    pub permit: crate::limits::ConnectionPermit,
}

#[derive(Debug)]
struct Slot {
    resume: mpsc::Sender<ResumeRequest>,
}

#[derive(Debug)]
struct State {
    connections: HashMap<ConnectionId, Slot>,
    next_id: u32,
    empty_since: Option<Instant>,
    end_reason: Option<EndReason>,
}

/// One live session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    key: SessionKey,
    notify: TicketId,
    remotes: Vec<Remote>,
    opened: Instant,
    /// Milliseconds since `opened` of the last activity.
    activity_ms: AtomicU64,
    /// Application bytes sent to the launcher.
    sent: AtomicU64,
    /// Application bytes received from the launcher.
    received: AtomicU64,
    end: CancellationToken,
    /// Wakes the supervisor when the deadline may have come closer (a connection ended).
    changed: tokio::sync::Notify,
    drivers: TaskTracker,
    state: Mutex<State>,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session key (attach and resume proofs).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// The targets, in order of preference.
    pub fn remotes(&self) -> &[Remote] {
        &self.remotes
    }

    /// Cancelled when the session ends.
    pub fn end_token(&self) -> &CancellationToken {
        &self.end
    }

    /// Why the session ended (`None` while it lives).
    pub fn end_reason(&self) -> Option<EndReason> {
        self.lock().end_reason
    }

    /// Ends the session (the first reason counts).
    pub fn end(&self, reason: EndReason) {
        let mut state = self.lock();
        if state.end_reason.is_none() {
            state.end_reason = Some(reason);
        }
        drop(state);
        self.end.cancel();
    }

    /// Records activity now.
    pub fn touch(&self) {
        let elapsed = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    /// Counts application bytes sent to the launcher.
    pub fn count_sent(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Counts application bytes received from the launcher.
    pub fn count_received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Bytes sent to and received from the launcher so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// Reserves a new connection id, if the session is below `limit` connections.
    pub fn reserve_connection(
        &self,
        limit: usize,
    ) -> Result<(ConnectionId, mpsc::Receiver<ResumeRequest>), ErrorCode> {
        let mut state = self.lock();
        if state.end_reason.is_some() {
            return Err(ErrorCode::SessionUnknown);
        }
        if state.connections.len() >= limit {
            return Err(ErrorCode::TooManyConnections);
        }
        let id = ConnectionId(state.next_id);
        state.next_id = state
            .next_id
            .checked_add(1)
            .ok_or(ErrorCode::TooManyConnections)?;
        // A resume waits for its driver; one at a time is plenty.
        let (sender, receiver) = mpsc::channel(1);
        state.connections.insert(id, Slot { resume: sender });
        state.empty_since = None;
        Ok((id, receiver))
    }

    /// The driver of connection `id` ended: it no longer counts.
    pub fn release_connection(&self, id: ConnectionId) {
        let mut state = self.lock();
        state.connections.remove(&id);
        if state.connections.is_empty() {
            state.empty_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Where a `Resume` of connection `id` goes.
    pub fn resume_sender(&self, id: ConnectionId) -> Option<mpsc::Sender<ResumeRequest>> {
        self.lock()
            .connections
            .get(&id)
            .map(|slot| slot.resume.clone())
    }

    /// Tracks a connection driver, so the session's end waits for it.
    pub fn drivers(&self) -> &TaskTracker {
        &self.drivers
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the session must end at the latest, and why, seen at `now`.
    fn deadline(&self, idle: Duration, max: Duration) -> (Instant, EndReason) {
        let activity = Duration::from_millis(self.activity_ms.load(Ordering::Relaxed));
        let mut deadline = (self.opened + activity + idle, EndReason::Idle);
        let max_at = self.opened + max;
        if max_at < deadline.0 {
            deadline = (max_at, EndReason::MaxDuration);
        }
        if let Some(since) = self.lock().empty_since {
            let empty_at = since + EMPTY_SESSION_LINGER;
            if empty_at < deadline.0 {
                deadline = (empty_at, EndReason::Empty);
            }
        }
        deadline
    }
}

/// Everything a session needs at its end.
#[derive(Debug)]
pub struct SessionEnv {
    /// Where `stop` goes.
    pub broker: BrokerClient,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Idle timeout.
    pub idle: Duration,
    /// Maximum duration.
    pub max_duration: Duration,
    /// How long a session waits for its drivers after its end before it reports anyway.
    pub drain: Duration,
}

/// The live sessions of one server.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    supervisors: TaskTracker,
}

impl SessionTable {
    /// Sessions alive now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is alive.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The session `id`, if alive.
    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.lock().get(&id).cloned()
    }

    /// Creates a session for a redeemed ticket and starts its supervisor.
    pub fn open(
        self_arc: &Arc<SessionTable>,
        id: SessionId,
        key: SessionKey,
        notify: TicketId,
        remotes: Vec<Remote>,
        env: Arc<SessionEnv>,
    ) -> Arc<Session> {
        let session = Arc::new(Session {
            id,
            key,
            notify,
            remotes,
            opened: Instant::now(),
            activity_ms: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            end: CancellationToken::new(),
            changed: tokio::sync::Notify::new(),
            drivers: TaskTracker::new(),
            state: Mutex::new(State {
                connections: HashMap::new(),
                next_id: 1,
                empty_since: None,
                end_reason: None,
            }),
        });
        self_arc.lock().insert(id, Arc::clone(&session));
        env.metrics.sessions.inc();
        env.metrics.sessions_opened.inc();
        self_arc
            .supervisors
            .spawn(supervise(Arc::clone(self_arc), Arc::clone(&session), env));
        session
    }

    /// Ends every session with `reason`.
    pub fn end_all(&self, reason: EndReason) {
        let sessions: Vec<Arc<Session>> = self.lock().values().cloned().collect();
        for session in sessions {
            session.end(reason);
        }
    }

    /// Waits until every session supervisor finished (each sent its `stop`).
    pub async fn wait_reported(&self) {
        self.supervisors.close();
        self.supervisors.wait().await;
        self.supervisors.reopen();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends the session at its deadline, waits for its drivers, reports `stop`.
async fn supervise(table: Arc<SessionTable>, session: Arc<Session>, env: Arc<SessionEnv>) {
    loop {
        let (deadline, reason) = session.deadline(env.idle, env.max_duration);
        tokio::select! {
            () = session.end.cancelled() => break,
            () = session.changed.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                // Activity may have moved the deadline meanwhile.
                let (now_deadline, _) = session.deadline(env.idle, env.max_duration);
                if now_deadline <= Instant::now() {
                    session.end(reason);
                    break;
                }
            }
        }
    }
    session.drivers.close();
    if tokio::time::timeout(env.drain, session.drivers.wait())
        .await
        .is_err()
    {
        tracing::warn!(session = %session.id, "connections did not finish in time; reporting anyway");
    }
    table.lock().remove(&session.id);
    env.metrics.sessions.dec();
    let reason = session.end_reason().unwrap_or(EndReason::Shutdown);
    env.metrics
        .sessions_ended
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
    let (sent, received) = session.byte_counts();
    let duration = session.opened.elapsed();
    tracing::info!(
        session = %session.id,
        reason = reason.as_str(),
        sent,
        received,
        duration_ms = duration.as_millis() as u64,
        "session ended"
    );
    report_stop(&env, &session.notify, sent, received).await;
}

/// Sends `stop`, retried while the broker is unavailable; a report given up is logged and
/// counted, never silently lost.
pub async fn report_stop(env: &SessionEnv, notify: &TicketId, sent: u64, received: u64) {
    let started = std::time::Instant::now();
    let outcome = env.broker.stop_with_retries(notify, sent, received).await;
    let label = match &outcome {
        Ok(()) => "ok",
        Err(crate::broker::BrokerError::Refused) => "refused",
        Err(crate::broker::BrokerError::BadAnswer(_)) => "bad_answer",
        Err(_) => "unavailable",
    };
    env.metrics
        .broker_seconds
        .get_or_create(&crate::metrics::CallLabels {
            call: "stop",
            outcome: label,
        })
        .observe(started.elapsed().as_secs_f64());
    if let Err(error) = outcome {
        env.metrics.stop_reports_lost.inc();
        tracing::error!(notify = %notify, sent, received, %error, "stop report lost: the broker's audit log misses this session's byte counts");
    }
}
