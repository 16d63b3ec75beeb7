//! Live sessions: their connections, their timers and their end (docs/protocol.md §8.1).
//!
//! A session is created by a redeemed `Open` and ends at `EndSession`, at its idle timeout
//! (no application byte and no data connection connected for `idle`), at its maximum
//! duration, when it has had no hold and no connection for [`EMPTY_SESSION_LINGER`], or at
//! shutdown. Its supervisor task then waits for its connection drivers and its hold to
//! finish, erases the session key and sends `stop` with the application bytes relayed each
//! way. A [`SessionSlot`] reserves room under `max_sessions` before the broker call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::api::{Remote, SessionRef};
use portcullis_proto::tunnel::{EMPTY_SESSION_LINGER, ErrorCode, SessionKey, WindowBudget, server};
use portcullis_proto::{ConnectionId, SessionId, TicketId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::BrokerClient;
use crate::metrics::Metrics;
use portcullis_link::TunnelStream;

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
    /// The broker asked for the end on the control channel (docs/protocol.md §7.8).
    Administrator,
    /// The tunnel server is shutting down.
    Shutdown,
}

impl EndReason {
    /// The reason sent on the hold (`SessionEnded`), if any: none after `EndSession`, and
    /// none when no hold can be up.
    pub fn hold_reason(self) -> Option<portcullis_proto::tunnel::EndReason> {
        use portcullis_proto::tunnel::EndReason as Wire;
        match self {
            Self::Idle => Some(Wire::IdleTimeout),
            Self::MaxDuration => Some(Wire::MaxDuration),
            Self::Shutdown => Some(Wire::ShuttingDown),
            Self::Administrator => Some(Wire::EndedByAdministrator),
            Self::EndSession | Self::Empty | Self::ClientGone => None,
        }
    }

    /// The `Error` record sent on still-connected connections, if any.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            Self::Idle | Self::MaxDuration => Some(ErrorCode::SessionExpired),
            Self::Shutdown => Some(ErrorCode::ShuttingDown),
            Self::Administrator => Some(ErrorCode::EndedByAdministrator),
            Self::EndSession | Self::Empty | Self::ClientGone => None,
        }
    }

    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndSession => "end_session",
            Self::Idle => "idle_timeout",
            Self::MaxDuration => "max_duration",
            Self::Empty => "no_hold_no_connection",
            Self::ClientGone => "client_gone",
            Self::Administrator => "administrator",
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

/// The session's hold now: which one (a newer one replaces it) and how to stop it.
#[derive(Debug)]
struct HoldState {
    generation: u64,
    replaced: CancellationToken,
}

#[derive(Debug)]
struct State {
    connections: HashMap<ConnectionId, Slot>,
    next_id: u32,
    hold: Option<HoldState>,
    holds_claimed: u64,
    /// Data connections with a link up (the idle timer runs only while there is none).
    links_up: usize,
    /// Since when the session has had no hold and no connection.
    empty_since: Option<Instant>,
    end_reason: Option<EndReason>,
}

impl State {
    fn update_empty(&mut self) {
        if self.connections.is_empty() && self.hold.is_none() {
            self.empty_since.get_or_insert_with(Instant::now);
        } else {
            self.empty_since = None;
        }
    }
}

/// A claimed hold: the session's current one until released or replaced.
#[derive(Debug)]
pub struct HoldClaim {
    /// Which hold this is.
    pub generation: u64,
    /// Cancelled when a newer hold replaces this one: close it without a record.
    pub replaced: CancellationToken,
}

/// One live session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    key: SessionKey,
    notify: TicketId,
    /// Its name on the broker's control channel.
    reference: SessionRef,
    remotes: Vec<Remote>,
    opened: Instant,
    /// Milliseconds since `opened` of the last application byte or of the end of the last
    /// link, whichever came later: the idle timer's start.
    activity_ms: AtomicU64,
    /// Application bytes sent to the launcher.
    sent: AtomicU64,
    /// Application bytes received from the launcher.
    received: AtomicU64,
    end: CancellationToken,
    /// Wakes the supervisor when the deadline may have come closer (a connection ended).
    changed: tokio::sync::Notify,
    drivers: TaskTracker,
    /// Its connections' share of the server's window budget.
    window_budget: WindowBudget,
    state: Mutex<State>,
}

