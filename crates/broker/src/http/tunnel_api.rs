//! The OpenUDS 5 tunnel-server API: `POST /uds/rest/tunnel/ticket` with `start` (redeem a
//! tunnel ticket once, after checking the launcher's proof) and `stop` (close accounting).
//!
//! `POST /uds/rest/tunnel/control` is the control channel (docs/protocol.md §7.8): a long
//! poll with the server's byte reports, answered with the sessions to end.
//!
//! Every refusal is HTTP 403 `{"error": "Access denied"}` whatever the cause — unknown
//! token, malformed body, unknown or used ticket, wrong proof — so a caller learns nothing;
//! the cause goes to the log and the metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_proto::api::{
    ControlRequest, MAX_CONTROL_BODY, StopAnswer, TunnelCommand, TunnelRefusal, TunnelRequest,
};

use super::{BodyRefusal, LimitedBody};
use crate::redeem::{self, RedeemRefusal};
use crate::state::AppState;
use crate::store::TokenHash;

/// Route of the tunnel-server API.
pub const PATH: &str = "/uds/rest/tunnel/ticket";
/// Route of the control channel.
pub const CONTROL_PATH: &str = portcullis_proto::api::CONTROL_PATH;

/// `POST /uds/rest/tunnel/ticket`.
pub async fn ticket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<LimitedBody, BodyRefusal>,
) -> Response {
    match body {
        Ok(LimitedBody(body)) => match handle(&state, &headers, &body).await {
            Ok(response) => response,
            Err(refusal) => refuse(&state, &refusal).into_response(),
        },
        // The refused body was not read, so the connection cannot carry another request.
        Err(refusal) => (
            [(CONNECTION, "close")],
            refuse(&state, &RedeemRefusal::Invalid(refusal.to_string())),
        )
            .into_response(),
    }
}

/// Counts and logs a refusal; every refusal looks the same to the tunnel server.
fn refuse(state: &AppState, refusal: &RedeemRefusal) -> (StatusCode, Json<TunnelRefusal>) {
    state.metrics.redemption_refused(refusal.reason());
    if let RedeemRefusal::Internal(detail) = refusal {
        tracing::error!(%detail, "tunnel API request failed");
    } else {
        // Aggregated: a flood of refusals is a line per reason and interval, not one each.
        state
            .refusal_log
            .refused(refusal.reason().as_str(), state.now());
    }
    (StatusCode::FORBIDDEN, Json(TunnelRefusal::access_denied()))
}

/// `POST /uds/rest/tunnel/control`: the token is checked before the body (at most
/// [`MAX_CONTROL_BODY`]) is read, so an unknown peer costs no more than on the ticket route.
pub async fn control(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let server = match server_of(&state, &parts.headers).await {
        Ok(server) => server,
        Err(refusal) => {
            return ([(CONNECTION, "close")], refuse(&state, &refusal)).into_response();
        }
    };
    let announced = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let body = match announced {
        Some(length) if length > MAX_CONTROL_BODY => Err(RedeemRefusal::Invalid(
            "control request body too large".into(),
        )),
        _ => axum::body::to_bytes(body, MAX_CONTROL_BODY)
            .await
            .map_err(|_| {
                RedeemRefusal::Invalid("control request body unreadable or too large".into())
            }),
    };
    let request = body.and_then(|body| {
        ControlRequest::from_json(&body)
            .and_then(|request| request.check().map(|()| request))
            .map_err(|error| RedeemRefusal::Invalid(error.to_string()))
    });
    let answer = match request {
        Ok(request) => crate::tunnel_control::serve(&state, &server, &request).await,
        Err(refusal) => {
            return ([(CONNECTION, "close")], refuse(&state, &refusal)).into_response();
        }
    };
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refuse(&state, &refusal).into_response(),
    }
}

/// The registered tunnel server whose bearer token `headers` carry.
async fn server_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<crate::store::TunnelServer, RedeemRefusal> {
    let token = bearer_token(headers).ok_or(RedeemRefusal::BadToken)?;
    state
        .store
        .tunnel_server_by_token_hash(&TokenHash::of(token.as_bytes()))
        .await?
        .ok_or(RedeemRefusal::BadToken)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, RedeemRefusal> {
    let server = server_of(state, headers).await?;
    let command = TunnelRequest::from_json(body)
        .and_then(|request| request.check())
        .map_err(|error| RedeemRefusal::Invalid(error.to_string()))?;
    match command {
        TunnelCommand::Start(start) => {
            let envelope = redeem::start(state, &server, &start).await?;
            state.metrics.redemptions.inc();
            Ok(Json(envelope).into_response())
        }
        TunnelCommand::Stop(stop) => {
            redeem::stop(state, &server, &stop).await?;
            Ok(Json(StopAnswer {}).into_response())
        }
    }
}

/// The token of `Authorization: Bearer sk-…` (the scheme name in any case, RFC 7235),
/// refusing any other form.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with("sk-")).then_some(token)
}
