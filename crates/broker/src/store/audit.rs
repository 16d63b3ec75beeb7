//! The audit log: append-only events, read as a tail, followed by id, or a page at a time
//! with filters; every event written is also handed to the [`AuditSink`], if any (the
//! broker's audit export).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::mpsc;

use super::{Store, StoreError};

/// Every audit event name, in a stable order (docs/broker.md, "Audit events"). A name is
/// never renamed or reused for something else; new ones are added.
pub const AUDIT_KINDS: &[&str] = &[
    "login",
    "login.failed",
    "login.oidc",
    "login.oidc_refused",
    "ticket.issued",
    "ticket.exchanged",
    "tunnel.started",
    "tunnel.bad_proof",
    "tunnel.stopped",
    "tunnel.unreported",
    "admin.user.added",
    "admin.user.disabled",
    "admin.user.enabled",
    "admin.user.removed",
    "admin.user.password_set",
    "admin.user.groups_set",
    "admin.group.added",
    "admin.group.removed",
    "admin.group.member_added",
    "admin.group.member_removed",
    "admin.service.added",
    "admin.service.changed",
    "admin.service.removed",
    "admin.service.credentials",
    "admin.credential_key.rotated",
    "admin.tunnel_server.added",
    "admin.tunnel_server.token_rotated",
    "admin.tunnel_server.removed",
    "admin.connection.ended",
];

/// One audit event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct AuditEvent {
    /// When, Unix milliseconds.
    pub at: i64,
    /// What happened, e.g. `"login"`, `"ticket.exchanged"`, `"tunnel.stopped"`,
    /// `"tunnel.unreported"` (docs/broker.md lists every kind).
    pub kind: String,
    /// The user concerned, if any.
    pub username: Option<String>,
    /// The service concerned, if any.
    pub service: Option<String>,
    /// The client's address, if any.
    pub source_ip: Option<String>,
    /// The administrator who did it (a portal user's name, `cli:<system user>` for
    /// `portcullis admin`); `None` for what users, launchers and servers do.
    pub actor: Option<String>,
    /// Further facts as the text of a JSON object (byte counts, durations, reasons), e.g.
    /// `json!({"sent": 10}).to_string()`; `""` stands for `{}`. Never secrets.
    pub detail: String,
}

/// An audit event read back, with its id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct StoredAuditEvent {
    /// Increasing id; pass the last one seen to [`Store::audit_after`] to follow the log.
    pub id: i64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

const AUDIT_COLUMNS: &str = "id, at, kind, username, service, source_ip, actor, detail";

