//! The control channel's decisions (docs/protocol.md §7.8): record a tunnel server's byte
//! report, then answer the ends asked for its sessions — at once, or when one is asked
//! for while the request is held, or when its wait is over.

use std::time::Duration;

use portcullis_proto::api::{
    ControlAnswer, ControlRequest, EndCommand, MAX_CONTROL_WAIT_MS, SessionRef,
};
use portcullis_proto::tunnel::EndReason;

use crate::control::Wake;
use crate::redeem::RedeemRefusal;
use crate::state::AppState;
use crate::store::TunnelServer;
use crate::tickets::crypto::TicketHash;

/// Serves one control request of `server` (already authenticated and checked).
pub async fn serve(
    state: &AppState,
    server: &TunnelServer,
    request: &ControlRequest,
) -> Result<ControlAnswer, RedeemRefusal> {
    if state.control.may_record_report(server.id) {
        let reports: Vec<(TicketHash, u64, u64)> = request
            .sessions
            .iter()
            .map(|report| {
                (
                    TicketHash::from_bytes(*report.session.as_bytes()),
                    report.sent,
                    report.recv,
                )
            })
            .collect();
        state
            .store
            .record_session_reports(server.id, &reports, state.now())
            .await?;
    }
    let wait = Duration::from_millis(request.wait_ms.min(MAX_CONTROL_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut holder = state.control.hold(server.id);
    loop {
        holder.mark();
        let pending = state.store.pending_ends(server.id, state.now()).await?;
        let deliver = state.control.deliverable(pending);
        if !deliver.is_empty() {
            return Ok(answer(&deliver));
        }
        match holder.wait(deadline).await {
            Wake::Changed => {}
            Wake::Answer => return Ok(ControlAnswer::default()),
            Wake::Deadline => {
                // Ends this broker delivered a while ago and that are still pending go
                // again (their answer may have been lost).
                let pending = state.store.pending_ends(server.id, state.now()).await?;
                return Ok(answer(&state.control.deliverable(pending)));
            }
        }
    }
}

fn answer(sessions: &[TicketHash]) -> ControlAnswer {
    ControlAnswer {
        end: sessions
            .iter()
            .map(|session| EndCommand {
                session: SessionRef::from_bytes(*session.as_bytes()),
                reason: EndReason::EndedByAdministrator.to_u16(),
            })
            .collect(),
    }
}
