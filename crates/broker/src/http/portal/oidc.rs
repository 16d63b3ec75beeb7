//! Signing in through an OpenID Connect provider: the "Sign in with NAME" buttons,
//! `GET /login/oidc/{slug}` (off to the provider) and its callback
//! `GET /login/oidc/{slug}/callback`, which ends in the password sign-in's own session
//! (`accounts::open_session`) or in a page that says why not.
//!
//! The callback is a GET, as the provider's redirect is: the same-origin check covers
//! state-changing methods only, and the pending sign-in's cookie is `SameSite=Lax` so the
//! browser sends it on that cross-site top-level navigation. The session cookie is
//! `SameSite=Strict`, which a browser withholds on the rest of a cross-site redirect chain:
//! so the callback answers a page that moves on to `/` itself (a same-origin navigation).
//! Every refusal is audited (`login.oidc_refused`) with the technical reason; the page
//! tells the user in plain words.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use portcullis_proto::SourceKey;
use serde_json::json;

use super::headers::{respond, security_headers};
use super::layout::page;
use super::{csrf, failure, pages};
use crate::accounts::{self, audit};
use crate::http::ClientAddr;
use crate::http::user_api;
use crate::oidc::cookie::{self, PENDING_TTL_SECS};
use crate::oidc::flow::{self, Callback};
use crate::oidc::{Provider, Providers, Refusal, account};
use crate::state::AppState;

/// The buttons of the sign-in page: a link per provider styled as a button (a form would
/// not do: the CSP's `form-action 'self'` also covers the redirect to the provider), with
/// the stable id `oidc-<slug>`. Starting a sign-in changes nothing, so it needs no token.
pub(super) fn buttons(providers: &Providers) -> Markup {
    html! {
        @if providers.iter().next().is_some() {
            div id="oidc-providers" class="sign-in" {
                p { "Or:" }
                @for provider in providers.iter() {
                    p {
                        a id={ "oidc-" (provider.slug) } class="button secondary"
                            href={ "/login/oidc/" (provider.slug) } {
                            "Sign in with " (provider.name())
                        }
                    }
                }
            }
        }
    }
}

/// `GET /login/oidc/{slug}`: off to the provider, with the pending sign-in's cookie.
pub(super) async fn begin(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    Path(slug): Path<String>,
) -> Response {
    let Some(provider) = state.oidc.get(&slug) else {
        return pages::not_found();
    };
    match flow::begin(&state.oidc, provider, state.now()).await {
        Ok(started) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            match HeaderValue::from_str(&started.location) {
                Ok(location) => headers.insert(LOCATION, location),
                Err(error) => return failure(user_api_internal(error.to_string())),
            };
            if let Some(cookie) = cookie::header(&started.cookie, PENDING_TTL_SECS) {
                headers.append(SET_COOKIE, cookie);
            }
            security_headers(headers);
            response
        }
        Err(refusal) => {
            // Only a provider that cannot be reached refuses here: the refusal is audited
            // within the sign-in limit per address, so a flood cannot fill the audit log.
            let within_limit = match client.0 {
                Some(ip) => state
                    .logins_per_ip
                    .check(&SourceKey::of(ip), state.now())
                    .is_ok(),
                None => true,
            };
            if within_limit {
                refused(&state, provider, &client, refusal, None).await
            } else {
                refusal_page(provider, &refusal)
            }
        }
    }
}

