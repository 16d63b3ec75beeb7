//! Group commit of ticket exchanges.
//!
//! Every successful exchange ends in a small write transaction: consume the client ticket,
//! store a tunnel ticket for a tunneled service, append the audit event. Under load many
//! exchanges reach that point together, and one transaction each makes the database's
//! writer the bottleneck: SQLite has one writer, and sqlx runs each statement on the
//! connection's worker thread, so every statement costs two thread hand-offs.
//!
//! So exchanges queue their writes to writer tasks, and a writer commits everything waiting
//! in one transaction: one consuming `UPDATE` per ticket (each with its own `now`, so
//! validity is decided exactly as one transaction each would decide it), then one
//! multi-row `INSERT` for the tunnel tickets and one for the audit events. The outcome of
//! each exchange is the same as alone; only the number of transactions shrinks. If a
//! batch fails, each of its exchanges is retried in a transaction of its own, so one bad
//! write (a tunnel ticket for the wrong user, a taken id) fails only itself.

use std::sync::Arc;

use sqlx::{AnyConnection, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::audit::{StoredAuditEvent, checked, insert_checked};
use super::{AuditEvent, Backend, NewTunnelTicket, ServiceId, Store, StoreError, UserId, WriteTx};
use crate::tickets::crypto::TicketHash;

/// Most exchanges one transaction commits. Bounds the statement size (11 bound values per
/// tunnel ticket, 7 per audit event) and the latency of the last exchange in a batch.
const MAX_BATCH: usize = 128;

/// Exchanges that may wait for a writer before [`Store::exchange_client_ticket`] itself
/// waits: the queue's memory bound.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Writer tasks per backend. SQLite serializes writers anyway; PostgreSQL commits
/// transactions of several connections in parallel.
fn writers(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

/// The writes of one successful exchange.
struct ExchangeWrite {
    hash: TicketHash,
    now: i64,
    tunnel: Option<NewTunnelTicket>,
    /// Already [`checked`].
    audit: AuditEvent,
}

/// An exchange waiting for a writer, with where its outcome goes.
struct Pending {
    write: ExchangeWrite,
    outcome: oneshot::Sender<Result<bool, StoreError>>,
}

/// The sending side of the writers' queue, held by every [`Store`] handle except the
/// writers' own (so the writers stop when the last handle is dropped).
#[derive(Clone, Debug)]
pub(crate) struct ExchangeQueue {
    sender: mpsc::Sender<Pending>,
}

impl ExchangeQueue {
    /// Starts the writer tasks of `store` on the current Tokio runtime; `None` outside a
    /// runtime (exchanges then commit one transaction each).
    pub(crate) fn start(store: &Store) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let writer_store = Store {
            exchange_queue: None,
            ..store.clone()
        };
        for _ in 0..writers(store.backend) {
            runtime.spawn(run_writer(writer_store.clone(), Arc::clone(&receiver)));
        }
        Some(Self { sender })
    }
}

/// One writer: takes every exchange waiting (up to [`MAX_BATCH`]), commits them, reports
/// each outcome; ends when every [`Store`] handle is gone.
async fn run_writer(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            return;
        }
        let Err(error) = commit_batch(&store, &mut batch).await else {
            continue;
        };
        if batch.len() == 1 {
            if let Some(pending) = batch.pop() {
                let _ = pending.outcome.send(Err(error));
            }
            continue;
        }
        for pending in batch.drain(..) {
            // Checked here as well as in `commit_batch`: while the database is unreachable
            // each retry waits for a connection, and callers give up meanwhile.
            if pending.outcome.is_closed() {
                continue;
            }
            let mut alone = vec![pending];
            if let Err(error) = commit_batch(&store, &mut alone).await
                && let Some(pending) = alone.pop()
            {
                let _ = pending.outcome.send(Err(error));
            }
        }
    }
}

/// Commits the exchanges of `batch` in one transaction and sends each its outcome,
/// emptying `batch`. On an error the transaction is rolled back, nothing is sent, and
/// `batch` keeps the exchanges.
///
/// An exchange whose caller stopped waiting (client gone, request timeout) before the
/// transaction began is dropped unwritten: its ticket stays valid, since nobody would
/// receive the answer it paid for.
async fn commit_batch(store: &Store, batch: &mut Vec<Pending>) -> Result<(), StoreError> {
    let tx = store.begin_write().await?;
    batch.retain(|pending| !pending.outcome.is_closed());
    let writes: Vec<&ExchangeWrite> = batch.iter().map(|pending| &pending.write).collect();
    let outcomes = finish(store, tx, &writes).await?;
    store.metrics.commit_batch_size.observe(batch.len() as f64);
    for (pending, outcome) in batch.drain(..).zip(outcomes) {
        // The caller may have stopped waiting since; the write stands either way.
        let _ = pending.outcome.send(Ok(outcome));
    }
    Ok(())
}

/// Commits one exchange in a transaction of its own, without the queue.
async fn commit_alone(store: &Store, write: &ExchangeWrite) -> Result<bool, StoreError> {
    let tx = store.begin_write().await?;
    let outcomes = finish(store, tx, &[write]).await?;
    Ok(outcomes.first().copied().unwrap_or(false))
}

