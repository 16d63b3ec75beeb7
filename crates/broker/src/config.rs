//! The broker's configuration: a TOML file, every setting optional.
//!
//! [`BrokerConfig::load`] reads, parses and validates a file; [`BrokerConfig::for_dev`] is
//! the configuration of `portcullis dev`. Unknown settings are refused, so that a typo is an
//! error instead of a silently ignored line. Relative paths are relative to the broker's
//! working directory. `docs/broker.md` is the reference (with defaults) and
//! `docs/broker.example.toml` a complete example.
//!
//! Error messages name the file, the setting (`limits.body_limit_bytes`) and the line, and
//! never quote the offending line: it may hold the database password.

mod auth;
mod error;
mod operators;
mod urls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_proto::api::{ClientVersionInfo, PROTOCOL_VERSION, ProtocolVersion};
use serde::Deserialize;

use error::invalid;
use urls::check_http_url;

pub use auth::{AuthConfig, OidcProviderConfig};
pub use error::ConfigError;
pub use operators::{AdminConfig, AuditConfig, AuditExport};
pub use portcullis_proto::IpNetwork as TrustedProxy;
pub use urls::{DatabaseUrl, PublicUrl};

/// Default of [`BrokerConfig::data_dir`].
pub const DEFAULT_DATA_DIR: &str = "./portcullis-data";
/// Default of [`BrokerConfig::listen`].
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// Name of the SQLite database in the data directory when `database_url` is not set.
pub const DEFAULT_DATABASE_FILE: &str = "portcullis.db";

/// The broker's configuration file.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Directory of the signing key, the SQLite database and the self-signed TLS
    /// certificate; created (mode `0700`) if missing. Default `./portcullis-data`.
    pub data_dir: PathBuf,
    /// Address and port the HTTP(S) server listens on. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// The `https://` URL at which users and launchers reach the broker; the host of
    /// `udssv2://` launch links comes from it. Default: derived from `listen`
    /// (see [`BrokerConfig::public_url`]). Required with `tls.mode = "off"`.
    pub public_url: Option<PublicUrl>,
    /// How the server does TLS.
    pub tls: TlsConfig,
    /// Where the database is: `sqlite://…` or `postgres://…`. Default
    /// `sqlite://<data_dir>/portcullis.db` (see [`BrokerConfig::database_url`]).
    pub database_url: Option<DatabaseUrl>,
    /// Directory of operator launcher scripts; a file named like a built-in script
    /// (`rdp-windows.js`) replaces it. Default: none, only built-in scripts.
    pub scripts_dir: Option<PathBuf>,
    /// Time allowed for a service's readiness check during a ticket exchange, in
    /// milliseconds; a service not ready in time gets the retryable "Preparing service".
    /// Default 1000.
    pub readiness_timeout_ms: u64,
    /// Reverse proxies whose `X-Forwarded-For` header is believed: IP addresses or CIDR
    /// networks (`["10.0.0.5", "192.168.0.0/24"]`). A request from one of them is
    /// attributed (audit log, per-IP login limit) to the last address in that header that
    /// is not itself a trusted proxy. Default: none, every request is its TCP peer's.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Ticket lifetimes and limits.
    pub tickets: TicketConfig,
    /// What `GET /uds/rest/client` tells launchers.
    pub client: ClientConfig,
    /// Request limits and rate limits.
    pub limits: LimitsConfig,
    /// Portal sessions.
    pub session: SessionConfig,
    /// Sign-in through OpenID Connect providers (`[[auth.oidc]]`).
    pub auth: AuthConfig,
    /// Credentials the broker hands to launchers (`[credentials]`).
    pub credentials: CredentialsConfig,
    /// Who may use the admin pages.
    pub admin: AdminConfig,
    /// The audit log's export.
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            public_url: None,
            tls: TlsConfig::default(),
            database_url: None,
            scripts_dir: None,
            readiness_timeout_ms: 1_000,
            trusted_proxies: Vec::new(),
            tickets: TicketConfig::default(),
            client: ClientConfig::default(),
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            auth: AuthConfig::default(),
            credentials: CredentialsConfig::default(),
            admin: AdminConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[tls]`: how the broker's server does TLS.
#[derive(Clone, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `"self-signed"` (default), `"files"` or `"off"`.
    pub mode: TlsMode,
    /// PEM certificate chain, required with `mode = "files"` and refused otherwise.
    pub cert: Option<PathBuf>,
    /// PEM private key, required with `mode = "files"` and refused otherwise.
    pub key: Option<PathBuf>,
    /// Also accept TLS 1.2 (for old clients). Default `false`: TLS 1.3 only.
    pub allow_tls12: bool,
    /// Refuse TLS handshakes whose client does not offer the hybrid post-quantum key
    /// exchange `X25519MLKEM768` (the groups it offered are logged at warn level); TLS 1.2
    /// is then refused too. Default `false`: such clients get a classical key exchange.
    /// Either way, a client that offers the hybrid gets it, whatever its order of
    /// preference.
    pub require_post_quantum: bool,
}

/// `tls.mode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// A certificate generated in the data directory: for trials and `portcullis dev`.
    #[default]
    SelfSigned,
    /// The certificate and key files given in `tls.cert` and `tls.key`.
    Files,
    /// Plain HTTP, for a broker behind a TLS-terminating reverse proxy; `public_url` must
    /// then name the proxy.
    Off,
}

