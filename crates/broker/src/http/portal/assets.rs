//! The portal's script, style sheet and icon, embedded in the binary.
//!
//! Pages link them with `?v=` and a digest of the content, so they can be cached for a year
//! and a new broker's assets are still fetched at once.

use std::sync::OnceLock;

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::headers::security_headers;

/// One embedded file.
pub(super) struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    version: OnceLock<String>,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, body: &'static str) -> Self {
        Self {
            name,
            content_type,
            body,
            version: OnceLock::new(),
        }
    }

    /// `/assets/NAME?v=DIGEST`.
    pub(super) fn url(&self) -> String {
        let version = self.version.get_or_init(|| {
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.body.as_bytes());
            portcullis_proto::hex::encode(digest.as_ref().get(..6).unwrap_or_default())
        });
        format!("/assets/{}?v={version}", self.name)
    }

    /// The file, cached for a year: its URL changes with its content.
    pub(super) fn respond_versioned(&self) -> Response {
        self.respond("public, max-age=31536000, immutable")
    }

    fn respond(&self, cache: &'static str) -> Response {
        let mut response = self.body.into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        security_headers(headers);
        response
    }
}

/// The portal's script.
pub(super) static SCRIPT: Asset = Asset::new(
    "portal.js",
    "text/javascript; charset=utf-8",
    include_str!("assets/portal.js"),
);
/// The portal's style sheet.
pub(super) static STYLE: Asset = Asset::new(
    "portal.css",
    "text/css; charset=utf-8",
    include_str!("assets/portal.css"),
);
/// The icon (also answered at `/favicon.ico`, which browsers ask for unprompted).
pub(super) static FAVICON: Asset = Asset::new(
    "favicon.svg",
    "image/svg+xml",
    include_str!("assets/favicon.svg"),
);

/// The asset served as `/assets/{name}`.
pub(super) fn named(name: &str) -> Option<&'static Asset> {
    [&SCRIPT, &STYLE, &FAVICON]
        .into_iter()
        .find(|asset| asset.name == name)
}

/// `GET /favicon.ico`: the SVG icon, under the name browsers try by default.
pub(super) async fn favicon() -> Response {
    FAVICON.respond("public, max-age=86400")
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn assets_have_versions_and_types() {
        assert!(SCRIPT.url().starts_with("/assets/portal.js?v="));
        assert_eq!(SCRIPT.url().len(), "/assets/portal.js?v=".len() + 12);
        assert!(FAVICON.body.starts_with("<svg"));
        assert!(STYLE.body.contains(":focus-visible"));
        let response = SCRIPT.respond("no-store");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
