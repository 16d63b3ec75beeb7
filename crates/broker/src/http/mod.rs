//! The broker's HTTP surface: one [`router`] over an [`AppState`], served by
//! [`crate::server`]; the tests in `crates/broker/tests` drive it over real HTTPS.
//!
//! | routes | module | error style |
//! |---|---|---|
//! | `GET /uds/rest/client`, `POST /uds/rest/client/{ticket}/ticket` | [`client_api`] | OpenUDS 5 envelope, HTTP 200 |
//! | `POST /uds/rest/tunnel/ticket`, `POST /uds/rest/tunnel/control` | [`tunnel_api`] | HTTP 403 `{"error": "Access denied"}` |
//! | `/api/login`, `/api/logout`, `/api/services…`, `/api/connections[/{id}]` | [`user_api`] | JSON `{"error": …}` with a status |
//! | `GET /health`, `GET /metrics` | [`ops`] | |
//! | `/`, `/login`, `/logout`, `/services/{id}/connect`, `/download`, `/assets/…` | `portal` | HTML pages |
//! | `/login/oidc/{slug}`, `/login/oidc/{slug}/callback` (OpenID Connect, [`crate::oidc`]) | `portal` | HTML pages |
//!
//! Request paths hold ticket ids, so nothing here logs a raw URI: spans and metrics use
//! the matched route pattern.
//!
//! The body limit (`limits.body_limit_bytes`) is enforced by the body extractor
//! ([`LimitedBody`]), so each API refuses an oversized body in its own style.
//!
//! A state-changing user-API or portal request from another site (its `Origin` or `Sec-Fetch-Site`
//! says so) is refused with HTTP 403 before its handler runs (module `same_origin`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::metrics::RouteLabels;
use crate::state::AppState;

mod body;
pub mod client_api;
pub(crate) mod cookies;
mod error;
pub mod ops;
mod portal;
mod same_origin;
pub mod tunnel_api;
pub mod user_api;

pub use crate::client_addr::ClientAddr;
pub use body::{BodyRefusal, LimitedBody};
pub use error::UserApiError;

/// The whole HTTP application of one broker.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.body_limit_bytes;
    let timeout = Duration::from_secs(state.config.limits.request_timeout_secs);
    let same_origin = Arc::new(same_origin::SameOrigin::new(
        state.config.public_url().as_str(),
    ));
    Router::new()
        .route(client_api::VERSION_PATH, get(client_api::version))
        .route(
            portcullis_proto::api::BROKER_KEY_PATH,
            get(client_api::broker_key),
        )
        .route(client_api::EXCHANGE_PATH, post(client_api::exchange))
        .route(tunnel_api::PATH, post(tunnel_api::ticket))
        .route(tunnel_api::CONTROL_PATH, post(tunnel_api::control))
        .route("/api/login", post(user_api::login))
        .route("/api/logout", post(user_api::logout))
        .route("/api/services", get(user_api::services))
        .route("/api/services/{id}/connect", post(user_api::connect))
        .route(
            user_api::CONNECTIONS_PATH,
            get(user_api::recent_connections),
        )
        .route(
            "/api/connections/{status_id}",
            get(user_api::connection_status),
        )
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .merge(portal::routes())
        .route_layer(middleware::from_fn_with_state(
            same_origin,
            same_origin::refuse_cross_site,
        ))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// Any other path: the portal's 404 page, or JSON under `/api/`.
async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        UserApiError::NotFound.into_response()
    } else {
        portal::not_found()
    }
}

/// Records latency by route and logs one line per request, without the raw path.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            route: route.clone(),
            status,
        })
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status, elapsed_ms = elapsed.as_millis() as u64, "request");
    response
}