/// `[tickets]`: lifetimes and limits of one-use tickets.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketConfig {
    /// Lifetime of a client ticket (launch link), in seconds. Default 60.
    pub client_ticket_ttl_secs: u64,
    /// Lifetime of a tunnel ticket, in seconds. Default 120.
    pub tunnel_ticket_ttl_secs: u64,
    /// How long a launcher has to open its first tunnel connection (the params'
    /// `startup_time`), in seconds; at most the tunnel ticket's lifetime. OpenUDS 5
    /// launchers keep each tunnel, and themselves, alive at least that long. Default 30.
    pub tunnel_startup_secs: u64,
    /// Wrong tunnel-handshake proofs one launcher address (an IPv6 address by its /64) may
    /// present per minute, across tunnel servers, before `start` requests for that address
    /// are refused unchecked for the rest of the minute. A wrong proof never burns a ticket.
    /// Default 10.
    pub wrong_proofs_per_minute_per_source: u32,
    /// The same per ticket: requests for it are then refused unchecked. Default 5.
    pub wrong_proofs_per_minute_per_ticket: u32,
    /// The same per user, all their tickets together. Default 20.
    pub wrong_proofs_per_minute_per_user: u32,
    /// Wrong proofs one tunnel server may present per minute, all principals together;
    /// beyond it, its requests from addresses and users that presented a wrong proof this
    /// minute are refused unchecked (everyone else's are still checked). Default 100.
    pub wrong_proofs_per_minute_per_tunnel_server: u32,
}

impl Default for TicketConfig {
    fn default() -> Self {
        Self {
            client_ticket_ttl_secs: 60,
            tunnel_ticket_ttl_secs: 120,
            tunnel_startup_secs: 30,
            wrong_proofs_per_minute_per_source: 10,
            wrong_proofs_per_minute_per_ticket: 5,
            wrong_proofs_per_minute_per_user: 20,
            wrong_proofs_per_minute_per_tunnel_server: 100,
        }
    }
}

impl TicketConfig {
    /// `client_ticket_ttl_secs` as a duration.
    pub fn client_ticket_ttl(&self) -> Duration {
        Duration::from_secs(self.client_ticket_ttl_secs)
    }

    /// `tunnel_ticket_ttl_secs` as a duration.
    pub fn tunnel_ticket_ttl(&self) -> Duration {
        Duration::from_secs(self.tunnel_ticket_ttl_secs)
    }

    /// The time a launcher has to open its first tunnel connection: `tunnel_startup_secs`,
    /// but never past the tunnel ticket's expiry (the ticket would be gone).
    pub fn tunnel_startup(&self) -> Duration {
        Duration::from_secs(self.tunnel_startup_secs.min(self.tunnel_ticket_ttl_secs))
    }
}

