//! `tunnel.toml`: the tunnel server's configuration. Every setting has a default except the
//! broker's URL and token; `docs/tunnel.md` lists them and `docs/tunnel.example.toml` is a
//! complete example.
//!
//! [`TunnelConfig::from_file`] reads, parses and validates a file; unknown settings are
//! refused, so that a typo is an error instead of a silently ignored line. Errors name the
//! file, the setting (`limits.record_size`) and, for parse errors, the line; they never
//! quote the offending line. [`read_token`] reads the broker token from `broker.token_file`
//! or from the environment variable [`TOKEN_ENV`]. Relative paths are relative to the
//! server's working directory.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_config_file::{TomlError, file_prefix};
use portcullis_proto::{IpNetwork, NodeId, SessionId};
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Where launchers connect. Default `0.0.0.0:7443`.
    pub listen: Vec<SocketAddr>,
    /// The operations listener (`/health`, `/metrics`); none by default. Keep it on a
    /// private address.
    pub ops_listen: Option<SocketAddr>,
    /// The broker this server redeems tickets at.
    pub broker: BrokerLink,
    /// TLS around tunnel connections.
    pub tls: TunnelTls,
    /// Expect a PROXY protocol v2 header first on every connection (behind a layer-4 load
    /// balancer). Default false.
    pub proxy_protocol: bool,
    /// The addresses allowed to send that header (the balancers, the cluster's members):
    /// required with `proxy_protocol`; a connection from anywhere else is closed unanswered.
    pub proxy_protocol_trusted: Vec<IpNetwork>,
    /// Several servers behind one balancer address (docs/protocol.md §8.16).
    pub cluster: Cluster,
    /// What one peer, and everyone together, can make the server hold.
    pub limits: TunnelLimits,
    /// Timeouts (docs/protocol.md §8.13).
    pub timeouts: TunnelTimeouts,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7443))],
            ops_listen: None,
            broker: BrokerLink::default(),
            tls: TunnelTls::default(),
            proxy_protocol: false,
            proxy_protocol_trusted: Vec::new(),
            cluster: Cluster::default(),
            limits: TunnelLimits::default(),
            timeouts: TunnelTimeouts::default(),
        }
    }
}

/// `[broker]`: how to reach the broker's tunnel-server API.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerLink {
    /// The broker's base URL, `https://host[:port]` (`http://` only for loopback tests).
    pub url: String,
    /// A file holding this server's bearer token (`sk-…`, printed by `portcullis admin
    /// tunnel add`); the file should be mode 0600.
    pub token_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for the broker, in addition to the
    /// platform's roots (a self-signed broker certificate, for example).
    pub ca_file: Option<PathBuf>,
}

/// `[tls]`: TLS around tunnel connections (docs/protocol.md §8.1).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelTls {
    /// Certificate chain (PEM). TLS is on when `cert` and `key` are set.
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// Refuse handshakes that do not use the hybrid `X25519MLKEM768` key exchange.
    pub require_post_quantum: bool,
}

/// `[cluster]`: the servers of one tunnel group behind one balancer address. Each one's
/// session ids start with its node id; a connection for another member's session is
/// forwarded to that member (docs/protocol.md §8.16), so the balancer needs no affinity.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This server's node id, 1–65535, unique in the cluster. None: not a member.
    pub node_id: Option<u16>,
    /// Every other member.
    pub peers: Vec<ClusterPeer>,
}

/// `[[cluster.peers]]`: another member of the cluster.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterPeer {
    /// Its node id.
    pub node_id: u16,
    /// Its tunnel listen address, reached directly (not through the balancer).
    pub address: SocketAddr,
}

impl Cluster {
    /// This server's node id, when it is a member.
    pub fn node(&self) -> Option<NodeId> {
        self.node_id.and_then(NodeId::new)
    }

    /// Where a connection for `session` goes when this server does not hold it: the
    /// member its id names, if that is another member.
    pub fn owner_of(&self, session: SessionId) -> Option<SocketAddr> {
        let own = self.node()?;
        let node = session.node();
        if node == own.get() {
            return None;
        }
        self.peers
            .iter()
            .find(|peer| peer.node_id == node)
            .map(|peer| peer.address)
    }
}

