//! Group commit: one batch, each exchange's own outcome; failures and abandoned callers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_proto::TicketId;

use super::*;
use crate::store::{NewClientTicket, NewService, Protocol, Readiness, Transport};
use crate::tickets::crypto::ticket_hash;

const T0: i64 = 1_700_000_000_000;
const TTL: i64 = 60_000;
/// A well-formed Argon2id hash (of no password anyone uses).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

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
            credential: None,
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
            actor: None,
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
