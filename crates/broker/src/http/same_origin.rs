//! Cross-site requests refused: a state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`)
//! of the user API or the portal (any path but the launcher's and tunnel servers'
//! `/uds/…`) that a browser marks as coming from another origin gets HTTP 403 before its
//! handler runs: `{"error": "cross-site request refused"}` under `/api/`, a page elsewhere.
//!
//! A browser marks it with `Sec-Fetch-Site` (anything but `same-origin` and `none`:
//! `same-site` is a sibling subdomain, which `SameSite=Strict` cookies do not keep out)
//! or, when it does not send that header, with `Origin` (any value but the broker's public
//! URL's origin, and `null`, is another origin). `Sec-Fetch-Site` decides when present:
//! under the portal's `Referrer-Policy: no-referrer` Chromium sends `Origin: null` with
//! the portal's own form posts, and a page cannot forge `Sec-Fetch-Site`. A request with
//! neither header is not a browser's cross-site request —
//! scripts, `curl` and the launcher send neither — and stays allowed, since the user API
//! is documented as usable from scripts.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::UserApiError;

/// The header browsers send to say where a request comes from relative to the target.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The one origin allowed to change state from a browser: the broker's public URL's
/// (`https://host[:port]`, the port only when not 443).
#[derive(Debug)]
pub(super) struct SameOrigin {
    origin: String,
}

impl SameOrigin {
    /// The origin of `public_url` (an `https://` URL without a path).
    pub(super) fn new(public_url: &str) -> Self {
        Self {
            origin: origin_of(public_url).unwrap_or_else(|| public_url.to_owned()),
        }
    }

    /// Why a request with these headers is a cross-site one, if it is.
    fn refusal(&self, headers: &HeaderMap) -> Option<&'static str> {
        let mut sites = headers.get_all(SEC_FETCH_SITE).iter().peekable();
        if sites.peek().is_some() {
            return sites
                .any(|site| !matches!(site.as_bytes(), b"same-origin" | b"none"))
                .then_some("Sec-Fetch-Site");
        }
        for origin in headers.get_all(ORIGIN) {
            let origin = origin.to_str().ok().and_then(origin_of);
            if origin.as_deref() != Some(self.origin.as_str()) {
                return Some("Origin");
            }
        }
        None
    }
}

/// The ASCII serialization of a URL's origin (scheme, host, port when not the default),
/// `None` for `null` and anything else that is not a URL with a host.
fn origin_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The middleware: refuses cross-site state-changing user-API requests.
pub(super) async fn refuse_cross_site(
    State(same_origin): State<Arc<SameOrigin>>,
    request: Request,
    next: Next,
) -> Response {
    let changes_state = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = request.uri().path();
    // The launcher and tunnel-server APIs are not called by browsers.
    if changes_state && !path.starts_with("/uds/") {
        if let Some(header) = same_origin.refusal(request.headers()) {
            tracing::info!(header, "refused a cross-site request");
            return if path.starts_with("/api/") {
                UserApiError::CrossSite.into_response()
            } else {
                super::portal::cross_site()
            };
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn refusal(
        same_origin: &SameOrigin,
        headers: &[(&'static str, &'static str)],
    ) -> Option<&'static str> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        same_origin.refusal(&map)
    }

    #[test]
    fn only_the_public_origin_or_no_browser_headers_pass() {
        let same = SameOrigin::new("https://broker.example.com:8443");
        assert_eq!(refusal(&same, &[]), None);
        for allowed in [
            "https://broker.example.com:8443",
            "https://BROKER.example.com:8443",
        ] {
            assert_eq!(refusal(&same, &[("origin", allowed)]), None, "{allowed}");
        }
        for refused in [
            "https://evil.example",
            "https://broker.example.com",
            "http://broker.example.com:8443",
            "https://portal.broker.example.com:8443",
            "null",
            "",
        ] {
            assert_eq!(
                refusal(&same, &[("origin", refused)]),
                Some("Origin"),
                "{refused}"
            );
        }
        for site in ["same-origin", "none"] {
            assert_eq!(refusal(&same, &[("sec-fetch-site", site)]), None);
        }
        for site in ["cross-site", "same-site", "bogus"] {
            assert_eq!(
                refusal(&same, &[("sec-fetch-site", site)]),
                Some("Sec-Fetch-Site")
            );
        }
        // Without Sec-Fetch-Site, any one bad Origin is enough.
        assert_eq!(
            refusal(
                &same,
                &[
                    ("origin", "https://broker.example.com:8443"),
                    ("origin", "https://evil.example")
                ]
            ),
            Some("Origin")
        );
    }

    #[test]
    fn sec_fetch_site_decides_when_present() {
        let same = SameOrigin::new("https://broker.example.com:8443");
        // A same-origin form post under `Referrer-Policy: no-referrer` (Chromium).
        assert_eq!(
            refusal(
                &same,
                &[("sec-fetch-site", "same-origin"), ("origin", "null")]
            ),
            None
        );
        assert_eq!(
            refusal(
                &same,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://broker.example.com:8443")
                ]
            ),
            Some("Sec-Fetch-Site")
        );
    }

    #[test]
    fn the_default_port_is_not_part_of_the_origin() {
        let same = SameOrigin::new("https://broker.example.com");
        assert_eq!(
            refusal(&same, &[("origin", "https://broker.example.com")]),
            None
        );
        assert_eq!(
            refusal(&same, &[("origin", "https://broker.example.com:443")]),
            None
        );
    }
}