/// Where written events go as they are committed: a bounded queue, so that a slow export
/// never holds a database transaction. An event that does not fit is dropped and counted
/// (the database keeps it; `portcullis admin audit export --since` reads it again).
#[derive(Clone, Debug)]
pub struct AuditSink {
    sender: mpsc::Sender<StoredAuditEvent>,
    dropped: prometheus_client::metrics::counter::Counter,
    /// Set by the writer while it writes an event it took from the queue.
    writing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AuditSink {
    /// A sink of `capacity` events and the receiving end; `dropped` counts what did not fit.
    pub fn new(
        capacity: usize,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> (Self, mpsc::Receiver<StoredAuditEvent>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let writing = std::sync::Arc::default();
        (
            Self {
                sender,
                dropped,
                writing,
            },
            receiver,
        )
    }

    /// Whether no event waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.sender.capacity() == self.sender.max_capacity()
    }

    /// Whether the writer is writing an event now.
    pub fn writing(&self) -> bool {
        self.writing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag the writer sets while it writes.
    pub fn writing_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        std::sync::Arc::clone(&self.writing)
    }

    fn send(&self, events: Vec<StoredAuditEvent>) {
        for event in events {
            if self.sender.try_send(event).is_err() {
                self.dropped.inc();
            }
        }
    }
}

fn audit_from_row(row: &AnyRow) -> Result<StoredAuditEvent, StoreError> {
    Ok(StoredAuditEvent {
        id: row.try_get("id")?,
        event: AuditEvent {
            at: row.try_get("at")?,
            kind: row.try_get("kind")?,
            username: row.try_get("username")?,
            service: row.try_get("service")?,
            source_ip: row.try_get("source_ip")?,
            actor: row.try_get("actor")?,
            detail: row.try_get("detail")?,
        },
    })
}

fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

/// Checks an event before it is stored, with `""` detail normalized to `{}`.
pub(crate) fn checked(mut event: AuditEvent) -> Result<AuditEvent, StoreError> {
    if event.kind.is_empty() {
        return Err(StoreError::Invalid(
            "audit kind must not be empty".to_owned(),
        ));
    }
    if event.detail.is_empty() {
        "{}".clone_into(&mut event.detail);
    }
    // Names and addresses come from outside (a failed login's user name): stored with
    // control characters escaped, so that no terminal or log viewer interprets them.
    for text in [
        Some(&mut event.kind),
        event.username.as_mut(),
        event.service.as_mut(),
        event.source_ip.as_mut(),
        event.actor.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if text.chars().any(|c| c.is_control() || c == '\\') {
            *text = escape_controls(text);
        }
    }
    let is_object = serde_json::from_str::<serde_json::Value>(&event.detail)
        .is_ok_and(|value| value.is_object());
    if !is_object {
        return Err(StoreError::Invalid(
            "audit detail must be a JSON object".to_owned(),
        ));
    }
    Ok(event)
}

/// `text` with every control character as `\u{…}` (and `\` as `\\`, so that the
/// escaping is unambiguous).
pub(crate) fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Inserts events on `conn` in one statement, each [`checked`] first. With `stored`, the
/// rows as stored come back (ids included), for an [`AuditSink`].
pub(super) async fn insert_audit_events(
    conn: &mut AnyConnection,
    events: Vec<AuditEvent>,
    stored: bool,
) -> Result<Vec<StoredAuditEvent>, StoreError> {
    let events = events
        .into_iter()
        .map(checked)
        .collect::<Result<Vec<_>, _>>()?;
    let events: Vec<&AuditEvent> = events.iter().collect();
    insert_checked(conn, &events, stored).await
}

/// Inserts events already [`checked`] on `conn` in one statement (`$1`… placeholders, seven
/// per event: at most 4,000 events, within both backends' parameter limits). With
/// `stored`, the rows as stored come back, oldest first.
pub(super) async fn insert_checked(
    conn: &mut AnyConnection,
    events: &[&AuditEvent],
    stored: bool,
) -> Result<Vec<StoredAuditEvent>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    if events.len() > 4_000 {
        return Err(StoreError::Invalid(
            "at most 4,000 audit events in one statement".to_owned(),
        ));
    }
    // Placeholders written by hand: `sqlx::QueryBuilder` on the Any driver emits `?`,
    // which PostgreSQL does not accept; `$N` works on both backends.
    let mut sql = String::from(
        "INSERT INTO audit_events (at, kind, username, service, source_ip, actor, detail) \
         VALUES ",
    );
    for row in 0..events.len() {
        let first = row * 7;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 1..=7 {
            if column > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", first + column));
        }
        sql.push(')');
    }
    if stored {
        sql.push_str(&format!(" RETURNING {AUDIT_COLUMNS}"));
    }
    let mut query = sqlx::query(&sql);
    for event in events {
        query = query
            .bind(event.at)
            .bind(event.kind.as_str())
            .bind(event.username.as_deref())
            .bind(event.service.as_deref())
            .bind(event.source_ip.as_deref())
            .bind(event.actor.as_deref())
            .bind(event.detail.as_str());
    }
    if !stored {
        query.execute(conn).await?;
        return Ok(Vec::new());
    }
    let rows = query.fetch_all(conn).await?;
    let mut events = rows
        .iter()
        .map(audit_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    events.sort_by_key(|event| event.id);
    Ok(events)
}

/// What the admin audit page filters by; `None` matches anything.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AuditFilter {
    /// The user concerned (exactly).
    pub username: Option<String>,
    /// The service concerned (exactly).
    pub service: Option<String>,
    /// The event name (exactly).
    pub kind: Option<String>,
    /// The administrator who did it (exactly).
    pub actor: Option<String>,
    /// At or after, Unix milliseconds.
    pub from: Option<i64>,
    /// Before, Unix milliseconds.
    pub to: Option<i64>,
}

impl Store {
    /// Appends an event; returns its id.
    pub async fn audit(&self, event: AuditEvent) -> Result<i64, StoreError> {
        let mut writer = self.writer().await?;
        let stored = insert_audit_events(writer.conn(), vec![event], true).await?;
        drop(writer);
        let id = stored.first().map_or(0, |event| event.id);
        self.exported(stored);
        Ok(id)
    }

    /// Appends events in the transaction `conn` belongs to; hand what comes back to
    /// [`Store::exported`] once the transaction committed.
    pub(super) async fn audit_in(
        &self,
        conn: &mut AnyConnection,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        insert_audit_events(conn, events, self.audit_sink.is_some()).await
    }

    /// Hands committed events to the audit sink, if there is one.
    pub(super) fn exported(&self, events: Vec<StoredAuditEvent>) {
        if let Some(sink) = &self.audit_sink {
            sink.send(events);
        }
    }

    /// A page of events matching `filter`, newest first: at most `count` events with an id
    /// below `before` (all when `None`).
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        count: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events \
             WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR service = $2) \
             AND ($3 IS NULL OR kind = $3) AND ($4 IS NULL OR actor = $4) \
             AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6) \
             AND ($7 IS NULL OR id < $7) \
             ORDER BY id DESC LIMIT $8"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.username.as_deref())
            .bind(filter.service.as_deref())
            .bind(filter.kind.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.from)
            .bind(filter.to)
            .bind(before)
            .bind(limit(count))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Up to `count` events at or after `since` (Unix milliseconds) with an id above
    /// `after`, oldest first: `portcullis admin audit export`.
    pub async fn audit_since(
        &self,
        since: i64,
        after: i64,
        count: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE at >= $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(after)
            .bind(limit(count))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// The last `count` events, oldest first (newest last).
    pub async fn audit_tail(&self, count: u32) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&sql)
            .bind(limit(count))
            .fetch_all(self.pool())
            .await?;
        let mut events = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        Ok(events)
    }

    /// Up to `count` events with an id above `after`, oldest first.
    ///
    /// On PostgreSQL with several brokers, ids are handed out before commit, so an event
    /// can appear after a later id was already read: followers should re-read a short
    /// window rather than trust the last id blindly.
    pub async fn audit_after(
        &self,
        after: i64,
        count: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit(count))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