/// Runs the statements of `writes` in `tx` and commits it, or rolls it back on an error;
/// the outcome of each write, in order. The audit events committed go to the store's sink.
async fn finish(
    store: &Store,
    mut tx: WriteTx,
    writes: &[&ExchangeWrite],
) -> Result<Vec<bool>, StoreError> {
    match apply(tx.conn(), writes, store.audit_sink.is_some()).await {
        Ok((outcomes, stored)) => {
            tx.commit().await?;
            store.exported(stored);
            Ok(outcomes)
        }
        Err(error) => {
            // The statement's error is the one worth reporting; a connection whose
            // rollback failed is rolled back by the pool.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// The statements of one transaction of exchanges; the outcome of each, in order.
async fn apply(
    conn: &mut AnyConnection,
    writes: &[&ExchangeWrite],
    exported: bool,
) -> Result<(Vec<bool>, Vec<StoredAuditEvent>), StoreError> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        // The tunnel ticket's hash links the client ticket to its tunnel session, which
        // the portal follows up to the tunnel server's stop report.
        let consumed = sqlx::query(
            "UPDATE client_tickets SET used_at = $1, tunnel_ticket_hash = $3, credential_box = NULL \
             WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id, service_id",
        )
        .bind(write.now)
        .bind(write.hash.as_bytes().as_slice())
        .bind(
            write
                .tunnel
                .as_ref()
                .map(|tunnel| tunnel.id_hash.as_bytes().to_vec()),
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let (Some(row), Some(tunnel)) = (&consumed, &write.tunnel) {
            let user = UserId(row.try_get("user_id")?);
            let service = ServiceId(row.try_get("service_id")?);
            if tunnel.user_id != user || tunnel.service_id != service {
                return Err(StoreError::Invalid(
                    "the tunnel ticket is for another user or service".to_owned(),
                ));
            }
        }
        outcomes.push(consumed.is_some());
    }
    let done: Vec<&ExchangeWrite> = writes
        .iter()
        .zip(&outcomes)
        .filter_map(|(write, consumed)| consumed.then_some(*write))
        .collect();
    insert_tunnel_tickets(conn, &done).await?;
    let events: Vec<&AuditEvent> = done.iter().map(|write| &write.audit).collect();
    let stored = insert_checked(conn, &events, exported).await?;
    Ok((outcomes, stored))
}

async fn insert_tunnel_tickets(
    conn: &mut AnyConnection,
    done: &[&ExchangeWrite],
) -> Result<(), StoreError> {
    let tunnels: Vec<&NewTunnelTicket> = done
        .iter()
        .filter_map(|write| write.tunnel.as_ref())
        .collect();
    if tunnels.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO tunnel_tickets (id_hash, secret_enc, target_host, target_port, \
         service_id, user_id, tunnel_group, max_session_secs, created_at, expires_at, \
         issued_to_legacy) VALUES {}",
        placeholders(tunnels.len(), 11)
    );
    let mut query = sqlx::query(&sql);
    for tunnel in tunnels {
        query = query
            .bind(tunnel.id_hash.as_bytes().as_slice())
            .bind(tunnel.secret_enc.as_slice())
            .bind(tunnel.target_host.as_str())
            .bind(i64::from(tunnel.target_port))
            .bind(tunnel.service_id.0)
            .bind(tunnel.user_id.0)
            .bind(tunnel.tunnel_group.as_str())
            .bind(i64::from(tunnel.max_session_secs))
            .bind(tunnel.created_at)
            .bind(tunnel.expires_at)
            .bind(i64::from(tunnel.issued_to_legacy));
    }
    query
        .execute(conn)
        .await
        .map_err(|error| super::tickets::insert_error(error, "tunnel_tickets"))?;
    Ok(())
}

/// `($1, …, $columns), ($columns+1, …), …` for `rows` rows.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

impl Store {
    /// Consumes the client ticket, for a tunneled service stores its tunnel ticket, and
    /// appends the `audit` event: one transaction, so all happen or none does.
    ///
    /// The consumption is `UPDATE … SET used_at = now WHERE used_at IS NULL AND
    /// expires_at > now RETURNING …`: of any number of concurrent exchanges (on any number
    /// of brokers) exactly one gets `true`. `false` means the ticket was unknown, used or
    /// expired, and nothing was stored (no tunnel ticket, no audit event). The tunnel
    /// ticket must be for the client ticket's user and service.
    ///
    /// Concurrent calls share transactions (see the module documentation); each outcome
    /// is what its own transaction would have given. If the caller stops waiting before
    /// its transaction begins, nothing is written and the ticket stays valid.
    pub async fn exchange_client_ticket(
        &self,
        hash: &TicketHash,
        now: i64,
        tunnel: Option<NewTunnelTicket>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        if let Some(tunnel) = &tunnel {
            super::tickets::check_validity(tunnel.created_at, tunnel.expires_at)?;
        }
        let write = ExchangeWrite {
            hash: *hash,
            now,
            tunnel,
            audit: checked(audit)?,
        };
        let Some(queue) = &self.exchange_queue else {
            return commit_alone(self, &write).await;
        };
        let (outcome, receiver) = oneshot::channel();
        if let Err(mpsc::error::SendError(pending)) =
            queue.sender.send(Pending { write, outcome }).await
        {
            // The writers are gone with the runtime that started them: commit here.
            return commit_alone(self, &pending.write).await;
        }
        receiver
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }
}

#[cfg(test)]
mod tests;
