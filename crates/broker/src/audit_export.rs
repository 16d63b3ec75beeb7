//! The audit log's export (`[audit] export`, docs/broker.md "Audit export"): every event,
//! as it is committed, one per line to a JSON-lines file, or as an RFC 5424 syslog message
//! with structured data to a syslog server over UDP or a local datagram socket.
//!
//! The store hands committed events to an [`AuditSink`], a bounded queue; one task here
//! writes them. A slow or absent destination never holds a database transaction: events
//! that do not fit the queue are dropped from the export and counted (the database keeps
//! them, and `portcullis admin audit export --since` reads them again). Write failures are
//! counted and logged at most every 10 s; the file or socket is opened again for the next
//! event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{UdpSocket, UnixDatagram};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::rfc3339;
use crate::config::{AuditConfig, AuditExport};
use crate::metrics::ExportMetrics;
use crate::store::{AuditSink, StoredAuditEvent};

/// The schema name every exported line carries; a new version only for changes that are
/// not additions.
pub const SCHEMA: &str = "portcullis.audit.v1";
/// The structured-data id of the syslog messages: `portcullis` under the documentation
/// enterprise number of RFC 5612 (Portcullis has no number of its own).
pub const SD_ID: &str = "portcullis@32473";
/// The longest line exported; an event that would be longer (a detail that large) is
/// exported with `"detail": {"truncated": true}`.
const MAX_LINE: usize = 16 * 1024;
/// At most one warning this often about failed writes.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The exported form of an event (docs/broker.md lists the fields), in this order.
#[derive(Serialize)]
struct Exported<'a> {
    schema: &'static str,
    id: i64,
    time: String,
    at_ms: i64,
    event: &'a str,
    user: Option<&'a str>,
    service: Option<&'a str>,
    source_ip: Option<&'a str>,
    actor: Option<&'a str>,
    broker: &'a str,
    detail: Value,
}

/// One line of the `jsonl` export (without its newline): the event as one JSON object.
pub fn jsonl_line(event: &StoredAuditEvent, host: &str) -> String {
    let audit = &event.event;
    let mut exported = Exported {
        schema: SCHEMA,
        id: event.id,
        time: rfc3339(audit.at),
        at_ms: audit.at,
        event: &audit.kind,
        user: audit.username.as_deref(),
        service: audit.service.as_deref(),
        source_ip: audit.source_ip.as_deref(),
        actor: audit.actor.as_deref(),
        broker: host,
        detail: serde_json::from_str(&audit.detail).unwrap_or_else(|_| json!({})),
    };
    let line = serde_json::to_string(&exported).unwrap_or_default();
    if line.len() <= MAX_LINE {
        return line;
    }
    exported.detail = json!({ "truncated": true });
    serde_json::to_string(&exported).unwrap_or_default()
}

/// The syslog severity of an event: warning for refusals and failures, notice for sign-ins
/// and administrators' actions, informational for the rest.
fn severity(kind: &str) -> u8 {
    match kind {
        "login.failed" | "login.oidc_refused" | "tunnel.bad_proof" | "tunnel.unreported" => 4,
        kind if kind.starts_with("admin.") || kind.starts_with("login") => 5,
        _ => 6,
    }
}

/// An RFC 5424 structured-data parameter value: `"`, `\` and `]` escaped.
fn sd_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 5424 header field: printable US-ASCII without spaces, at most `max` characters,
/// `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// The event as an RFC 5424 message (facility authpriv): `<PRI>1 TIME HOST portcullis PID
/// audit [portcullis@32473 event=… id=… user=… service=… source_ip=… actor=…] JSON`.
pub fn rfc5424_line(event: &StoredAuditEvent, host: &str, pid: u32) -> String {
    let audit = &event.event;
    let pri = 10 * 8 + u32::from(severity(&audit.kind));
    let mut sd = format!(
        "[{SD_ID} event=\"{}\" id=\"{}\"",
        sd_value(&audit.kind),
        event.id
    );
    for (name, value) in [
        ("user", &audit.username),
        ("service", &audit.service),
        ("source_ip", &audit.source_ip),
        ("actor", &audit.actor),
    ] {
        if let Some(value) = value {
            sd.push_str(&format!(" {name}=\"{}\"", sd_value(value)));
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} portcullis {pid} audit {sd} {}",
        rfc3339(audit.at),
        header_field(host, 255),
        jsonl_line(event, host)
    )
}

/// This machine's name, for the exported events (`-` when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// A running export: give [`RunningExport::sink`] to the store; [`RunningExport::finish`]
/// writes what is queued and returns.
#[derive(Debug)]
pub struct RunningExport {
    sink: AuditSink,
    task: JoinHandle<()>,
}

impl RunningExport {
    /// What the store hands events to.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// Waits (at most `limit`) until every event queued so far was written.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.sink.is_empty() || self.sink.writing() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("the audit export did not finish writing in time");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drains (at most `limit`) and stops the writer.
    pub async fn finish(self, limit: Duration) {
        self.drain(limit).await;
        self.task.abort();
    }
}

/// Starts the export `config` asks for, if any, on the current runtime.
pub fn start(config: &AuditConfig, metrics: &ExportMetrics) -> Option<RunningExport> {
    let export = config.export.clone()?;
    let (sink, events) = AuditSink::new(config.export_queue, metrics.dropped.clone());
    let task = tokio::spawn(run(
        export,
        events,
        sink.writing_flag(),
        metrics.clone(),
        host_name(),
    ));
    Some(RunningExport { sink, task })
}

/// Where lines go, opened on demand.
enum Destination {
    File {
        path: PathBuf,
        file: Option<tokio::fs::File>,
    },
    Udp {
        target: std::net::SocketAddr,
        socket: Option<UdpSocket>,
    },
    Unix {
        path: PathBuf,
        socket: Option<UnixDatagram>,
    },
}

