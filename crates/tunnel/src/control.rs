//! The tunnel server's end of the control channel (docs/protocol.md §7.8): one request
//! always outstanding at the broker, carrying the bytes each live session has relayed so
//! far; the answer names the sessions the broker wants ended, which end at once.
//!
//! The request waits at the broker for at most [`CONTROL_WAIT`], so the broker has every
//! session's bytes at least that often; after a failure the next attempt waits 1 s,
//! doubling up to 30 s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::api::{ControlAnswer, ControlRequest, MAX_CONTROL_SESSIONS, SessionReport};
use tokio_util::sync::CancellationToken;

use crate::metrics::ReasonLabels;
use crate::session::{EndReason, SessionTable};
use crate::shared::Shared;

/// How long the broker may hold a control request without news: the byte reports'
/// interval.
pub const CONTROL_WAIT: Duration = Duration::from_secs(5);
/// The wait after a first failure; doubled after each further one.
const RETRY_START: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Keeps the control channel up until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut retry = RETRY_START;
    let mut failing = false;
    let mut turn = 0;
    loop {
        let request = report(&shared.sessions, &mut turn);
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = shared.broker.control(&request) => outcome,
        };
        match outcome {
            Ok(answer) => {
                if failing {
                    tracing::info!("the broker's control channel works again");
                    failing = false;
                }
                retry = RETRY_START;
                count(&shared, "ok");
                end_sessions(&shared, &answer);
            }
            Err(error) => {
                count(&shared, "failed");
                if failing {
                    tracing::debug!(%error, retry_in = ?retry, "control channel still down");
                } else {
                    tracing::warn!(%error, retry_in = ?retry, "the broker's control channel failed: sessions cannot be ended from the broker until it works again");
                    failing = true;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// The report of this moment: every live session's bytes, or, with more than the protocol
/// allows in one request, the next [`MAX_CONTROL_SESSIONS`] of them in turn.
fn report(sessions: &SessionTable, turn: &mut usize) -> ControlRequest {
    let mut live = sessions.snapshot();
    live.sort_by_key(|session| session.reference());
    if live.len() > MAX_CONTROL_SESSIONS {
        let start = (*turn * MAX_CONTROL_SESSIONS) % live.len();
        live.rotate_left(start);
        live.truncate(MAX_CONTROL_SESSIONS);
        *turn = turn.wrapping_add(1);
    }
    ControlRequest {
        wait_ms: u64::try_from(CONTROL_WAIT.as_millis()).unwrap_or(u64::MAX),
        sessions: live
            .iter()
            .map(|session| {
                let (sent, recv) = session.byte_counts();
                SessionReport {
                    session: session.reference(),
                    sent,
                    recv,
                }
            })
            .collect(),
    }
}

/// Ends the sessions the broker named that this server holds; others are ignored (ended
/// already, their `stop` on its way).
fn end_sessions(shared: &Shared, answer: &ControlAnswer) {
    if answer.end.is_empty() {
        return;
    }
    let live: HashMap<_, _> = shared
        .sessions
        .snapshot()
        .into_iter()
        .map(|session| (session.reference(), session))
        .collect();
    for command in &answer.end {
        if let Some(session) = live.get(&command.session) {
            tracing::info!(session = %session.id(), reason = command.reason, "the broker asked to end the session");
            session.end(EndReason::Administrator);
        }
    }
}

fn count(shared: &Shared, outcome: &'static str) {
    shared
        .metrics
        .control_requests
        .get_or_create(&ReasonLabels { reason: outcome })
        .inc();
}
