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

use super::audit::checked;
use super::{AuditEvent, Backend, NewTunnelTicket, ServiceId, Store, StoreError, UserId};
use crate::tickets::crypto::TicketHash;

/// Most exchanges one transaction commits. Bounds the statement size (11 bound values per
/// tunnel ticket, 6 per audit event) and the latency of the last exchange in a batch.
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
    let mut tx = store.begin_write().await?;
    batch.retain(|pending| !pending.outcome.is_closed());
    let writes: Vec<&ExchangeWrite> = batch.iter().map(|pending| &pending.write).collect();
    let outcomes = match apply(tx.conn(), &writes).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // The statement's error is the one worth reporting; a connection whose
            // rollback failed is rolled back by the pool.
            let _ = tx.rollback().await;
            return Err(error);
        }
    };
    tx.commit().await?;
    for (pending, outcome) in batch.drain(..).zip(outcomes) {
        // The caller may have stopped waiting since; the write stands either way.
        let _ = pending.outcome.send(Ok(outcome));
    }
    Ok(())
}

/// Commits one exchange in a transaction of its own, without the queue.
async fn commit_alone(store: &Store, write: &ExchangeWrite) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    match apply(tx.conn(), &[write]).await {
        Ok(outcomes) => {
            tx.commit().await?;
            Ok(outcomes.first().copied().unwrap_or(false))
        }
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// The statements of one transaction of exchanges; the outcome of each, in order.
async fn apply(
    conn: &mut AnyConnection,
    writes: &[&ExchangeWrite],
) -> Result<Vec<bool>, StoreError> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let consumed = sqlx::query(
            "UPDATE client_tickets SET used_at = $1 \
             WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id, service_id",
        )
        .bind(write.now)
        .bind(write.hash.as_bytes().as_slice())
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
    insert_audit_events(conn, &done).await?;
    Ok(outcomes)
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

async fn insert_audit_events(
    conn: &mut AnyConnection,
    done: &[&ExchangeWrite],
) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO audit_events (at, kind, username, service, source_ip, detail) VALUES {}",
        placeholders(done.len(), 6)
    );
    let mut query = sqlx::query(&sql);
    for write in done {
        let event = &write.audit;
        query = query
            .bind(event.at)
            .bind(event.kind.as_str())
            .bind(event.username.as_deref())
            .bind(event.service.as_deref())
            .bind(event.source_ip.as_deref())
            .bind(event.detail.as_str());
    }
    query.execute(conn).await?;
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
mod tests {
    use portcullis_proto::TicketId;

    use super::*;
    use crate::store::{NewClientTicket, NewService, Protocol, Readiness, Transport};
    use crate::tickets::crypto::ticket_hash;

