//! Tunnel ticket redemption (docs/protocol.md §7, and §9 differences 2, 4 and 7).
//!
//! `start`: the ticket must exist, be unused and unexpired, and belong to the calling
//! server's tunnel group; a tunnel protocol v1 server must bring the launcher's proof,
//! which is checked in constant time **before** the ticket is consumed (a wrong proof
//! consumes nothing and never burns the ticket; wrong proofs are counted, audited and
//! limited per source address, ticket and user, and a tunnel server's budget sheds only the
//! principals that misbehaved, [`crate::proof_limit`]); then one atomic
//! statement consumes it, so exactly one of any number of concurrent callers wins. A v1
//! server receives the tunnel secret derived from the KEM shared secret, never the KEM
//! secret itself; only a legacy ticket's server gets that (docs/protocol.md §6.7, §7.7).
//! `stop`: records bytes each way and the duration in the audit log, once.

use portcullis_proto::SharedSecret;
use portcullis_proto::TicketId;
use portcullis_proto::api::{Remote, StartRequest, StopRequest, TunnelStart};
use portcullis_proto::openuds::Envelope;
use portcullis_proto::tunnel::{derive_tunnel_secret, verify_open_proof};
use serde_json::json;

use crate::metrics::RefusalReason;
use crate::proof_limit::Principals;
use crate::state::AppState;
use crate::store::{AuditEvent, NewNotifyTicket, StoreError, TunnelServer};
use crate::tickets::crypto::{open_secret, ticket_hash};