impl Destination {
    fn new(export: AuditExport) -> Self {
        match export {
            AuditExport::Jsonl(path) => Self::File { path, file: None },
            AuditExport::SyslogUdp(target) => Self::Udp {
                target,
                socket: None,
            },
            AuditExport::SyslogUnix(path) => Self::Unix { path, socket: None },
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => format!("jsonl:{}", path.display()),
            Self::Udp { target, .. } => format!("syslog:udp://{target}"),
            Self::Unix { path, .. } => format!("syslog:unix:{}", path.display()),
        }
    }

    /// Writes one event; on a failure the file or socket is dropped, to be opened again.
    async fn write(
        &mut self,
        event: &StoredAuditEvent,
        host: &str,
        pid: u32,
    ) -> std::io::Result<()> {
        let result = match self {
            Self::File { path, file } => {
                if file.is_none() {
                    *file = Some(open_private_append(path).await?);
                }
                let mut line = jsonl_line(event, host);
                line.push('\n');
                match file.as_mut() {
                    Some(file) => file.write_all(line.as_bytes()).await,
                    None => Ok(()),
                }
            }
            Self::Udp { target, socket } => {
                if socket.is_none() {
                    let local = if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    *socket = Some(UdpSocket::bind(local).await?);
                }
                let line = rfc5424_line(event, host, pid);
                match socket.as_ref() {
                    Some(socket) => socket.send_to(line.as_bytes(), *target).await.map(drop),
                    None => Ok(()),
                }
            }
            Self::Unix { path, socket } => {
                if socket.is_none() {
                    *socket = Some(UnixDatagram::unbound()?);
                }
                let line = rfc5424_line(event, host, pid);
                match socket.as_ref() {
                    Some(socket) => socket.send_to(line.as_bytes(), &*path).await.map(drop),
                    None => Ok(()),
                }
            }
        };
        if result.is_err() {
            match self {
                Self::File { file, .. } => *file = None,
                Self::Udp { socket, .. } => *socket = None,
                Self::Unix { socket, .. } => *socket = None,
            }
        }
        result
    }
}

/// Opens `path` for appending, creating it mode 0600.
async fn open_private_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// Writes every event that arrives until every sink is gone.
async fn run(
    export: AuditExport,
    mut events: mpsc::Receiver<StoredAuditEvent>,
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    metrics: ExportMetrics,
    host: String,
) {
    let mut destination = Destination::new(export);
    let pid = std::process::id();
    let mut last_warning: Option<Instant> = None;
    let mut failed_since = 0u64;
    tracing::info!(export = %destination.describe(), "exporting the audit log");
    while let Some(event) = events.recv().await {
        writing.store(true, std::sync::atomic::Ordering::SeqCst);
        let written = destination.write(&event, &host, pid).await;
        writing.store(false, std::sync::atomic::Ordering::SeqCst);
        match written {
            Ok(()) => {
                metrics.exported.inc();
            }
            Err(error) => {
                metrics.failed.inc();
                failed_since += 1;
                if last_warning.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
                    tracing::warn!(
                        export = %destination.describe(),
                        %error,
                        failed = failed_since,
                        "audit events not exported (the database keeps them: portcullis admin audit export --since)"
                    );
                    last_warning = Some(Instant::now());
                    failed_since = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditEvent;

    fn event(kind: &str, user: Option<&str>) -> StoredAuditEvent {
        StoredAuditEvent {
            id: 812,
            event: AuditEvent {
                at: 1_709_210_096_789,
                kind: kind.to_owned(),
                username: user.map(str::to_owned),
                service: Some("Finance desktop".to_owned()),
                source_ip: Some("198.51.100.20".to_owned()),
                actor: None,
                detail: r#"{"sent":10}"#.to_owned(),
            },
        }
    }

    #[test]
    fn a_jsonl_line_has_the_documented_fields() {
        let line = jsonl_line(&event("tunnel.stopped", Some("alice")), "broker-1");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({
                "schema": "portcullis.audit.v1", "id": 812, "time": "2024-02-29T12:34:56.789Z",
                "at_ms": 1_709_210_096_789_i64, "event": "tunnel.stopped", "user": "alice",
                "service": "Finance desktop", "source_ip": "198.51.100.20", "actor": null,
                "broker": "broker-1", "detail": { "sent": 10 },
            })
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn an_rfc_5424_message_escapes_its_structured_data() {
        let line = rfc5424_line(&event("login.failed", Some("a\"b]c\\d")), "broker-1", 42);
        assert!(
            line.starts_with(
                "<84>1 2024-02-29T12:34:56.789Z broker-1 portcullis 42 audit \
                 [portcullis@32473 event=\"login.failed\" id=\"812\" user=\"a\\\"b\\]c\\\\d\" \
                 service=\"Finance desktop\" source_ip=\"198.51.100.20\"] \
                 {\"schema\":\"portcullis.audit.v1\",\"id\":812,"
            ),
            "{line}"
        );
        assert!(rfc5424_line(&event("admin.user.added", None), "h", 1).starts_with("<85>1 "));
        assert!(rfc5424_line(&event("ticket.issued", None), "h", 1).starts_with("<86>1 "));
        assert!(rfc5424_line(&event("login", None), "two words", 1).contains(" twowords "));
    }

    #[test]
    fn a_huge_detail_is_truncated() {
        let mut big = event("login", None);
        big.event.detail = json!({ "x": "y".repeat(MAX_LINE) }).to_string();
        let line = jsonl_line(&big, "h");
        assert!(line.len() < 1024, "{}", line.len());
        assert!(line.contains("\"truncated\":true"));
    }
}