/// `[limits]` (docs/protocol.md §8.15).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelLimits {
    /// TCP connections open at once. Default 10,000.
    pub max_connections: usize,
    /// TCP connections open at once from one source address (IPv6: its /64). Default 256.
    pub max_connections_per_source: usize,
    /// Handshakes per second from one source address (burst twice that). Default 20.
    pub handshakes_per_second_per_source: u32,
    /// `Open` handshakes waiting on the broker at once. Default 64.
    pub max_pending_opens: usize,
    /// The same, per source address. Default 4.
    pub max_pending_opens_per_source: usize,
    /// Sessions at once. Default 4096.
    pub max_sessions: usize,
    /// Connections per session (connected or held for resume). Default 16.
    pub max_connections_per_session: usize,
    /// The initial send window: sent but unacknowledged bytes kept per connection for
    /// resume at first (docs/protocol.md §8.12.2). Default 262,144.
    pub replay_buffer_bytes: usize,
    /// The largest send window of a connection, to which it grows with the measured
    /// bandwidth-delay product; at least `replay_buffer_bytes`, at most the protocol's
    /// 16,777,216 (the default).
    pub max_window_bytes: usize,
    /// Window growth beyond `replay_buffer_bytes` of all connections together; 0: windows
    /// never grow. Default 268,435,456.
    pub window_budget_bytes: usize,
    /// Largest Data record this server sends. Default 16,384.
    pub record_size: usize,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_source: 256,
            handshakes_per_second_per_source: 20,
            max_pending_opens: 64,
            max_pending_opens_per_source: 4,
            max_sessions: 4096,
            max_connections_per_session: portcullis_proto::tunnel::DEFAULT_MAX_CONNECTIONS,
            replay_buffer_bytes: portcullis_proto::tunnel::DEFAULT_REPLAY_CAPACITY,
            max_window_bytes: portcullis_proto::tunnel::MAX_WINDOW,
            window_budget_bytes: portcullis_proto::tunnel::DEFAULT_WINDOW_BUDGET,
            record_size: portcullis_proto::tunnel::DEFAULT_PLAINTEXT,
        }
    }
}

/// `[timeouts]`, in seconds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelTimeouts {
    /// TCP accept until the proof arrived (PROXY header and TLS included). Default 5.
    pub handshake_secs: u64,
    /// The broker's `start` call, connection included. Default 5.
    pub broker_call_secs: u64,
    /// Connecting to the target, all remotes together. Default 10.
    pub target_connect_secs: u64,
    /// A session ends after this long with no data connection open and no application byte
    /// relayed (docs/protocol.md §8.1). Default 300.
    pub idle_secs: u64,
    /// A session ends this long after it was opened. Default 28,800 (8 h).
    pub max_session_secs: u64,
    /// At shutdown, how long live sessions may go on before they are ended. Default 10.
    pub shutdown_grace_secs: u64,
}

impl Default for TunnelTimeouts {
    fn default() -> Self {
        Self {
            handshake_secs: 5,
            broker_call_secs: 5,
            target_connect_secs: 10,
            idle_secs: 300,
            max_session_secs: 8 * 3600,
            shutdown_grace_secs: 10,
        }
    }
}

impl TunnelTimeouts {
    /// The handshake timeout.
    pub fn handshake(&self) -> Duration {
        Duration::from_secs(self.handshake_secs)
    }

    /// The broker call timeout.
    pub fn broker_call(&self) -> Duration {
        Duration::from_secs(self.broker_call_secs)
    }

    /// The target connect timeout.
    pub fn target_connect(&self) -> Duration {
        Duration::from_secs(self.target_connect_secs)
    }