/// Why a tunnel-server request was refused (always answered as "Access denied").
#[derive(Debug, thiserror::Error)]
pub enum RedeemRefusal {
    /// No, a malformed, or an unknown bearer token.
    #[error("unknown tunnel server token")]
    BadToken,
    /// The body is not a valid request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Unknown, used or expired ticket, or one of another tunnel group.
    #[error("unknown, used or expired ticket")]
    UnknownTicket,
    /// A v1 server without a proof, or a proof that does not verify.
    #[error("missing or wrong handshake proof")]
    BadProof,
    /// Too many wrong proofs from this tunnel server or for this source address lately.
    #[error("too many wrong handshake proofs; refused unchecked")]
    ProofLimit,
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RedeemRefusal {
    /// The metrics label.
    pub fn reason(&self) -> RefusalReason {
        match self {
            Self::BadToken => RefusalReason::BadToken,
            Self::Invalid(_) => RefusalReason::InvalidRequest,
            Self::UnknownTicket => RefusalReason::UnknownTicket,
            Self::BadProof => RefusalReason::BadProof,
            Self::ProofLimit => RefusalReason::ProofLimit,
            Self::Internal(_) => RefusalReason::Internal,
        }
    }
}

impl From<StoreError> for RedeemRefusal {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Redeems a tunnel ticket for `server`; answers the envelope of [`TunnelStart`].
pub async fn start(
    state: &AppState,
    server: &TunnelServer,
    request: &StartRequest,
) -> Result<Envelope, RedeemRefusal> {
    let hash = ticket_hash(&request.ticket);
    let now = state.now();
    if request.proof.is_some() && state.wrong_proofs.admits_source(request.ip, now).is_err() {
        return Err(RedeemRefusal::ProofLimit);
    }
    let ticket = state
        .store
        .tunnel_ticket_for_redemption(&hash, now)
        .await?
        .ok_or(RedeemRefusal::UnknownTicket)?;
    // A server outside the ticket's tunnel group learns nothing, consumes nothing, and
    // its proof is not even checked (docs/protocol.md §7.3 step 3).
    if ticket.tunnel_group != server.group {
        return Err(RedeemRefusal::UnknownTicket);
    }
    let principals = Principals {
        server: server.id,
        source: request.ip,
        ticket: hash,
        user: ticket.user_id,
    };
    // A ticket, user or shed principal over its budget: refused before the proof is
    // checked, and nothing is recorded (docs/protocol.md §7.3 step 4).
    if request.proof.is_some() && state.wrong_proofs.admits(&principals, now).is_err() {
        return Err(RedeemRefusal::ProofLimit);
    }
    let kem_secret = open_secret(&request.ticket, &ticket.secret_enc)
        .map_err(|error| RedeemRefusal::Internal(error.to_string()))?;
    let secret = tunnel_secret(&kem_secret, &request.ticket, ticket.issued_to_legacy)?;
    let proof_ok = match &request.proof {
        Some(proof) => verify_open_proof(
            &secret,
            &request.ticket,
            &proof.client_random,
            &proof.server_random,
            &proof.proof,
        )
        .is_ok(),
        // Legacy (OpenUDS 5) tunnel servers cannot bring a proof; the ticket stays one-use.
        // A ticket issued for a v1 server needs the proof whoever presents it.
        None => server.legacy && ticket.issued_to_legacy,
    };
    if !proof_ok {
        if request.proof.is_some() {
            wrong_proof(state, server, request, &principals, &ticket, now).await?;
        }
        return Err(RedeemRefusal::BadProof);
    }

    let notify =
        TicketId::generate().map_err(|error| RedeemRefusal::Internal(error.to_string()))?;
    let won = state
        .store
        .redeem_tunnel_ticket(
            &hash,
            now,
            NewNotifyTicket {
                id_hash: ticket_hash(&notify),
                tunnel_server_id: server.id,
            },
        )
        .await?;
    if !won {
        return Err(RedeemRefusal::UnknownTicket);
    }

    let plaintext = TunnelStart {
        remotes: vec![Remote {
            host: ticket.target_host.clone(),
            port: ticket.target_port,
        }],
        notify,
        shared_secret: secret,
    }
    .to_json()
    .map_err(|error| RedeemRefusal::Internal(error.to_string()))?;
    let (envelope, _) = Envelope::seal(&request.tunnel_key, &request.ticket, &plaintext)
        .map_err(|error| RedeemRefusal::Internal(error.to_string()))?;

    touch(state, server, now).await?;
    let (username, service) = names(state, &ticket.user_id, &ticket.service_id).await?;
    state
        .store
        .audit(AuditEvent {
            actor: None,
            at: now,
            kind: "tunnel.started".into(),
            username,
            service,
            source_ip: Some(request.ip.to_string()),
            detail: json!({
                "tunnel_server": server.name,
                "target": format!("{}:{}", ticket.target_host, ticket.target_port),
                "proof": request.proof.is_some(),
            })
            .to_string(),
        })
        .await?;
    Ok(envelope)
}

/// The secret a tunnel server receives for a ticket: derived from the KEM shared secret
/// for v1 servers, the KEM shared secret itself only for a ticket issued to a legacy one.
fn tunnel_secret(
    kem_secret: &SharedSecret,
    ticket: &TicketId,
    issued_to_legacy: bool,
) -> Result<SharedSecret, RedeemRefusal> {
    if issued_to_legacy {
        return Ok(kem_secret.duplicate());
    }
    derive_tunnel_secret(kem_secret, ticket)
        .map_err(|error| RedeemRefusal::Internal(error.to_string()))
}

/// A wrong proof: counted against the source, the ticket, the user and the tunnel server,
/// counted on the ticket's row and audited. The ticket stays redeemable with the right proof.
async fn wrong_proof(
    state: &AppState,
    server: &TunnelServer,
    request: &StartRequest,
    principals: &Principals,
    ticket: &crate::store::TunnelTicket,
    now: i64,
) -> Result<(), RedeemRefusal> {
    state.wrong_proofs.record_failure(principals, now);
    let failures = state
        .store
        .record_failed_proof(&principals.ticket, now)
        .await?;
    tracing::warn!(
        tunnel_server = %server.name,
        source = %request.ip,
        ticket = %request.ticket,
        failures = failures.unwrap_or(0),
        "wrong tunnel handshake proof; nothing consumed"
    );
    let (username, service) = names(state, &ticket.user_id, &ticket.service_id).await?;
    state
        .store
        .audit(AuditEvent {
            actor: None,
            at: now,
            kind: "tunnel.bad_proof".into(),
            username,
            service,
            source_ip: Some(request.ip.to_string()),
            detail: json!({
                "tunnel_server": server.name,
                "failures": failures.unwrap_or(0),
            })
            .to_string(),
        })
        .await?;
    Ok(())
}

/// Records the end of a session under its notify ticket (only the first stop counts, and
/// only from the tunnel server that started the session).
pub async fn stop(
    state: &AppState,
    server: &TunnelServer,
    request: &StopRequest,
) -> Result<(), RedeemRefusal> {
    let now = state.now();
    let stopped = state
        .store
        .stop_notify(
            &ticket_hash(&request.notify),
            server.id,
            now,
            request.sent,
            request.recv,
        )
        .await?
        .ok_or(RedeemRefusal::UnknownTicket)?;
    touch(state, server, now).await?;
    let (username, service) = names(state, &stopped.user_id, &stopped.service_id).await?;
    let mut detail = json!({
        "tunnel_server": server.name,
        "sent": request.sent,
        "recv": request.recv,
        "duration_ms": stopped.duration_ms,
    });
    // A session the broker had asked to end says who asked and why, and how long the
    // end took to come back.
    if let Some(end) = &stopped.end {
        detail["ended_by"] = json!(end.cause.map(|cause| cause.as_str()));
        detail["end_requested_by"] = json!(end.by);
        detail["end_ms"] = json!(now.saturating_sub(end.at).max(0));
    }
    state
        .store
        .audit(AuditEvent {
            actor: None,
            at: now,
            kind: "tunnel.stopped".into(),
            username,
            service,
            source_ip: None,
            detail: detail.to_string(),
        })
        .await?;
    Ok(())
}

/// Notes that `server` called (its "last seen"), at most every few seconds per broker.
async fn touch(state: &AppState, server: &TunnelServer, now: i64) -> Result<(), StoreError> {
    if state.control.may_touch(server.id) {
        state.store.touch_tunnel_server(server.id, now).await?;
    }
    Ok(())
}

async fn names(
    state: &AppState,
    user: &crate::store::UserId,
    service: &crate::store::ServiceId,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let username = state
        .store
        .user_by_id(*user)
        .await?
        .map(|user| user.username);
    let service = state
        .store
        .service_by_id(*service)
        .await?
        .map(|service| service.name);
    Ok((username, service))
}
