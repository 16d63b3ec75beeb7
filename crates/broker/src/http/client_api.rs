//! The OpenUDS 5 client API: `GET /uds/rest/client` and the ticket exchange.
//!
//! Every answer is HTTP 200 with `{"result": …}` or `{"error": {message, is_retryable,
//! percent}}`, as OpenUDS 5 launchers expect.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::CONNECTION;
use axum::response::{IntoResponse, Response};
use portcullis_proto::api::{Answer, BrokerKey, ErrorBody, TicketAnswer, VersionAnswer};
use portcullis_proto::openuds::Envelope;

use super::{BodyRefusal, ClientAddr, LimitedBody};
use crate::exchange::{self, ExchangeRefusal};
use crate::state::AppState;

/// Route of the version query.
pub const VERSION_PATH: &str = "/uds/rest/client";
/// Route of the ticket exchange (`{ticket}` is the 48-character client ticket).
pub const EXCHANGE_PATH: &str = "/uds/rest/client/{ticket}/ticket";

/// `GET /uds/rest/client`: which launcher versions the broker wants.
pub async fn version(State(state): State<Arc<AppState>>) -> Json<VersionAnswer> {
    Json(Answer::Result(state.config.client_version_info()))
}

/// `GET /uds/rest/client/key`: the broker's ML-DSA-65 public key with its fingerprint,
/// for a launcher's first contact (Portcullis extension, docs/protocol.md §5.5).
pub async fn broker_key(State(state): State<Arc<AppState>>) -> Json<Answer<BrokerKey>> {
    Json(Answer::Result(BrokerKey::new(
        state.signing_key.verifying_key(),
    )))
}

/// `POST /uds/rest/client/{ticket}/ticket`: the ML-KEM-768 ticket exchange.
pub async fn exchange(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    ticket: Result<Path<String>, PathRejection>,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    // A path segment that is not UTF-8 is an unknown ticket like any other malformed one,
    // and an oversized body an invalid request: the answer stays the HTTP 200 envelope.
    let ticket = ticket.map(|Path(ticket)| ticket).unwrap_or_default();
    match body {
        Ok(LimitedBody(body)) => answer(
            &state,
            exchange::exchange(&state, &ticket, &body, client).await,
        )
        .into_response(),
        // The refused body was not read, so the connection cannot carry another request.
        Err(refusal) => (
            [(CONNECTION, "close")],
            answer(&state, Err(ExchangeRefusal::Invalid(refusal.to_string()))),
        )
            .into_response(),
    }
}

/// The envelope of an exchange's outcome, counted and logged.
fn answer(state: &AppState, outcome: Result<Envelope, ExchangeRefusal>) -> Json<TicketAnswer> {
    match outcome {
        Ok(envelope) => {
            state.metrics.tickets_exchanged.inc();
            Json(Answer::Result(envelope))
        }
        Err(refusal) => {
            state.metrics.ticket_refused(refusal.reason());
            if let ExchangeRefusal::Internal(detail) = &refusal {
                tracing::error!(%detail, "ticket exchange failed");
            } else {
                tracing::info!(
                    reason = refusal.reason().as_str(),
                    "ticket exchange refused"
                );
            }
            Json(Answer::Error(error_body(state, &refusal)))
        }
    }
}

fn error_body(state: &AppState, refusal: &ExchangeRefusal) -> ErrorBody {
    match refusal {
        ExchangeRefusal::Preparing(percent) => ErrorBody::preparing(*percent),
        ExchangeRefusal::VersionTooOld { have, need } => ErrorBody::fatal(format!(
            "This launcher (version {have}) is too old: version {need} or newer is required. \
             Download it from {}",
            state.config.client_link()
        )),
        ExchangeRefusal::UnsupportedClient(why) => ErrorBody::fatal(format!(
            "{why} Download the Portcullis launcher from {}",
            state.config.client_link()
        )),
        other => ErrorBody::fatal(other.to_string()),
    }
}