/// `GET /login/oidc/{slug}/callback`: the provider's answer.
pub(super) async fn callback(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(slug): Path<String>,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let Some(provider) = state.oidc.get(&slug) else {
        return pages::not_found();
    };
    // Each callback may cost a token request: counted per client address with the
    // sign-ins, but not held in flight (people behind one address finish at once).
    if let Some(ip) = client.0 {
        if let Err(wait) = state
            .logins_per_ip
            .check(&SourceKey::of(ip), state.now())
            .map(drop)
        {
            return too_many(crate::rate_limit::retry_after_secs(wait));
        }
    }
    let callback = query.map(|Query(callback)| callback).unwrap_or_default();
    let value = crate::http::cookies::value(&headers, cookie::COOKIE_NAME);
    let pending = match flow::check_state(&state.oidc, provider, value, &callback, state.now()) {
        Ok(pending) => pending,
        Err(refusal) => return refused(&state, provider, &client, refusal, None).await,
    };
    let identity = match flow::finish(provider, &pending, &callback).await {
        Ok(identity) => identity,
        Err(refusal) => return refused(&state, provider, &client, refusal, None).await,
    };
    let signed_in =
        match account::sign_in(&state.store, &provider.config, &identity, state.now()).await {
            Ok(Ok(signed_in)) => signed_in,
            Ok(Err(refusal)) => {
                let subject = Some(identity.subject.as_str());
                return refused(&state, provider, &client, refusal, subject).await;
            }
            Err(error) => return failure(error.into()),
        };
    if !signed_in.missing.is_empty() {
        tracing::warn!(
            provider = %provider.name(),
            groups = ?signed_in.missing,
            "auth.oidc.groups maps to groups the broker does not have"
        );
    }
    let detail = json!({
        "provider": provider.name(),
        "subject": identity.subject,
        "created": signed_in.created,
        "groups": signed_in.groups,
        "missing_groups": signed_in.missing,
    });
    let token = match accounts::open_session(&state, &signed_in.user, &client, "login.oidc", detail)
        .await
        .map_err(crate::http::UserApiError::from)
    {
        Ok(token) => token,
        Err(error) => return failure(error),
    };
    let session = match user_api::session_cookie(&token, state.config.session.cookie_ttl_secs) {
        Ok(session) => session,
        Err(error) => return failure(error),
    };
    let body = html! {
        h1 { "Signed in" }
        p #oidc-signed-in {
            "You are signed in. " a href="/" { "Continue to your services" } "."
        }
    };
    let mut response = respond(StatusCode::OK, page("Signed in", None, body));
    let response_headers = response.headers_mut();
    // Moves on to `/` from this page: a same-origin navigation, which carries the
    // SameSite=Strict session cookie.
    response_headers.insert("refresh", HeaderValue::from_static("0; url=/"));
    response_headers.append(SET_COOKIE, session);
    for cleared in [cookie::header("", 0), csrf::login_cookie_header("", 0)]
        .into_iter()
        .flatten()
    {
        response_headers.append(SET_COOKIE, cleared);
    }
    response
}

fn user_api_internal(detail: String) -> crate::http::UserApiError {
    crate::http::UserApiError::Internal(detail)
}

/// Audits a refused sign-in and answers the page that says why; clears the pending
/// sign-in's cookie.
async fn refused(
    state: &AppState,
    provider: &Provider,
    client: &ClientAddr,
    refusal: Refusal,
    subject: Option<&str>,
) -> Response {
    tracing::info!(
        provider = %provider.name(),
        reason = refusal.code(),
        detail = %refusal.detail(),
        "OpenID Connect sign-in refused"
    );
    let mut detail = json!({
        "provider": provider.name(),
        "reason": refusal.code(),
        "detail": refusal.detail(),
    });
    if let (Some(subject), Some(fields)) = (subject, detail.as_object_mut()) {
        fields.insert("subject".into(), json!(subject));
    }
    if let Err(error) = audit(state, "login.oidc_refused", None, client, detail).await {
        return failure(error.into());
    }
    refusal_page(provider, &refusal)
}

/// The page of a refused sign-in (clearing the pending sign-in's cookie).
fn refusal_page(provider: &Provider, refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::Unreachable(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::FORBIDDEN,
    };
    let body = html! {
        h1 { "You were not signed in" }
        section #oidc-refused data-reason=(refusal.code()) {
            p role="alert" { (refusal.user_message(provider.name())) }
        }
        p { a #back-to-sign-in href="/" { "Back to the sign-in page" } }
    };
    let mut response = respond(status, page("Not signed in", None, body));
    if let Some(cleared) = cookie::header("", 0) {
        response.headers_mut().append(SET_COOKIE, cleared);
    }
    response
}

fn too_many(seconds: u64) -> Response {
    let body = html! {
        h1 { "Too many sign-in attempts" }
        p role="alert" { "Try again in " (seconds) " seconds." }
        p { a href="/" { "Back to the sign-in page" } }
    };
    let mut response = respond(
        StatusCode::TOO_MANY_REQUESTS,
        page("Too many attempts", None, body),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(\"x\")</script>&'";
    const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;'";

    fn providers() -> Providers {
        let config = toml::from_str(&format!(
            "name = {}\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\n\
             client_secret_env = \"PATH\"\n",
            toml::Value::String(HOSTILE.to_owned())
        ))
        .unwrap();
        Providers::new(&[config], "https://broker.example", b"seed").unwrap()
    }

    #[tokio::test]
    async fn a_providers_name_is_escaped_on_its_button_and_its_refusal_page() {
        let providers = providers();
        let buttons = buttons(&providers).0;
        assert!(!buttons.contains("<script>"), "{buttons}");
        assert!(
            buttons.contains(&format!("Sign in with {ESCAPED}")),
            "{buttons}"
        );
        assert!(
            buttons.contains("id=\"oidc-script-alert-x-script\""),
            "{buttons}"
        );

        let provider = providers.iter().next().unwrap();
        let refused = refusal_page(provider, &Refusal::ProviderError(HOSTILE.to_owned()));
        let body = axum::body::to_bytes(refused.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(
            body.contains(&format!("{ESCAPED} did not sign you in")),
            "{body}"
        );
    }
}
