//! The audit log: append-only events, read as a tail or followed by id.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError};

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

const AUDIT_COLUMNS: &str = "id, at, kind, username, service, source_ip, detail";

fn audit_from_row(row: &AnyRow) -> Result<StoredAuditEvent, StoreError> {
    Ok(StoredAuditEvent {
        id: row.try_get("id")?,
        event: AuditEvent {
            at: row.try_get("at")?,
            kind: row.try_get("kind")?,
            username: row.try_get("username")?,
            service: row.try_get("service")?,
            source_ip: row.try_get("source_ip")?,
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

/// Inserts an event [`checked`] before, on `conn`; returns its id.
async fn insert_audit(conn: &mut AnyConnection, event: AuditEvent) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO audit_events (at, kind, username, service, source_ip, detail) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(event.at)
    .bind(event.kind)
    .bind(event.username)
    .bind(event.service)
    .bind(event.source_ip)
    .bind(event.detail)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("id")?)
}

/// Inserts events on `conn` in one statement, each [`checked`] first (`$1`… placeholders,
/// six per event: at most 5,000 events, within both backends' parameter limits).
pub(super) async fn insert_audit_events(
    conn: &mut AnyConnection,
    events: Vec<AuditEvent>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    if events.len() > 5_000 {
        return Err(StoreError::Invalid(
            "at most 5,000 audit events in one statement".to_owned(),
        ));
    }
    // Placeholders written by hand: `sqlx::QueryBuilder` on the Any driver emits `?`,
    // which PostgreSQL does not accept; `$N` works on both backends.
    let mut sql = String::from(
        "INSERT INTO audit_events (at, kind, username, service, source_ip, detail) VALUES ",
    );
    for row in 0..events.len() {
        let first = row * 6;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 6
        ));
    }
    let mut query = sqlx::query(&sql);
    for event in events {
        let event = checked(event)?;
        query = query
            .bind(event.at)
            .bind(event.kind)
            .bind(event.username)
            .bind(event.service)
            .bind(event.source_ip)
            .bind(event.detail);
    }
    query.execute(conn).await?;
    Ok(())
}

impl Store {
    /// Appends an event; returns its id.
    pub async fn audit(&self, event: AuditEvent) -> Result<i64, StoreError> {
        let event = checked(event)?;
        let mut writer = self.writer().await?;
        insert_audit(writer.conn(), event).await
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
