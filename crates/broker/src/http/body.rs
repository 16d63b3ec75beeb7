//! Request bodies under `limits.body_limit_bytes`, refused by each API in its own style.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// A whole request body, no larger than the limit.
///
/// A body announced larger (`Content-Length`) is refused before a byte of it is read; one
/// that turns out larger while streaming is refused when it crosses the limit (the router's
/// `DefaultBodyLimit`). Handlers take `Result<LimitedBody, BodyRefusal>` so that the client
/// API can answer in its envelope and the tunnel API with its 403.
#[derive(Debug)]
pub struct LimitedBody(pub Bytes);

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyRefusal {
    /// Larger than `limits.body_limit_bytes`.
    #[error("the request body is larger than the broker accepts")]
    TooLarge,
    /// The client stopped sending, or sent something that is not an HTTP body.
    #[error("the request body could not be read")]
    Unreadable,
}

/// A route that does not answer a refused body in its own style answers 413 or 400, and
/// closes the connection: the rest of the body was not read.
impl IntoResponse for BodyRefusal {
    fn into_response(self) -> Response {
        let status = match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable => StatusCode::BAD_REQUEST,
        };
        (status, [(CONNECTION, "close")], self.to_string()).into_response()
    }
}

impl FromRequest<Arc<AppState>> for LimitedBody {
    type Rejection = BodyRefusal;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, BodyRefusal> {
        let announced = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let limit = u64::try_from(state.config.limits.body_limit_bytes).unwrap_or(u64::MAX);
        if announced.is_some_and(|length| length > limit) {
            return Err(BodyRefusal::TooLarge);
        }
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    BodyRefusal::TooLarge
                } else {
                    BodyRefusal::Unreadable
                }
            })
    }
}
