//! Errors of the user API: a status code and a message that is safe to show; internal
//! details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{CONNECTION, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AccountError;
use crate::store::StoreError;

/// What the user API answers when something goes wrong.
#[derive(Debug, thiserror::Error)]
pub enum UserApiError {
    /// No or an expired session cookie.
    #[error("not signed in")]
    Unauthenticated,
    /// Wrong user name or password.
    #[error("invalid user name or password")]
    BadCredentials,
    /// Too many login attempts; retry after this many seconds.
    #[error("too many login attempts, retry in {0} s")]
    RateLimited(u64),
    /// The resource does not exist or the user may not see it (one answer for both).
    #[error("not found")]
    NotFound,
    /// The request body is not what the route expects.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The request body is larger than `limits.body_limit_bytes`.
    #[error("request body too large")]
    TooLarge,
    /// Too many sign-ins are being checked; retry in a second.
    #[error("the broker is busy, retry in a moment")]
    Busy,
    /// A state-changing request from another site (`Origin` or `Sec-Fetch-Site`).
    #[error("cross-site request refused")]
    CrossSite,
    /// Anything else; the details go to the log.
    #[error("internal error")]
    Internal(String),
}

impl From<AccountError> for UserApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::InvalidName => Self::BadRequest(error.to_string()),
            AccountError::RateLimited(seconds) => Self::RateLimited(seconds),
            AccountError::Busy => Self::Busy,
            AccountError::BadCredentials => Self::BadCredentials,
            AccountError::NotFound => Self::NotFound,
            AccountError::Store(_) | AccountError::Internal(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<StoreError> for UserApiError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl IntoResponse for UserApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthenticated | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::Internal(detail) => {
                tracing::error!(%detail, "user API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = Json(json!({ "error": self.to_string() }));
        match self {
            Self::RateLimited(seconds) => {
                (status, [(RETRY_AFTER, seconds.to_string())], body).into_response()
            }
            Self::Busy => (status, [(RETRY_AFTER, "1".to_owned())], body).into_response(),
            // The rest of the body was not read: the connection cannot carry more requests.
            Self::TooLarge => (status, [(CONNECTION, "close".to_owned())], body).into_response(),
            _ => (status, body).into_response(),
        }
    }
}
