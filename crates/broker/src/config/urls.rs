//! The URLs of the configuration: the broker's public URL and the database URL.

use core::fmt;
use std::path::Path;

use portcullis_proto::api::LaunchUrl;
use portcullis_proto::{Scrambler, TicketId};
use serde::Deserialize;

/// The broker's public `https://` URL, without a trailing slash.
///
/// Parsing refuses user info, a path, a query, a fragment, and hosts that cannot appear in
/// a `udssv2://` launch URL.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct PublicUrl {
    url: String,
    launch_host: String,
    host: String,
}

impl PublicUrl {
    /// Parses and normalizes a public URL such as `https://broker.example.com:8443`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
        if url.scheme() != "https" {
            return Err("must be an https:// URL: launchers always connect with https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a path, query or fragment".into());
        }
        let host = url.host_str().ok_or("must have a host")?;
        let public = Self::from_host_port(host, url.port());
        // The launch URL's own check decides which hosts launchers accept.
        let ticket = TicketId::parse(&"0".repeat(TicketId::LEN)).map_err(|e| e.to_string())?;
        let scrambler = Scrambler::parse("0").map_err(|e| e.to_string())?;
        LaunchUrl::new(public.launch_host(), ticket, scrambler)
            .map_err(|error| format!("its host cannot be used in launch links: {error}"))?;
        Ok(public)
    }

    /// The URL of `host` (an IPv6 address in brackets) and `port` (`None` for 443).
    pub(super) fn from_host_port(host: &str, port: Option<u16>) -> Self {
        let launch_host = match port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let bare_host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        Self {
            url: format!("https://{launch_host}"),
            host: bare_host.to_owned(),
            launch_host,
        }
    }

    /// The URL, such as `https://broker.example.com:8443`.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host and optional port of launch links: `udssv2://<launch_host>/…`.
    pub fn launch_host(&self) -> &str {
        &self.launch_host
    }

    /// The host name or address alone (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl TryFrom<String> for PublicUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// A database URL: `sqlite:…`, `postgres://…` or `postgresql://…`.
///
/// It may hold a password: `Debug` masks it, and [`DatabaseUrl::expose`] gives the URL to
/// the database driver.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// URL prefixes of the supported databases.
    pub const SCHEMES: [&'static str; 3] = ["sqlite:", "postgres://", "postgresql://"];

    /// Checks the scheme. The error never repeats the URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        if Self::SCHEMES.iter().any(|scheme| text.starts_with(scheme)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(
                "unsupported database URL: expected sqlite:…, postgres://… or postgresql://…"
                    .into(),
            )
        }
    }

    /// The URL of the SQLite database file at `path`, created when missing:
    /// `sqlite://<path>?mode=rwc`.
    ///
    /// Bytes that would end the path part of the URL (`?`, `#`, `%`, spaces, …) are
    /// percent-encoded. A path that is not UTF-8 stays as it is, encoded: the database then
    /// refuses to open it, rather than opening a file of another name.
    pub fn sqlite(path: &Path) -> Self {
        let mut url = String::from("sqlite://");
        for &byte in path.as_os_str().as_encoded_bytes() {
            if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
                url.push(char::from(byte));
            } else {
                url.push_str(&format!("%{byte:02X}"));
            }
        }
        url.push_str("?mode=rwc");
        Self(url)
    }

    /// Whether this is a SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// The whole URL, password included, for the database driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Fails only for URLs that cannot have a password, which this one has.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            // Unparsable: show only the scheme, the rest may hold a password.
            Err(_) => format!("{}…", self.0.split(':').next().unwrap_or_default()),
        };
        f.debug_tuple("DatabaseUrl").field(&shown).finish()
    }
}

/// Checks an absolute `http://` or `https://` URL.
pub(super) fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        _ => Err("must be an http:// or https:// URL".into()),
    }
}
