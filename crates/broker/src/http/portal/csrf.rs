//! CSRF tokens of the portal's forms.
//!
//! Signed in: a synchronizer token, HMAC-SHA256 keyed with the session token (a secret the
//! page's scripts cannot read: the cookie is HttpOnly) over a fixed label. Nothing is
//! stored, every broker sharing a database computes the same token, and it dies with the
//! session. Another site can neither read it nor compute it.
//!
//! The sign-in form has no session yet: a double-submit token, a random value both in the
//! `__Host-` cookie [`LOGIN_COOKIE`] and in the form, which must match.
//!
//! Both come on top of the `Origin`/`Sec-Fetch-Site` check (`http::same_origin`) and the
//! `SameSite=Strict` cookies.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use portcullis_proto::hex;

/// The double-submit cookie of the sign-in form. `__Host-`: browsers accept it only when
/// `Secure`, `Path=/` and without `Domain`, so a sibling subdomain cannot plant one.
pub(super) const LOGIN_COOKIE: &str = "__Host-portcullis_login_csrf";

/// The name of the hidden form field that carries the token.
pub(super) const FIELD: &str = "csrf";

/// What the session token keys, so the CSRF token is no other hash of it.
const LABEL: &[u8] = b"portcullis portal csrf v1";

/// Length of a sign-in token in hex characters (16 random bytes).
const LOGIN_TOKEN_HEX_LEN: usize = 32;

/// The synchronizer token of the session with this token.
pub(super) fn session_token(session: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session.as_bytes());
    hex::encode(hmac::sign(&key, LABEL).as_ref())
}

/// Whether `submitted` is the session's token (in constant time).
pub(super) fn session_token_matches(session: &str, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|submitted| same(&session_token(session), submitted))
}

/// The request's sign-in token cookie, if it has a well-formed one.
pub(super) fn login_cookie(headers: &HeaderMap) -> Option<String> {
    crate::http::cookies::value(headers, LOGIN_COOKIE)
        .filter(|value| {
            value.len() == LOGIN_TOKEN_HEX_LEN && value.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(str::to_owned)
}

/// A fresh sign-in token.
pub(super) fn new_login_token() -> Result<String, portcullis_proto::Error> {
    Ok(hex::encode(&portcullis_proto::random::array::<16>()?))
}

/// The `Set-Cookie` value of the sign-in token (`max_age` 0 clears it).
pub(super) fn login_cookie_header(token: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure"
    ))
    .ok()
}

/// Whether the sign-in form's token matches its cookie (in constant time).
pub(super) fn login_token_matches(headers: &HeaderMap, submitted: Option<&str>) -> bool {
    match (login_cookie(headers), submitted) {
        (Some(cookie), Some(submitted)) => same(&cookie, submitted),
        _ => false,
    }
}

fn same(expected: &str, submitted: &str) -> bool {
    verify_slices_are_equal(expected.as_bytes(), submitted.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use axum::http::header::COOKIE;

    use super::*;

    #[test]
    fn session_tokens_are_per_session_and_checked_exactly() {
        let token = session_token("session-a");
        assert_eq!(token.len(), 64);
        assert_eq!(token, session_token("session-a"));
        assert_ne!(token, session_token("session-b"));
        assert!(session_token_matches("session-a", Some(&token)));
        assert!(!session_token_matches("session-b", Some(&token)));
        assert!(!session_token_matches("session-a", Some("")));
        assert!(!session_token_matches("session-a", None));
    }

    #[test]
    fn login_tokens_must_match_a_well_formed_cookie() {
        let token = new_login_token().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {LOGIN_COOKIE}={token}")).unwrap(),
        );
        assert!(login_token_matches(&headers, Some(&token)));
        assert!(!login_token_matches(&headers, Some("0123")));
        assert!(!login_token_matches(&headers, None));
        assert!(!login_token_matches(&HeaderMap::new(), Some(&token)));
        headers.insert(
            COOKIE,
            HeaderValue::from_static("__Host-portcullis_login_csrf=xyz"),
        );
        assert_eq!(login_cookie(&headers), None);
    }
}
