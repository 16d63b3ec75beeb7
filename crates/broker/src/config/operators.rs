//! `[admin]`, who may use the admin pages, and `[audit]`, where audit events are exported
//! as they happen.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// `[admin]`: the portal's admin pages.
#[derive(Clone, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Members of any of these groups are administrators: the admin pages under `/admin`
    /// are theirs (OpenID Connect users through the provider's groups claim mapped to one
    /// of them). Default: none, no one (the `portcullis admin` command works regardless).
    pub groups: Vec<String>,
}

/// `[audit]`: the audit log's export.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where every audit event goes as it is committed, one per line: `"jsonl:PATH"`,
    /// `"syslog:udp://HOST:PORT"` or `"syslog:unix:PATH"` (RFC 5424 with structured data).
    /// Default: nowhere (the database keeps the log either way).
    pub export: Option<AuditExport>,
    /// Events waiting for the export at most; beyond, events are dropped from the export
    /// (counted, and the database keeps them). Default 10000.
    pub export_queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            export: None,
            export_queue: 10_000,
        }
    }
}

/// Where the audit log is exported.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AuditExport {
    /// A file of JSON lines, appended to (created 0600).
    Jsonl(PathBuf),
    /// RFC 5424 syslog messages in UDP datagrams (RFC 5426).
    SyslogUdp(SocketAddr),
    /// RFC 5424 syslog messages to a local datagram socket such as `/dev/log`.
    SyslogUnix(PathBuf),
}

impl AuditExport {
    /// Parses `jsonl:PATH`, `syslog:udp://HOST:PORT` (an IP address and port) or
    /// `syslog:unix:PATH`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("jsonl:") {
            if path.is_empty() {
                return Err(
                    "jsonl: needs a file path, as in \"jsonl:/var/log/portcullis/audit.jsonl\""
                        .into(),
                );
            }
            return Ok(Self::Jsonl(PathBuf::from(path)));
        }
        if let Some(address) = text.strip_prefix("syslog:udp://") {
            return address.parse().map(Self::SyslogUdp).map_err(|_| {
                format!(
                    "{address:?} is not an IP address and port, as in \"syslog:udp://127.0.0.1:514\""
                )
            });
        }
        if let Some(path) = text.strip_prefix("syslog:unix:") {
            if path.is_empty() {
                return Err(
                    "syslog:unix: needs a socket path, as in \"syslog:unix:/dev/log\"".into(),
                );
            }
            return Ok(Self::SyslogUnix(PathBuf::from(path)));
        }
        Err(format!(
            "{text:?} is none of \"jsonl:PATH\", \"syslog:udp://HOST:PORT\", \"syslog:unix:PATH\""
        ))
    }
}

impl<'de> Deserialize<'de> for AuditExport {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_targets_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            AuditExport::parse("jsonl:/var/log/a.jsonl"),
            Ok(AuditExport::Jsonl("/var/log/a.jsonl".into()))
        );
        assert_eq!(
            AuditExport::parse("syslog:udp://127.0.0.1:514"),
            Ok(AuditExport::SyslogUdp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            AuditExport::parse("syslog:unix:/dev/log"),
            Ok(AuditExport::SyslogUnix("/dev/log".into()))
        );
        for bad in [
            "",
            "jsonl:",
            "syslog:udp://siem:514",
            "syslog:tcp://1.2.3.4:1",
            "file:/x",
        ] {
            let error = AuditExport::parse(bad).unwrap_err();
            assert!(
                error.contains("as in") || error.contains("none of"),
                "{bad}: {error}"
            );
        }
    }
}