    /// The session idle timeout.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_secs)
    }

    /// The maximum session duration.
    pub fn max_session(&self) -> Duration {
        Duration::from_secs(self.max_session_secs)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The environment variable read for the broker token when `broker.token_file` is not set.
pub const TOKEN_ENV: &str = "PORTCULLIS_TUNNEL_TOKEN";

/// The longest timeout accepted, in seconds (one year): a deadline computed from a larger
/// one could overflow the clock.
pub const MAX_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

/// The longest token file read (a token is about 50 bytes).
const MAX_TOKEN_FILE_LEN: u64 = 4096;

/// Why a configuration or the broker token was refused.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file (the configuration or the token file) could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error (in the message, not a `source`, so that it shows once).
        cause: std::io::Error,
    },
    /// The file is not valid TOML or does not match the settings.
    #[error("{}", error.in_file(path))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (never the line's text).
        error: TomlError,
    },
    /// A setting's value is not acceptable.
    #[error("{}invalid `{field}`: {reason}", file_prefix(path.as_deref()))]
    Invalid {
        /// The configuration file, when the configuration came from one.
        path: Option<PathBuf>,
        /// The setting, such as `timeouts.handshake_secs`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The broker token is missing or malformed (the message never contains the token).
    #[error("broker token from {origin}: {reason}")]
    Token {
        /// Where it came from: the token file's path or the environment variable.
        origin: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

impl ConfigError {
    /// Adds the configuration file's name to a validation error.
    fn in_file(self, file: &Path) -> Self {
        match self {
            Self::Invalid {
                path: None,
                field,
                reason,
            } => Self::Invalid {
                path: Some(file.to_owned()),
                field,
                reason,
            },
            other => other,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        field,
        reason: reason.into(),
    }
}

impl TunnelConfig {
    /// Reads, parses and [validates](Self::validate) the configuration file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let config = Self::parse(&text, path)?;
        config.validate().map_err(|error| error.in_file(path))?;
        Ok(config)
    }

    /// Parses configuration text; `path` only names it in errors. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        portcullis_config_file::from_toml(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })
    }

    /// Checks what parsing cannot: a listen address, the broker URL, non-zero limits and
    /// timeouts, record and replay sizes, a handshake that fits in the client's patience,
    /// and TLS files given together. Does not touch the files it names (TLS and the token
    /// are read by [`crate::tls`] and [`read_token`], which name the file on failure).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(invalid("listen", "must name at least one address"));
        }
        let shared = |ops: &SocketAddr| ops.port() != 0 && self.listen.contains(ops);
        if let Some(ops) = self.ops_listen.filter(shared) {
            return Err(invalid(
                "ops_listen",
                format!("{ops} is also a tunnel listen address"),
            ));
        }
        check_broker_url(&self.broker.url).map_err(|reason| invalid("broker.url", reason))?;
        match (self.proxy_protocol, self.proxy_protocol_trusted.is_empty()) {
            (true, true) => {
                return Err(invalid(
                    "proxy_protocol_trusted",
                    "is required with proxy_protocol = true: the addresses of the load \
                     balancers (CIDR networks or addresses); anyone else could write a header \
                     and pass for any address",
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "proxy_protocol_trusted",
                    "is set but proxy_protocol is false: no PROXY header is read",
                ));
            }
            _ => {}
        }
        self.validate_cluster()?;
        self.validate_limits()?;
        self.validate_timeouts()?;
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => Err(invalid("tls.key", "is required when tls.cert is set")),
            (None, Some(_)) => Err(invalid("tls.cert", "is required when tls.key is set")),
            (None, None) if self.tls.require_post_quantum => Err(invalid(
                "tls.require_post_quantum",
                "needs TLS: set tls.cert and tls.key",
            )),
            _ => Ok(()),
        }
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let Some(own) = cluster.node_id else {
            if cluster.peers.is_empty() {
                return Ok(());
            }
            return Err(invalid(
                "cluster.node_id",
                "is required with cluster.peers: this server's own node id, 1 to 65535",
            ));
        };
        if own == 0 {
            return Err(invalid("cluster.node_id", "must be 1 to 65535"));
        }
        if !self.proxy_protocol {
            return Err(invalid(
                "cluster.node_id",
                "needs proxy_protocol = true: the members forward connections to one another \
                 with a PROXY v2 header naming the launcher",
            ));
        }
        let mut seen = vec![own];
        for peer in &cluster.peers {
            if peer.node_id == 0 || seen.contains(&peer.node_id) {
                return Err(invalid(
                    "cluster.peers",
                    format!(
                        "node id {} is 0 or used twice: each member needs its own, 1 to 65535",
                        peer.node_id
                    ),
                ));
            }
            seen.push(peer.node_id);
            let ip = peer.address.ip();
            if !self
                .proxy_protocol_trusted
                .iter()
                .any(|network| network.contains(ip))
            {
                return Err(invalid(
                    "cluster.peers",
                    format!(
                        "{ip} (node {}) is not in proxy_protocol_trusted: the connections it \
                         forwards here would be closed",
                        peer.node_id
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        for (field, value) in [
            ("limits.max_connections", limits.max_connections),
            (
                "limits.max_connections_per_source",
                limits.max_connections_per_source,
            ),
            (
                "limits.handshakes_per_second_per_source",
                limits.handshakes_per_second_per_source as usize,
            ),
            ("limits.max_pending_opens", limits.max_pending_opens),
            (
                "limits.max_pending_opens_per_source",
                limits.max_pending_opens_per_source,
            ),
            ("limits.max_sessions", limits.max_sessions),
            (
                "limits.max_connections_per_session",
                limits.max_connections_per_session,
            ),
            ("limits.replay_buffer_bytes", limits.replay_buffer_bytes),
            ("limits.max_window_bytes", limits.max_window_bytes),
            ("limits.record_size", limits.record_size),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        let max_record = portcullis_proto::tunnel::MAX_PLAINTEXT;
        if limits.record_size > max_record {
            return Err(invalid(
                "limits.record_size",
                format!(
                    "{} is above the protocol's {max_record}",
                    limits.record_size
                ),
            ));
        }
        if limits.replay_buffer_bytes < limits.record_size {
            return Err(invalid(
                "limits.replay_buffer_bytes",
                format!(
                    "{} is below limits.record_size {}: one record must fit",
                    limits.replay_buffer_bytes, limits.record_size
                ),
            ));
        }
        let max_window = portcullis_proto::tunnel::MAX_WINDOW;
        if limits.max_window_bytes > max_window {
            return Err(invalid(
                "limits.max_window_bytes",
                format!(
                    "{} is above the protocol's {max_window}",
                    limits.max_window_bytes
                ),
            ));
        }
        if limits.max_window_bytes < limits.replay_buffer_bytes {
            return Err(invalid(
                "limits.max_window_bytes",
                format!(
                    "{} is below limits.replay_buffer_bytes {}, the initial window",
                    limits.max_window_bytes, limits.replay_buffer_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        let timeouts = &self.timeouts;
        for (field, value) in [
            ("timeouts.handshake_secs", timeouts.handshake_secs),
            ("timeouts.broker_call_secs", timeouts.broker_call_secs),
            ("timeouts.target_connect_secs", timeouts.target_connect_secs),
            ("timeouts.idle_secs", timeouts.idle_secs),
            ("timeouts.max_session_secs", timeouts.max_session_secs),
            ("timeouts.shutdown_grace_secs", timeouts.shutdown_grace_secs),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
            if value > MAX_TIMEOUT_SECS {
                return Err(invalid(
                    field,
                    format!("{value} is above {MAX_TIMEOUT_SECS} (one year)"),
                ));
            }
        }
        // The client gives up 20 s after its hello; the server must have answered by then,
        // or a ticket can be redeemed for a client that is gone (docs/protocol.md §8.13).
        let client_limit = portcullis_proto::tunnel::CLIENT_HANDSHAKE_TIMEOUT.as_secs();
        let server_worst = timeouts.handshake_secs + timeouts.broker_call_secs;
        if server_worst >= client_limit {
            return Err(invalid(
                "timeouts.broker_call_secs",
                format!(
                    "timeouts.handshake_secs + timeouts.broker_call_secs = {server_worst} s \
                     must stay below the client's {client_limit} s handshake limit"
                ),
            ));
        }
        Ok(())
    }
}

/// `broker.url`: `https://host[:port]`, or `http://` to a loopback host (tests, `dev`).
fn check_broker_url(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is required: the broker's https:// URL".into());
    }
    let url = reqwest::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    let host = url.host_str().filter(|host| !host.is_empty());
    let host = host.ok_or("must have a host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "must be an https:// URL (http:// only to a loopback address): the token \
                 and the tunnel secrets travel on it"
                    .into(),
            );
        }
        other => return Err(format!("must be an https:// URL, not {other}://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a path, query or fragment: the base URL only".into());
    }
    Ok(())
}

/// This tunnel server's bearer token at the broker (`sk-…`).
///
/// Erased from memory when dropped; its `Debug` output shows no part of it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct BrokerToken(String);

impl BrokerToken {
    /// Checks a token's form: `sk-` then printable ASCII without spaces. Surrounding
    /// whitespace (a file's final newline) is removed first.
    pub fn new(text: &str) -> Result<Self, &'static str> {
        let token = text.trim();
        if token.is_empty() {
            return Err("is empty");
        }
        if !token.starts_with("sk-") || token.len() == 3 {
            return Err(
                "does not look like a tunnel-server token (sk-…, printed by `portcullis admin tunnel add`)",
            );
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err("contains spaces or characters other than printable ASCII");
        }
        Ok(Self(token.to_owned()))
    }

    /// The token, for the `Authorization: Bearer` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BrokerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrokerToken(<redacted>)")
    }
}

/// Reads the broker token: from `broker.token_file` when it is set, otherwise from the
/// environment variable [`TOKEN_ENV`] (`PORTCULLIS_TUNNEL_TOKEN`).
///
/// A token file readable by its group or by others gets a warning (it should be mode
/// 0600). Errors name the file or the variable, never the token.
pub fn read_token(link: &BrokerLink) -> Result<BrokerToken, ConfigError> {
    read_token_from(link, std::env::var_os(TOKEN_ENV))
}

/// [`read_token`] with the environment variable's value passed in (tests cannot set the
/// environment safely).
fn read_token_from(link: &BrokerLink, env: Option<OsString>) -> Result<BrokerToken, ConfigError> {
    let Some(path) = &link.token_file else {
        let origin = format!("the environment variable {TOKEN_ENV}");
        let Some(value) = env else {
            return Err(invalid(
                "broker.token_file",
                format!("is required unless {TOKEN_ENV} is set"),
            ));
        };
        let value = Zeroizing::new(value.into_string().map_err(|_| ConfigError::Token {
            origin: origin.clone(),
            reason: "is not valid UTF-8",
        })?);
        return BrokerToken::new(&value).map_err(|reason| ConfigError::Token { origin, reason });
    };
    let read_error = |cause| ConfigError::Read {
        path: path.clone(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    warn_if_readable_by_others(path, &metadata);
    let origin = || format!("{}", path.display());
    if metadata.len() > MAX_TOKEN_FILE_LEN {
        return Err(ConfigError::Token {
            origin: origin(),
            reason: "the file is too large to hold a token",
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_TOKEN_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    BrokerToken::new(&text).map_err(|reason| ConfigError::Token {
        origin: origin(),
        reason,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, metadata: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{mode:04o}"),
            "the broker token file is readable by its group or others; make it mode 0600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _metadata: &std::fs::Metadata) {}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../docs/tunnel.example.toml");

    fn parse(text: &str) -> Result<TunnelConfig, ConfigError> {
        TunnelConfig::parse(text, Path::new("tunnel.toml"))
    }

    /// A valid configuration: the defaults and a broker URL.
    fn minimal() -> TunnelConfig {
        parse("[broker]\nurl = \"https://broker.example.com\"\n").unwrap()
    }

    /// The field a validation error names.
    fn refused_field(config: &TunnelConfig) -> &'static str {
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_with_a_broker_url_validate() {
        let config = minimal();
        config.validate().unwrap();
        assert_eq!(config.listen, vec!["0.0.0.0:7443".parse().unwrap()]);
        assert_eq!(config.limits, TunnelLimits::default());
        assert_eq!(config.timeouts, TunnelTimeouts::default());
        assert!(!config.proxy_protocol);
        // Without a broker URL it does not.
        assert_eq!(refused_field(&TunnelConfig::default()), "broker.url");
    }

    #[test]
    fn proxy_protocol_needs_the_addresses_it_trusts() {
        let mut config = minimal();
        config.proxy_protocol = true;
        assert_eq!(refused_field(&config), "proxy_protocol_trusted");
        config.proxy_protocol_trusted = vec!["10.0.0.0/8".parse().unwrap()];
        config.validate().unwrap();
        config.proxy_protocol = false;
        assert_eq!(refused_field(&config), "proxy_protocol_trusted");
        let parsed = parse(
            "proxy_protocol = true\nproxy_protocol_trusted = [\"10.1.0.0/16\", \"fd00::7\"]\n\
             [broker]\nurl = \"https://b.example\"\n",
        )
        .unwrap();
        parsed.validate().unwrap();
        assert!(parsed.proxy_protocol_trusted[0].contains("10.1.2.3".parse().unwrap()));
        assert!(parsed.proxy_protocol_trusted[1].contains("fd00::7".parse().unwrap()));
        let typo = parse("proxy_protocol_trusted = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(typo.to_string().contains("10.0.0.0/8"), "{typo}");
    }

    #[test]
    fn a_cluster_member_needs_proxy_v2_distinct_ids_and_trusted_peers() {
        let text = "proxy_protocol = true\nproxy_protocol_trusted = [\"10.0.0.0/24\"]\n\
                    [broker]\nurl = \"https://b.example\"\n\
                    [cluster]\nnode_id = 1\n\
                    [[cluster.peers]]\nnode_id = 2\naddress = \"10.0.0.2:7443\"\n";
        let config = parse(text).unwrap();
        config.validate().unwrap();
        let session = |node: u16| {
            let mut bytes = [0u8; 16];
            bytes[..2].copy_from_slice(&node.to_be_bytes());
            SessionId::from_bytes(bytes)
        };
        assert_eq!(
            config.cluster.owner_of(session(2)),
            Some("10.0.0.2:7443".parse().unwrap())
        );
        assert_eq!(config.cluster.owner_of(session(1)), None, "its own");
        assert_eq!(config.cluster.owner_of(session(9)), None, "no such member");

        let mut untrusted = config.clone();
        untrusted.cluster.peers[0].address = "192.0.2.2:7443".parse().unwrap();
        assert_eq!(refused_field(&untrusted), "cluster.peers");
        let mut twice = config.clone();
        twice.cluster.peers[0].node_id = 1;
        assert_eq!(refused_field(&twice), "cluster.peers");
        let mut zero = config.clone();
        zero.cluster.node_id = Some(0);
        assert_eq!(refused_field(&zero), "cluster.node_id");
        let mut no_id = config.clone();
        no_id.cluster.node_id = None;
        assert_eq!(refused_field(&no_id), "cluster.node_id");
        let mut no_proxy = config;
        no_proxy.proxy_protocol = false;
        no_proxy.proxy_protocol_trusted.clear();
        assert_eq!(refused_field(&no_proxy), "cluster.node_id");
    }

    #[test]
    fn the_example_file_sets_every_setting() {
        let config = parse(EXAMPLE).unwrap();
        config.validate().unwrap();
        let defaults = TunnelConfig::default();
        assert_eq!(
            config.listen,
            vec![
                "0.0.0.0:7444".parse().unwrap(),
                "[::]:7444".parse().unwrap()
            ]
        );
        assert_eq!(config.ops_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(config.proxy_protocol);
        assert_eq!(config.proxy_protocol_trusted.len(), 2);
        assert_eq!(config.cluster.node_id, Some(1));
        assert_eq!(config.cluster.peers.len(), 1);
        assert_eq!(
            config.broker,
            BrokerLink {
                url: "https://broker.example.com:8443".into(),
                token_file: Some("/etc/portcullis/tunnel-token".into()),
                ca_file: Some("/etc/portcullis/broker-ca.pem".into()),
            }
        );
        assert_eq!(
            config.tls,
            TunnelTls {
                cert: Some("/etc/portcullis/tls/fullchain.pem".into()),
                key: Some("/etc/portcullis/tls/privkey.pem".into()),
                require_post_quantum: true,
            }
        );
        // Every limit and timeout differs from its default, so the example really sets it
        // (a misspelt key would be refused; a missing one would show here).
        let (limits, default_limits) = (&config.limits, &defaults.limits);
        for (name, value, default) in [
            (
                "max_connections",
                limits.max_connections,
                default_limits.max_connections,
            ),
            (
                "max_connections_per_source",
                limits.max_connections_per_source,
                default_limits.max_connections_per_source,
            ),
            (
                "handshakes_per_second_per_source",
                limits.handshakes_per_second_per_source as usize,
                default_limits.handshakes_per_second_per_source as usize,
            ),
            (
                "max_pending_opens",
                limits.max_pending_opens,
                default_limits.max_pending_opens,
            ),
            (
                "max_pending_opens_per_source",
                limits.max_pending_opens_per_source,
                default_limits.max_pending_opens_per_source,
            ),
            (
                "max_sessions",
                limits.max_sessions,
                default_limits.max_sessions,
            ),
            (
                "max_connections_per_session",
                limits.max_connections_per_session,
                default_limits.max_connections_per_session,
            ),
            (
                "replay_buffer_bytes",
                limits.replay_buffer_bytes,
                default_limits.replay_buffer_bytes,
            ),
            (
                "max_window_bytes",
                limits.max_window_bytes,
                default_limits.max_window_bytes,
            ),
            (
                "window_budget_bytes",
                limits.window_budget_bytes,
                default_limits.window_budget_bytes,
            ),
            (
                "record_size",
                limits.record_size,
                default_limits.record_size,
            ),
        ] {
            assert_ne!(value, default, "limits.{name}");
        }
        let (timeouts, default_timeouts) = (&config.timeouts, &defaults.timeouts);
        for (name, value, default) in [
            (
                "handshake_secs",
                timeouts.handshake_secs,
                default_timeouts.handshake_secs,
            ),
            (
                "broker_call_secs",
                timeouts.broker_call_secs,
                default_timeouts.broker_call_secs,
            ),
            (
                "target_connect_secs",
                timeouts.target_connect_secs,
                default_timeouts.target_connect_secs,
            ),
            ("idle_secs", timeouts.idle_secs, default_timeouts.idle_secs),
            (
                "max_session_secs",
                timeouts.max_session_secs,
                default_timeouts.max_session_secs,
            ),
            (
                "shutdown_grace_secs",
                timeouts.shutdown_grace_secs,
                default_timeouts.shutdown_grace_secs,
            ),
        ] {
            assert_ne!(value, default, "timeouts.{name}");
        }
    }

    #[test]
    fn parse_errors_name_the_file_the_setting_and_the_line() {
        let error = parse("[broker]\nurl = \"https://b\"\n\n[limits]\nrecord_size = \"big\"\n")
            .unwrap_err();
        let ConfigError::Parse { error: at, path } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(at.field.as_deref(), Some("limits.record_size"));
        assert_eq!(at.line, 5);
        assert_eq!(path, Path::new("tunnel.toml"));
        let message = error.to_string();
        assert!(message.starts_with("tunnel.toml, line 5"), "{message}");
        assert!(message.contains("`limits.record_size`"), "{message}");

        // A misspelt setting is refused, not ignored.
        let error = parse("[timeouts]\nidle_sec = 5\n").unwrap_err().to_string();
        assert!(error.contains("idle_sec"), "{error}");
        assert!(error.contains("timeouts"), "{error}");
    }

    #[test]
    fn from_file_names_the_file_in_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let error = TunnelConfig::from_file(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert!(error.to_string().contains("missing.toml"), "{error}");

        let file = dir.path().join("tunnel.toml");
        std::fs::write(&file, "[broker]\nurl = \"http://broker.example.com\"\n").unwrap();
        let error = TunnelConfig::from_file(&file).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}: invalid `broker.url`", file.display())),
            "{message}"
        );

        std::fs::write(&file, "[broker]\nurl = \"https://broker.example.com\"\n").unwrap();
        assert_eq!(TunnelConfig::from_file(&file).unwrap(), minimal());
    }

    #[test]
    fn listen_must_not_be_empty_nor_shared_with_ops() {
        let mut config = minimal();
        config.listen.clear();
        assert_eq!(refused_field(&config), "listen");
        let mut config = minimal();
        config.ops_listen = Some(config.listen[0]);
        assert_eq!(refused_field(&config), "ops_listen");
        // Port 0 (the system picks) is never a clash.
        config.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.ops_listen = Some("127.0.0.1:0".parse().unwrap());
        config.validate().unwrap();
    }

    #[test]
    fn the_broker_url_is_https_or_loopback_http() {
        for good in [
            "https://broker.example.com",
            "https://broker.example.com:8443/",
            "https://10.0.0.1:8443",
            "http://127.0.0.1:8443",
            "http://localhost:8443",
            "http://[::1]:8443",
        ] {
            let mut config = minimal();
            config.broker.url = good.into();
            config
                .validate()
                .unwrap_or_else(|error| panic!("{good}: {error}"));
        }
        for bad in [
            "",
            "broker.example.com",
            "http://broker.example.com",
            "http://10.0.0.1:8443",
            "ftp://broker.example.com",
            "https://user:pass@broker.example.com",
            "https://broker.example.com/uds/rest",
            "https://broker.example.com/?x=1",
        ] {
            let mut config = minimal();
            config.broker.url = bad.into();
            assert_eq!(refused_field(&config), "broker.url", "{bad}");
        }
    }

    type SetLimit = fn(&mut TunnelLimits);
    type SetTimeout = fn(&mut TunnelTimeouts, u64);

    #[test]
    fn every_limit_must_be_positive() {
        let zeroes: [(&str, SetLimit); 10] = [
            ("limits.max_connections", |l| l.max_connections = 0),
            ("limits.max_connections_per_source", |l| {
                l.max_connections_per_source = 0
            }),
            ("limits.handshakes_per_second_per_source", |l| {
                l.handshakes_per_second_per_source = 0
            }),
            ("limits.max_pending_opens", |l| l.max_pending_opens = 0),
            ("limits.max_pending_opens_per_source", |l| {
                l.max_pending_opens_per_source = 0
            }),
            ("limits.max_sessions", |l| l.max_sessions = 0),
            ("limits.max_connections_per_session", |l| {
                l.max_connections_per_session = 0
            }),
            ("limits.replay_buffer_bytes", |l| l.replay_buffer_bytes = 0),
            ("limits.max_window_bytes", |l| l.max_window_bytes = 0),
            ("limits.record_size", |l| l.record_size = 0),
        ];
        for (field, zero) in zeroes {
            let mut config = minimal();
            zero(&mut config.limits);
            assert_eq!(refused_field(&config), field);
        }
    }

    #[test]
    fn record_size_is_at_most_64_kib_and_fits_in_the_replay_buffer() {
        let mut config = minimal();
        config.limits.record_size = 65_536;
        config.validate().unwrap();
        config.limits.record_size = 65_537;
        assert_eq!(refused_field(&config), "limits.record_size");
        let mut config = minimal();
        config.limits.record_size = 1;
        config.limits.replay_buffer_bytes = 1;
        config.validate().unwrap();
        config.limits.record_size = 16_384;
        config.limits.replay_buffer_bytes = 16_383;
        assert_eq!(refused_field(&config), "limits.replay_buffer_bytes");
    }

    #[test]
    fn the_window_cap_is_between_the_initial_window_and_16_mib_and_the_budget_may_be_zero() {
        let mut config = minimal();
        assert_eq!(config.limits.max_window_bytes, 16 * 1024 * 1024);
        assert_eq!(config.limits.window_budget_bytes, 256 * 1024 * 1024);
        config.limits.max_window_bytes = config.limits.replay_buffer_bytes;
        config.limits.window_budget_bytes = 0;
        config.validate().unwrap();
        config.limits.max_window_bytes = config.limits.replay_buffer_bytes - 1;
        assert_eq!(refused_field(&config), "limits.max_window_bytes");
        config.limits.max_window_bytes = 16 * 1024 * 1024 + 1;
        assert_eq!(refused_field(&config), "limits.max_window_bytes");
    }

    #[test]
    fn every_timeout_must_be_positive_and_at_most_a_year() {
        let setters: [(&str, SetTimeout); 6] = [
            ("timeouts.handshake_secs", |t, v| t.handshake_secs = v),
            ("timeouts.broker_call_secs", |t, v| t.broker_call_secs = v),
            ("timeouts.target_connect_secs", |t, v| {
                t.target_connect_secs = v
            }),
            ("timeouts.idle_secs", |t, v| t.idle_secs = v),
            ("timeouts.max_session_secs", |t, v| t.max_session_secs = v),
            ("timeouts.shutdown_grace_secs", |t, v| {
                t.shutdown_grace_secs = v
            }),
        ];
        for (field, set) in setters {
            let mut config = minimal();
            set(&mut config.timeouts, 0);
            assert_eq!(refused_field(&config), field);
            set(&mut config.timeouts, u64::MAX);
            assert_eq!(refused_field(&config), field);
        }
    }

    #[test]
    fn the_server_answers_before_the_client_gives_up() {
        let mut config = minimal();
        config.timeouts.handshake_secs = 9;
        config.timeouts.broker_call_secs = 10;
        config.validate().unwrap();
        config.timeouts.broker_call_secs = 11;
        assert_eq!(refused_field(&config), "timeouts.broker_call_secs");
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("20 s"), "{message}");
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        let mut config = minimal();
        config.tls.cert = Some("cert.pem".into());
        assert_eq!(refused_field(&config), "tls.key");
        config.tls.key = Some("key.pem".into());
        config.validate().unwrap();
        config.tls.cert = None;
        assert_eq!(refused_field(&config), "tls.cert");
        // Requiring post-quantum TLS without TLS would silently protect nothing.
        let mut config = minimal();
        config.tls.require_post_quantum = true;
        assert_eq!(refused_field(&config), "tls.require_post_quantum");
    }

    fn link_to(path: &Path) -> BrokerLink {
        BrokerLink {
            url: "https://broker.example.com".into(),
            token_file: Some(path.to_owned()),
            ca_file: None,
        }
    }

    #[test]
    fn the_token_file_is_trimmed_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  sk-Abc123_secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = read_token_from(&link_to(&file), None).unwrap();
        assert_eq!(token.expose(), "sk-Abc123_secret");
        // The file wins over the environment.
        let token = read_token_from(&link_to(&file), Some("sk-other".into())).unwrap();
        assert_eq!(token.expose(), "sk-Abc123_secret");

        for (content, reason) in [
            ("", "is empty"),
            ("\n\n", "is empty"),
            ("Abc123\n", "does not look"),
            ("sk-\n", "does not look"),
            ("sk-abc def\n", "contains spaces"),
        ] {
            std::fs::write(&file, content).unwrap();
            let error = read_token_from(&link_to(&file), None).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(reason), "{content:?}: {message}");
            if content.contains("abc") {
                assert!(!message.contains("abc"), "{message}");
            }
        }
        std::fs::write(&file, "sk-".repeat(2000)).unwrap();
        assert!(matches!(
            read_token_from(&link_to(&file), None),
            Err(ConfigError::Token { .. })
        ));

        let missing = dir.path().join("missing");
        let error = read_token_from(&link_to(&missing), None).unwrap_err();
        assert!(matches!(error, ConfigError::Read { ref path, .. } if *path == missing));
    }

    #[test]
    fn the_token_comes_from_the_environment_without_a_file() {
        let link = BrokerLink {
            url: "https://broker.example.com".into(),
            ..BrokerLink::default()
        };
        let token = read_token_from(&link, Some(" sk-from-env ".into())).unwrap();
        assert_eq!(token.expose(), "sk-from-env");
        let error = read_token_from(&link, Some("nope".into())).unwrap_err();
        assert!(error.to_string().contains(TOKEN_ENV), "{error}");
        let error = read_token_from(&link, None).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                field: "broker.token_file",
                ..
            }
        ));
        assert!(error.to_string().contains(TOKEN_ENV), "{error}");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = BrokerToken::new("sk-very-secret").unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("sk-"), "{debug}");
    }
}
