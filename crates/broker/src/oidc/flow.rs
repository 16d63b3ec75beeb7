//! The authorization code flow with PKCE: [`begin`] sends the browser to the provider with
//! a signed pending-sign-in cookie, `finish` checks the callback against it, redeems the
//! code and verifies the ID token.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, Scope, TokenResponse,
};

use super::cookie::{self, PENDING_TTL_SECS, Pending};
use super::verify::{Identity, TokenError, verify_id_token};
use super::{Provider, Providers, Refusal};

/// A started sign-in: where to send the browser, and the cookie to set.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL.
    pub location: String,
    /// The `Set-Cookie` value of the pending sign-in.
    pub cookie: String,
}

/// What the callback brought: `code` and `state`, or the provider's `error`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` the broker sent.
    pub state: Option<String>,
    /// The provider's error code (`access_denied`, …).
    pub error: Option<String>,
}

/// Starts a sign-in at `provider` (discovery from the cache, or fetched now).
pub async fn begin(
    providers: &Providers,
    provider: &Provider,
    now: i64,
) -> Result<Started, Refusal> {
    let metadata = provider
        .discovery
        .metadata(&provider.issuer, &provider.http)
        .await
        .map_err(Refusal::Unreachable)?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        provider.client_id.clone(),
        Some(provider.secret.clone()),
    )
    .set_redirect_uri(provider.redirect.clone());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in provider.config.scopes_with_openid().into_iter().skip(1) {
        request = request.add_scope(Scope::new(scope));
    }
    let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
    let pending = Pending {
        provider: provider.slug.clone(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        expires_at: now.saturating_add(PENDING_TTL_SECS as i64 * 1000),
    };
    let value = cookie::seal(&providers.cookie_key, &pending)
        .map_err(|error| Refusal::State(format!("cannot seal the pending sign-in: {error}")))?;
    Ok(Started {
        location: url.to_string(),
        cookie: value,
    })
}

/// The pending sign-in of this request's cookie, checked against the callback's `state`.
pub(crate) fn check_state(
    providers: &Providers,
    provider: &Provider,
    cookie_value: Option<&str>,
    callback: &Callback,
    now: i64,
) -> Result<Pending, Refusal> {
    let value = cookie_value.ok_or_else(|| Refusal::State("no pending sign-in cookie".into()))?;
    let pending = cookie::open(&providers.cookie_key, value, now)
        .ok_or_else(|| Refusal::State("the pending sign-in cookie is invalid or expired".into()))?;
    if pending.provider != provider.slug {
        return Err(Refusal::State(
            "the pending sign-in is for another provider".into(),
        ));
    }
    let state = callback.state.as_deref().unwrap_or_default();
    if aws_lc_rs::constant_time::verify_slices_are_equal(pending.state.as_bytes(), state.as_bytes())
        .is_err()
    {
        return Err(Refusal::State(
            "the state parameter does not match the pending sign-in".into(),
        ));
    }
    Ok(pending)
}

/// Redeems the callback's code (with the PKCE verifier) and verifies the ID token.
pub(crate) async fn finish(
    provider: &Provider,
    pending: &Pending,
    callback: &Callback,
) -> Result<Identity, Refusal> {
    if let Some(error) = &callback.error {
        let error: String = error.chars().take(100).collect();
        return Err(Refusal::ProviderError(format!(
            "the provider answered error={error:?}"
        )));
    }
    let code = callback
        .code
        .clone()
        .ok_or_else(|| Refusal::Token("the callback has no code".into()))?;
    let metadata = provider
        .discovery
        .metadata(&provider.issuer, &provider.http)
        .await
        .map_err(Refusal::Unreachable)?;
    let keys = metadata.jwks().clone();
    let client = CoreClient::from_provider_metadata(
        metadata,
        provider.client_id.clone(),
        Some(provider.secret.clone()),
    )
    .set_redirect_uri(provider.redirect.clone());
    let answer = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|error| Refusal::Token(format!("no token endpoint: {error}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
        .request_async(&provider.http)
        .await
        .map_err(|error| match error {
            openidconnect::RequestTokenError::Request(error) => {
                Refusal::Unreachable(format!("token request: {error}"))
            }
            other => Refusal::Token(format!("the token request was refused: {other}")),
        })?;
    let token = answer
        .id_token()
        .ok_or_else(|| Refusal::Token("the token answer has no ID token".into()))?;
    let nonce = Nonce::new(pending.nonce.clone());
    let verify = |keys| verify_id_token(token, &provider.client_id, &provider.issuer, keys, &nonce);
    match verify(&keys) {
        Err(TokenError::UnknownKey) => {
            match provider.discovery.refetch_keys(&provider.http).await {
                Some(keys) => verify(&keys),
                None => Err(TokenError::UnknownKey),
            }
        }
        other => other,
    }
    .map_err(|error| Refusal::Token(error.to_string()))
}