    const T0: i64 = 1_700_000_000_000;
    const TTL: i64 = 60_000;
    /// A well-formed Argon2id hash (of no password anyone uses).
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(1, 2), "($1, $2)");
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    /// An in-memory store with users alice and bob, service desk (alice's group only) and
    /// the ids of alice and desk.
    async fn store() -> (Store, UserId, ServiceId) {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let alice = store.add_user("alice", HASH, T0).await.unwrap();
        store.add_user("bob", HASH, T0).await.unwrap();
        store.add_group("staff").await.unwrap();
        store.add_member("staff", "alice").await.unwrap();
        let desk = store
            .add_service(
                NewService {
                    name: "desk".to_owned(),
                    host: "10.0.0.7".to_owned(),
                    port: 22,
                    protocol: Protocol::Ssh,
                    transport: Transport::Tunneled,
                    tunnel_group: Some("dc1".to_owned()),
                    max_session_secs: 3600,
                    readiness: Readiness::Tcp,
                    allowed_groups: vec!["staff".to_owned()],
                },
                T0,
            )
            .await
            .unwrap();
        (store, alice, desk)
    }

    async fn client_ticket(store: &Store, user: UserId, service: ServiceId) -> TicketHash {
        let hash = ticket_hash(&TicketId::generate().unwrap());
        store
            .insert_client_ticket(NewClientTicket {
                id_hash: hash,
                status_id: portcullis_proto::hex::encode(&hash.as_bytes()[..8]),
                user_id: user,
                service_id: service,
                scrambler: "scrambler".to_owned(),
                client_os: None,
                created_at: T0,
                expires_at: T0 + TTL,
            })
            .await
            .unwrap();
        hash
    }

    fn tunnel(user: UserId, service: ServiceId) -> NewTunnelTicket {
        NewTunnelTicket {
            id_hash: ticket_hash(&TicketId::generate().unwrap()),
            secret_enc: vec![0; 60],
            target_host: "10.0.0.7".to_owned(),
            target_port: 22,
            service_id: service,
            user_id: user,
            tunnel_group: "dc1".to_owned(),
            max_session_secs: 3600,
            created_at: T0,
            expires_at: T0 + TTL,
            issued_to_legacy: false,
        }
    }

    fn write(hash: TicketHash, now: i64, tunnel: Option<NewTunnelTicket>) -> ExchangeWrite {
        ExchangeWrite {
            hash,
            now,
            tunnel,
            audit: AuditEvent {
                at: now,
                kind: "ticket.exchanged".to_owned(),
                username: Some("alice".to_owned()),
                service: Some("desk".to_owned()),
                source_ip: None,
                detail: "{}".to_owned(),
            },
        }
    }

    /// Runs one writer over `writes`, all queued before it starts (so they meet in one
    /// batch); returns each outcome, `None` for an exchange whose caller is gone.
    async fn run_batch(
        store: &Store,
        writes: Vec<(ExchangeWrite, bool)>,
    ) -> Vec<Option<Result<bool, StoreError>>> {
        let (sender, receiver) = mpsc::channel(writes.len());
        let mut receivers = Vec::new();
        for (write, caller_waits) in writes {
            let (outcome, receiver) = oneshot::channel();
            sender.try_send(Pending { write, outcome }).unwrap();
            receivers.push(caller_waits.then_some(receiver));
        }
        drop(sender);
        let writer_store = Store {
            exchange_queue: None,
            ..store.clone()
        };
        run_writer(writer_store, Arc::new(Mutex::new(receiver))).await;
        let mut outcomes = Vec::new();
        for receiver in receivers {
            outcomes.push(match receiver {
                Some(receiver) => Some(receiver.await.unwrap()),
                None => None,
            });
        }
        outcomes
    }

    async fn exchanged_events(store: &Store) -> usize {
        let events = store.audit_tail(1_000).await.unwrap();
        events
            .iter()
            .filter(|event| event.event.kind == "ticket.exchanged")
            .count()
    }

    #[tokio::test]
    async fn one_batch_gives_each_exchange_its_own_outcome() {
        let (store, alice, desk) = store().await;
        let first = client_ticket(&store, alice, desk).await;
        let second = client_ticket(&store, alice, desk).await;
        let first_tunnel = tunnel(alice, desk);
        let first_tunnel_hash = first_tunnel.id_hash;
        let outcomes = run_batch(
            &store,
            vec![
                (write(first, T0 + 1, Some(first_tunnel)), true),
                // The same ticket again in the same transaction: already used.
                (write(first, T0 + 2, Some(tunnel(alice, desk))), true),
                (write(second, T0 + 3, None), true),
                // Unknown, and expired.
                (
                    write(ticket_hash(&TicketId::generate().unwrap()), T0, None),
                    true,
                ),
                (
                    write(client_ticket(&store, alice, desk).await, T0 + TTL, None),
                    true,
                ),
            ],
        )
        .await;
        let outcomes: Vec<bool> = outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap().unwrap())
            .collect();
        assert_eq!(outcomes, [true, false, true, false, false]);
        assert_eq!(exchanged_events(&store).await, 2);
        assert!(
            store
                .tunnel_ticket_for_redemption(&first_tunnel_hash, T0 + 1)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_bad_write_fails_alone() {
        let (store, alice, desk) = store().await;
        let bob = store.user_by_name("bob").await.unwrap().unwrap().id;
        let good = client_ticket(&store, alice, desk).await;
        let misdirected = client_ticket(&store, alice, desk).await;
        let other = client_ticket(&store, alice, desk).await;
        let outcomes = run_batch(
            &store,
            vec![
                (write(good, T0 + 1, Some(tunnel(alice, desk))), true),
                // A tunnel ticket for another user: refused, and it rolls back the batch.
                (write(misdirected, T0 + 1, Some(tunnel(bob, desk))), true),
                (write(other, T0 + 1, None), true),
            ],
        )
        .await;
        assert!(matches!(outcomes[0], Some(Ok(true))));
        assert!(matches!(outcomes[1], Some(Err(StoreError::Invalid(_)))));
        assert!(matches!(outcomes[2], Some(Ok(true))));
        assert_eq!(exchanged_events(&store).await, 2);
        assert!(
            store
                .exchange_context(&misdirected, T0 + 2)
                .await
                .unwrap()
                .is_some(),
            "the refused exchange left its client ticket valid"
        );
    }

    #[tokio::test]
    async fn an_abandoned_exchange_keeps_its_ticket() {
        let (store, alice, desk) = store().await;
        let abandoned = client_ticket(&store, alice, desk).await;
        let awaited = client_ticket(&store, alice, desk).await;
        let outcomes = run_batch(
            &store,
            vec![
                (write(abandoned, T0 + 1, None), false),
                (write(awaited, T0 + 1, None), true),
            ],
        )
        .await;
        assert!(matches!(outcomes[1], Some(Ok(true))));
        assert_eq!(exchanged_events(&store).await, 1);
        assert!(
            store
                .exchange_context(&abandoned, T0 + 2)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn without_writers_an_exchange_commits_alone() {
        let (store, alice, desk) = store().await;
        let hash = client_ticket(&store, alice, desk).await;
        let direct = Store {
            exchange_queue: None,
            ..store.clone()
        };
        let event = write(hash, T0 + 1, None).audit;
        assert!(
            direct
                .exchange_client_ticket(&hash, T0 + 1, None, event.clone())
                .await
                .unwrap()
        );
        assert!(
            !direct
                .exchange_client_ticket(&hash, T0 + 2, None, event)
                .await
                .unwrap()
        );
    }
}