/// `[client]`: the answer of `GET /uds/rest/client`.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Newest launcher protocol version offered. Default `"5.0.0"`.
    pub available_version: ProtocolVersion,
    /// Oldest protocol version accepted in ticket requests; at most `available_version`.
    /// Default `"5.0.0"`.
    pub required_version: ProtocolVersion,
    /// `http(s)://` URL of the launcher download page. Default `<public_url>/download`.
    pub client_link: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            available_version: PROTOCOL_VERSION,
            required_version: PROTOCOL_VERSION,
            client_link: None,
        }
    }
}

/// `[limits]`: request limits and rate limits.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body, in bytes. Default 65536.
    pub body_limit_bytes: usize,
    /// Time allowed for one request, in seconds. Default 30.
    pub request_timeout_secs: u64,
    /// Time a client has to send a request's headers, in seconds, counted from their
    /// first byte: a connection sending its headers that slowly is closed. Default 10.
    pub header_read_timeout_secs: u64,
    /// Time a client has to complete the TLS handshake, in seconds. Default 10.
    pub tls_handshake_timeout_secs: u64,
    /// Time a connection may stay open with no request in flight, in seconds: before its
    /// first request (after TLS) and between requests. Default 30.
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones are closed as soon as they are accepted
    /// (counted in `portcullis_connections_refused_total`, and logged). Default 1024.
    pub max_connections: usize,
    /// Password checks (Argon2id, 19 MiB each) run at once at most; 0 means one per core.
    /// Further sign-ins wait up to 2 s in a bounded queue, else get HTTP 503. Default 0.
    pub concurrent_password_checks: usize,
    /// Portal sign-in attempts per minute for one user name. Default 5.
    pub login_attempts_per_minute_per_user: u32,
    /// Portal sign-in attempts per minute from one IP address. Default 20.
    pub login_attempts_per_minute_per_ip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 65_536,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            tls_handshake_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 1024,
            concurrent_password_checks: 0,
            login_attempts_per_minute_per_user: 5,
            login_attempts_per_minute_per_ip: 20,
        }
    }
}

impl LimitsConfig {
    /// `request_timeout_secs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `header_read_timeout_secs` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// `tls_handshake_timeout_secs` as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// `idle_timeout_secs` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// `[session]`: portal sessions.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Lifetime of a portal session cookie, in seconds. Default 28800 (8 hours).
    pub cookie_ttl_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_ttl_secs: 8 * 60 * 60,
        }
    }
}

impl SessionConfig {
    /// `cookie_ttl_secs` as a duration.
    pub fn cookie_ttl(&self) -> Duration {
        Duration::from_secs(self.cookie_ttl_secs)
    }
}

/// `[credentials]`: the credentials the broker hands to launchers (docs/protocol.md §6.8).
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// The environment variable holding the credential key (64 hex digits) that seals
    /// stored service passwords. Default: none, the key is the file `credential-key` in
    /// `data_dir` (created on first start, mode 0600).
    pub key_env: Option<String>,
    /// How long an SSH certificate is valid after the exchange, in seconds (it is valid
    /// from 60 s before). Default 300.
    pub ssh_certificate_secs: u64,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            key_env: None,
            ssh_certificate_secs: 300,
        }
    }
}

/// `[log]`: logging.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or comma-separated
    /// `target=level` directives such as `"info,portcullis_broker=debug"`. The `RUST_LOG`
    /// environment variable, when set, takes precedence. Default `"info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

