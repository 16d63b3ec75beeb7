//! The pending sign-in, kept in the browser: a short-lived cookie signed with HMAC-SHA256,
//! so the broker keeps nothing per started sign-in (an unauthenticated peer cannot fill
//! its memory or database) and any broker sharing the signing key can finish it.
//!
//! The cookie binds `state`, `nonce` and the PKCE verifier to the browser that started:
//! `HttpOnly`, `Secure`, `__Host-` (no sibling subdomain can plant it), and `SameSite=Lax`,
//! because the provider sends the browser back with a cross-site top-level GET.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use axum::http::HeaderValue;
use portcullis_proto::{b64, hex};
use serde::{Deserialize, Serialize};

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "__Host-portcullis_oidc";

/// How long a started sign-in may take, in seconds.
pub(crate) const PENDING_TTL_SECS: u64 = 600;

/// The longest cookie value accepted (a real one is about 400 bytes).
const MAX_COOKIE_LEN: usize = 2048;

/// What the callback needs to finish a sign-in.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The provider's slug.
    pub(crate) provider: String,
    /// The `state` sent to the provider.
    pub(crate) state: String,
    /// The `nonce` the ID token must carry.
    pub(crate) nonce: String,
    /// The PKCE code verifier.
    pub(crate) verifier: String,
    /// When the sign-in expires, Unix milliseconds.
    pub(crate) expires_at: i64,
}

/// The key that signs pending sign-ins, derived from the broker's signing key (so brokers
/// that share it accept each other's cookies).
pub(crate) fn cookie_key(seed: &[u8]) -> hmac::Key {
    let derive = hmac::Key::new(hmac::HMAC_SHA256, seed);
    let derived = hmac::sign(&derive, b"portcullis oidc pending sign-in cookie v1");
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// The signed cookie value: `base64(json).hex(mac)`.
pub(crate) fn seal(key: &hmac::Key, pending: &Pending) -> Result<String, serde_json::Error> {
    let body = b64::encode(&serde_json::to_vec(pending)?);
    let mac = hex::encode(hmac::sign(key, body.as_bytes()).as_ref());
    Ok(format!("{body}.{mac}"))
}

/// The pending sign-in of a cookie value, if its signature holds and it has not expired.
pub(crate) fn open(key: &hmac::Key, value: &str, now: i64) -> Option<Pending> {
    if value.len() > MAX_COOKIE_LEN {
        return None;
    }
    let (body, mac) = value.split_once('.')?;
    let expected = hex::encode(hmac::sign(key, body.as_bytes()).as_ref());
    verify_slices_are_equal(expected.as_bytes(), mac.as_bytes()).ok()?;
    let json = b64::decode(body, "oidc cookie").ok()?;
    let pending: Pending = serde_json::from_slice(&json).ok()?;
    (pending.expires_at > now).then_some(pending)
}

/// The `Set-Cookie` value (`max_age` 0 clears it).
pub(crate) fn header(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}; Secure"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(expires_at: i64) -> Pending {
        Pending {
            provider: "corp".into(),
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires_at,
        }
    }

    #[test]
    fn sealed_cookies_open_only_untampered_unexpired_and_under_their_key() {
        let key = cookie_key(b"seed");
        let value = seal(&key, &pending(100)).unwrap();
        assert_eq!(open(&key, &value, 50), Some(pending(100)));
        assert_eq!(open(&key, &value, 100), None, "expired");
        assert_eq!(open(&cookie_key(b"other"), &value, 50), None);
        let forged = seal(&key, &pending(1000)).unwrap();
        let (body, _) = forged.split_once('.').unwrap();
        let (_, mac) = value.split_once('.').unwrap();
        assert_eq!(open(&key, &format!("{body}.{mac}"), 50), None);
        assert_eq!(open(&key, "garbage", 50), None);
        let header = header(&value, PENDING_TTL_SECS).unwrap();
        let text = header.to_str().unwrap();
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(text.contains(attribute), "{text}");
        }
    }
}