impl Session {
    /// Its connections' share of the server's window budget (docs/protocol.md §8.12.2).
    pub fn window_budget(&self) -> &WindowBudget {
        &self.window_budget
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session key (attach and resume proofs).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Its name on the broker's control channel (docs/protocol.md §7.8).
    pub fn reference(&self) -> SessionRef {
        self.reference
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

    /// Restarts the idle timer now (an application byte moved, or the last link ended).
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
        state.update_empty();
        Ok((id, receiver))
    }

    /// The driver of connection `id` ended: it no longer counts.
    pub fn release_connection(&self, id: ConnectionId) {
        let mut state = self.lock();
        state.connections.remove(&id);
        state.update_empty();
        drop(state);
        self.changed.notify_one();
    }

    /// A data connection's link is up: the idle timer stops.
    pub fn link_up(&self) {
        self.lock().links_up += 1;
        self.changed.notify_one();
    }

    /// A data connection's link ended: with no link left, the idle timer starts.
    pub fn link_down(&self) {
        let mut state = self.lock();
        state.links_up = state.links_up.saturating_sub(1);
        let last = state.links_up == 0;
        drop(state);
        if last {
            self.touch();
        }
        self.changed.notify_one();
    }

    /// Makes a new hold the session's hold, replacing (and stopping) the current one;
    /// `None` once the session ended.
    pub fn claim_hold(&self) -> Option<HoldClaim> {
        let mut state = self.lock();
        if state.end_reason.is_some() {
            return None;
        }
        if let Some(old) = state.hold.take() {
            old.replaced.cancel();
        }
        state.holds_claimed += 1;
        let claim = HoldClaim {
            generation: state.holds_claimed,
            replaced: CancellationToken::new(),
        };
        state.hold = Some(HoldState {
            generation: claim.generation,
            replaced: claim.replaced.clone(),
        });
        state.update_empty();
        Some(claim)
    }

    /// Hold `generation` closed; if it is still the session's hold, the session has none.
    pub fn release_hold(&self, generation: u64) {
        let mut state = self.lock();
        if state
            .hold
            .as_ref()
            .is_some_and(|hold| hold.generation == generation)
        {
            state.hold = None;
            state.update_empty();
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Whether a hold is up now.
    pub fn is_held(&self) -> bool {
        self.lock().hold.is_some()
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

    /// When the session must end at the latest, and why (docs/protocol.md §8.1): the idle
    /// timeout counts only while no link is up.
    fn deadline(&self, idle: Duration, max: Duration) -> (Instant, EndReason) {
        let mut deadline = (self.opened + max, EndReason::MaxDuration);
        let state = self.lock();
        if state.links_up == 0 {
            let activity = Duration::from_millis(self.activity_ms.load(Ordering::Relaxed));
            let idle_at = self.opened + activity + idle;
            if idle_at < deadline.0 {
                deadline = (idle_at, EndReason::Idle);
            }
        }
        if let Some(since) = state.empty_since {
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
    /// The memory every connection's send window grows from (`limits.window_budget_bytes`).
    pub window_budget: WindowBudget,
    /// The most of it one session's connections take together (docs/protocol.md §8.12.2).
    pub window_share: usize,
}

/// The live sessions of one server.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    /// Room reserved by `Open`s waiting on the broker (counted under `max_sessions`).
    reserved: AtomicUsize,
    supervisors: TaskTracker,
}

/// Room for one session under `max_sessions`, reserved before the broker call; released
/// on drop unless it became a session.
#[derive(Debug)]
pub struct SessionSlot {
    table: Arc<SessionTable>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.table.reserved.fetch_sub(1, Ordering::SeqCst);
    }
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

    /// Reserves room for one session if sessions alive plus slots reserved stay within
    /// `max` (docs/protocol.md §8.15); `None` when the server is full.
    pub fn reserve(self_arc: &Arc<SessionTable>, max: usize) -> Option<SessionSlot> {
        // The map's lock orders reservations against sessions being opened and removed.
        let sessions = self_arc.lock();
        let reserved = self_arc.reserved.load(Ordering::SeqCst);
        if sessions.len() + reserved >= max {
            return None;
        }
        self_arc.reserved.fetch_add(1, Ordering::SeqCst);
        Some(SessionSlot {
            table: Arc::clone(self_arc),
        })
    }

    /// Creates a session for a redeemed ticket in the room `slot` reserved, and starts its
    /// supervisor.
    pub fn open(
        self_arc: &Arc<SessionTable>,
        slot: SessionSlot,
        id: SessionId,
        key: SessionKey,
        notify: TicketId,
        remotes: Vec<Remote>,
        env: Arc<SessionEnv>,
    ) -> Arc<Session> {
        let session = Arc::new(Session {
            id,
            key,
            reference: SessionRef::of(&notify),
            notify,
            remotes,
            opened: Instant::now(),
            activity_ms: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            end: CancellationToken::new(),
            changed: tokio::sync::Notify::new(),
            drivers: TaskTracker::new(),
            window_budget: env.window_budget.share(env.window_share),
            state: Mutex::new(State {
                connections: HashMap::new(),
                next_id: 1,
                hold: None,
                holds_claimed: 0,
                links_up: 0,
                empty_since: None,
                end_reason: None,
            }),
        });
        {
            let mut sessions = self_arc.lock();
            sessions.insert(id, Arc::clone(&session));
            // The slot's room is the session's now.
            drop(slot);
        }
        env.metrics.sessions.inc();
        env.metrics.sessions_opened.inc();
        self_arc
            .supervisors
            .spawn(supervise(Arc::clone(self_arc), Arc::clone(&session), env));
        session
    }

    /// Every live session, for the control channel's report.
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
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