impl BrokerConfig {
    /// Reads, parses and [validates](Self::validate) the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&text, path)?;
        config.validate().map_err(|error| error.in_file(path))?;
        Ok(config)
    }

    /// Parses configuration text; `path` only names it in errors. Does not validate.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        portcullis_config_file::from_toml(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })
    }

    /// The configuration of `portcullis dev`: every default, with the data directory `dir`.
    pub fn for_dev(dir: &Path) -> Self {
        Self {
            data_dir: dir.to_owned(),
            ..Self::default()
        }
    }

    /// Checks what parsing cannot: relations between settings, non-zero limits, and that
    /// the TLS files and the scripts directory exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client.required_version > self.client.available_version {
            return Err(invalid(
                "client.required_version",
                format!(
                    "{} is above client.available_version {}",
                    self.client.required_version, self.client.available_version
                ),
            ));
        }
        if let Some(link) = &self.client.client_link {
            check_http_url(link).map_err(|reason| invalid("client.client_link", reason))?;
        }
        self.validate_tls()?;
        if self.audit.export_queue == 0 {
            return Err(invalid(
                "audit.export_queue",
                "must be greater than 0".to_owned(),
            ));
        }
        if let Some(dir) = self.scripts_dir.as_deref().filter(|dir| !dir.is_dir()) {
            return Err(invalid(
                "scripts_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        for (field, value) in [
            (
                "tickets.client_ticket_ttl_secs",
                self.tickets.client_ticket_ttl_secs,
            ),
            (
                "tickets.tunnel_ticket_ttl_secs",
                self.tickets.tunnel_ticket_ttl_secs,
            ),
            (
                "tickets.tunnel_startup_secs",
                self.tickets.tunnel_startup_secs,
            ),
            (
                "tickets.wrong_proofs_per_minute_per_source",
                u64::from(self.tickets.wrong_proofs_per_minute_per_source),
            ),
            (
                "tickets.wrong_proofs_per_minute_per_ticket",
                u64::from(self.tickets.wrong_proofs_per_minute_per_ticket),
            ),
            (
                "tickets.wrong_proofs_per_minute_per_user",
                u64::from(self.tickets.wrong_proofs_per_minute_per_user),
            ),
            (
                "tickets.wrong_proofs_per_minute_per_tunnel_server",
                u64::from(self.tickets.wrong_proofs_per_minute_per_tunnel_server),
            ),
            (
                "limits.body_limit_bytes",
                self.limits.body_limit_bytes as u64,
            ),
            (
                "limits.request_timeout_secs",
                self.limits.request_timeout_secs,
            ),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            (
                "limits.tls_handshake_timeout_secs",
                self.limits.tls_handshake_timeout_secs,
            ),
            ("limits.idle_timeout_secs", self.limits.idle_timeout_secs),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.login_attempts_per_minute_per_user",
                u64::from(self.limits.login_attempts_per_minute_per_user),
            ),
            (
                "limits.login_attempts_per_minute_per_ip",
                u64::from(self.limits.login_attempts_per_minute_per_ip),
            ),
            ("readiness_timeout_ms", self.readiness_timeout_ms),
            ("session.cookie_ttl_secs", self.session.cookie_ttl_secs),
            (
                "credentials.ssh_certificate_secs",
                self.credentials.ssh_certificate_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0".to_owned()));
            }
        }
        self.validate_bounds()?;
        self.auth.validate()?;
        check_log_filter(&self.log.level).map_err(|reason| invalid("log.level", reason))
    }

    /// Upper bounds of lifetimes and timeouts, so that `now + ttl` stays far from
    /// overflowing and a typo (an extra few zeros) is an error rather than tickets that
    /// never expire.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        const DAY: u64 = 24 * 60 * 60;
        // Far above any file-descriptor limit, and within a semaphore's permits.
        const MAX_CONNECTIONS: u64 = 1 << 20;
        for (field, value, max) in [
            (
                "tickets.client_ticket_ttl_secs",
                self.tickets.client_ticket_ttl_secs,
                DAY,
            ),
            (
                "tickets.tunnel_ticket_ttl_secs",
                self.tickets.tunnel_ticket_ttl_secs,
                DAY,
            ),
            (
                "tickets.tunnel_startup_secs",
                self.tickets.tunnel_startup_secs,
                DAY,
            ),
            (
                "session.cookie_ttl_secs",
                self.session.cookie_ttl_secs,
                30 * DAY,
            ),
            ("readiness_timeout_ms", self.readiness_timeout_ms, 60_000),
            (
                "credentials.ssh_certificate_secs",
                self.credentials.ssh_certificate_secs,
                DAY,
            ),
            (
                "limits.request_timeout_secs",
                self.limits.request_timeout_secs,
                3_600,
            ),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
                3_600,
            ),
            (
                "limits.tls_handshake_timeout_secs",
                self.limits.tls_handshake_timeout_secs,
                3_600,
            ),
            (
                "limits.idle_timeout_secs",
                self.limits.idle_timeout_secs,
                3_600,
            ),
            (
                "limits.max_connections",
                self.limits.max_connections as u64,
                MAX_CONNECTIONS,
            ),
        ] {
            if value > max {
                return Err(invalid(field, format!("must be at most {max}")));
            }
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let TlsConfig {
            mode,
            cert,
            key,
            allow_tls12: _,
            require_post_quantum: _,
        } = &self.tls;
        if *mode == TlsMode::Files {
            for (field, path) in [("tls.cert", cert), ("tls.key", key)] {
                let path = path
                    .as_ref()
                    .ok_or_else(|| invalid(field, "is required with mode = \"files\"".into()))?;
                if !path.is_file() {
                    return Err(invalid(
                        field,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        } else if cert.is_some() || key.is_some() {
            let field = if cert.is_some() {
                "tls.cert"
            } else {
                "tls.key"
            };
            return Err(invalid(field, "is only used with mode = \"files\"".into()));
        }
        if *mode == TlsMode::Off && self.public_url.is_none() {
            return Err(invalid(
                "public_url",
                "is required with tls.mode = \"off\": set it to the reverse proxy's https:// URL"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `readiness_timeout_ms` as a duration.
    pub fn readiness_timeout(&self) -> Duration {
        Duration::from_millis(self.readiness_timeout_ms)
    }

    /// Whether the broker's own server speaks TLS (`tls.mode` is not `"off"`).
    pub fn tls_enabled(&self) -> bool {
        self.tls.mode != TlsMode::Off
    }

    /// The names a self-signed certificate must cover: the public URL's host, and
    /// `localhost` and the loopback addresses for local use.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = vec![self.public_url().host().to_owned()];
        for name in ["localhost", "127.0.0.1", "::1"] {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The public URL: `public_url`, or `https://<listen>` with `localhost` for an
    /// unspecified address (`0.0.0.0`, `::`) and without the port when it is 443.
    pub fn public_url(&self) -> PublicUrl {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = match self.listen.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let port = self.listen.port();
        PublicUrl::from_host_port(&host, (port != 443).then_some(port))
    }

    /// The database URL: `database_url`, or `sqlite://<data_dir>/portcullis.db`.
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite(&self.data_dir.join(DEFAULT_DATABASE_FILE)))
    }

    /// The launcher download link: `client.client_link`, or `<public_url>/download`.
    pub fn client_link(&self) -> String {
        self.client
            .client_link
            .clone()
            .unwrap_or_else(|| format!("{}/download", self.public_url().as_str()))
    }

    /// The `result` of `GET /uds/rest/client`.
    pub fn client_version_info(&self) -> ClientVersionInfo {
        ClientVersionInfo {
            available_version: self.client.available_version.to_string(),
            required_version: self.client.required_version.to_string(),
            client_link: self.client_link(),
        }
    }
}

/// Checks a log filter: comma-separated `level` or `target=level` directives. (A bare
/// target, which `tracing` would read as `target=trace`, is refused as a likely typo.)
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_target = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
    };
    if filter.trim().is_empty() {
        return Err("must not be empty".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let valid = match directive.split_once('=') {
            Some((target, level)) => {
                is_target(target) && LEVELS.contains(&level.to_ascii_lowercase().as_str())
            }
            None => LEVELS.contains(&directive.to_ascii_lowercase().as_str()),
        };
        if !valid {
            return Err(format!(
                "{directive:?} is not a level ({}) or a target=level directive",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
