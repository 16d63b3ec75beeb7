//! Tickets on SQLite and on a real PostgreSQL server: client tickets consumed only by a
//! successful exchange (also when many exchanges commit together), tunnel tickets redeemed
//! exactly once (also under 64 concurrent attempts), failed proofs, notify tickets, the
//! sweeper, and what a dump reveals.

use std::sync::Arc;

use crate::support::fixtures::{
    CLIENT_TTL, PASSWORD_HASH, T0, alice_and_desk, client_ticket, direct_service, exchanged,
    tunnel_ticket,
};
use crate::support::{TestDb, both_backends};
use portcullis_broker::store::{
    ConnectionState, ExchangeService, NewNotifyTicket, STOPPED_SESSION_KEEP_MS, Store, StoreError,
    SweepCounts, TokenHash, TunnelServerId, USED_TUNNEL_TICKET_KEEP_MS, UserId,
};
use portcullis_broker::tickets::crypto::{TicketHash, ticket_hash};
use portcullis_proto::TicketId;
use sqlx::Row;
use tokio::sync::Barrier;

/// How many tasks race for one ticket.
const RACERS: usize = 64;
/// A tunnel ticket's lifetime in these tests.
const TUNNEL_TTL: i64 = 30_000;

fn notify(tunnel_server: i64) -> (TicketId, NewNotifyTicket) {
    let id = TicketId::generate().unwrap();
    let new = NewNotifyTicket {
        id_hash: ticket_hash(&id),
        tunnel_server_id: TunnelServerId(tunnel_server),
    };
    (id, new)
}

/// A tunnel ticket stored through a won exchange; returns its id and hash.
async fn stored_tunnel_ticket(store: &Store, now: i64) -> (TicketId, TicketHash) {
    let (user, service) = match store.user_by_name("alice").await.unwrap() {
        Some(user) => (
            user.id,
            store.service_by_name("desk").await.unwrap().unwrap().id,
        ),
        None => alice_and_desk(store).await,
    };
    let (_, client) = client_ticket(user, service, now);
    let client_hash = client.id_hash;
    store.insert_client_ticket(client).await.unwrap();
    let (id, _, tunnel) = tunnel_ticket(user, service, now, TUNNEL_TTL);
    let hash = tunnel.id_hash;
    assert!(
        store
            .exchange_client_ticket(&client_hash, now, Some(tunnel), exchanged(now))
            .await
            .unwrap()
    );
    (id, hash)
}

both_backends!(
    client_ticket_is_consumed_only_by_the_exchange,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let (_, new) = client_ticket(alice, desk, T0);
        let (hash, status_id) = (new.id_hash, new.status_id.clone());
        store.insert_client_ticket(new.clone()).await.unwrap();

        // Lookups, progress reports and status polls do not consume it.
        for _ in 0..3 {
            let ticket = store
                .exchange_context(&hash, T0 + 10)
                .await
                .unwrap()
                .unwrap()
                .ticket;
            assert_eq!((ticket.user_id, ticket.service_id), (alice, desk));
            assert!(ticket.scrambler_matches("scrambler"));
            assert!(!ticket.scrambler_matches("scramblerX"));
            assert_eq!(ticket.client_os.as_deref(), Some("linux"));
            assert_eq!(
                (ticket.created_at, ticket.expires_at),
                (T0, T0 + CLIENT_TTL)
            );
        }
        assert_eq!(
            store
                .connection(&status_id, alice, T0)
                .await
                .unwrap()
                .map(|connection| connection.state),
            Some(ConnectionState::Waiting)
        );
        assert!(
            store
                .set_client_ticket_progress(&hash, 40, "Preparing service")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .connection(&status_id, alice, T0)
                .await
                .unwrap()
                .map(|connection| connection.state),
            Some(ConnectionState::Preparing {
                percent: 40,
                message: Some("Preparing service".to_owned())
            })
        );
        // The status belongs to its user only.
        let bob = store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
        assert_eq!(
            store
                .connection(&status_id, bob, T0)
                .await
                .unwrap()
                .map(|connection| connection.state),
            None
        );

        // The exchange consumes it, once.
        assert!(
            store
                .exchange_client_ticket(&hash, T0 + 20, None, exchanged(T0 + 20))
                .await
                .unwrap()
        );
        assert!(
            store
                .exchange_context(&hash, T0 + 21)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .exchange_client_ticket(&hash, T0 + 22, None, exchanged(T0 + 22))
                .await
                .unwrap()
        );
        assert!(
            !store
                .set_client_ticket_progress(&hash, 50, "late")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .connection(&status_id, alice, T0 + 30)
                .await
                .unwrap()
                .map(|connection| connection.state),
            Some(ConnectionState::Connected { since: T0 + 20 })
        );

        // Duplicates and dangling references are refused.
        assert!(matches!(
            store.insert_client_ticket(new.clone()).await,
            Err(StoreError::Conflict(_))
        ));
        let (_, mut dangling) = client_ticket(UserId(999), desk, T0);
        assert!(matches!(
            store.insert_client_ticket(dangling.clone()).await,
            Err(StoreError::NotFound(_))
        ));
        dangling.user_id = alice;
        dangling.expires_at = dangling.created_at;
        assert!(matches!(
            store.insert_client_ticket(dangling).await,
            Err(StoreError::Invalid(_))
        ));
    }
);

both_backends!(
    client_ticket_expires_at_its_expiry,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let (_, new) = client_ticket(alice, desk, T0);
        let (hash, status_id, expires) = (new.id_hash, new.status_id.clone(), new.expires_at);
        store.insert_client_ticket(new).await.unwrap();

        assert!(
            store
                .exchange_context(&hash, expires - 1)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .exchange_context(&hash, expires)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .exchange_client_ticket(&hash, expires, None, exchanged(expires))
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .connection(&status_id, alice, expires)
                .await
                .unwrap()
                .map(|connection| connection.state),
            Some(ConnectionState::Expired)
        );
        // Refused at the boundary, the ticket was not consumed: a moment earlier it works.
        assert!(
            store
                .exchange_client_ticket(&hash, expires - 1, None, exchanged(expires - 1))
                .await
                .unwrap()
        );
    }
);

both_backends!(
    exchange_stores_the_tunnel_ticket_only_when_it_wins,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let (_, client) = client_ticket(alice, desk, T0);
        let client_hash = client.id_hash;
        store.insert_client_ticket(client).await.unwrap();

        // A tunnel ticket for someone else is refused, and the client ticket stays valid.
        let bob = store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
        let (_, _, foreign) = tunnel_ticket(bob, desk, T0, TUNNEL_TTL);
        let foreign_hash = foreign.id_hash;
        assert!(matches!(
            store
                .exchange_client_ticket(&client_hash, T0, Some(foreign), exchanged(T0))
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(
            store
                .tunnel_ticket_for_redemption(&foreign_hash, T0)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .exchange_context(&client_hash, T0)
                .await
                .unwrap()
                .is_some()
        );

        // The winner stores its tunnel ticket ...
        let (first_id, secret, first) = tunnel_ticket(alice, desk, T0, TUNNEL_TTL);
        let first_hash = first.id_hash;
        assert!(
            store
                .exchange_client_ticket(&client_hash, T0, Some(first), exchanged(T0))
                .await
                .unwrap()
        );
        let stored = store
            .tunnel_ticket_for_redemption(&first_hash, T0)
            .await
            .unwrap()
            .unwrap();
        assert!(stored.open_secret(&first_id).unwrap() == secret);
        assert_eq!(
            (stored.target_host.as_str(), stored.target_port),
            ("10.0.0.7", 22)
        );
        assert_eq!((stored.user_id, stored.service_id), (alice, desk));
        assert_eq!(stored.tunnel_group, "dc1");
        assert_eq!(stored.max_session_secs, 3600);
        assert_eq!(stored.failed_proofs, 0);
        assert!(!format!("{stored:?}").contains(&format!("{:?}", stored.secret_enc)));

        // ... a loser stores nothing.
        let (_, _, second) = tunnel_ticket(alice, desk, T0, TUNNEL_TTL);
        let second_hash = second.id_hash;
        assert!(
            !store
                .exchange_client_ticket(&client_hash, T0, Some(second), exchanged(T0))
                .await
                .unwrap()
        );
        assert!(
            store
                .tunnel_ticket_for_redemption(&second_hash, T0)
                .await
                .unwrap()
                .is_none()
        );

        // Nor does an exchange of an expired ticket.
        let (_, late) = client_ticket(alice, desk, T0);
        let late_hash = late.id_hash;
        store.insert_client_ticket(late).await.unwrap();
        let (_, _, third) = tunnel_ticket(alice, desk, T0, TUNNEL_TTL);
        let third_hash = third.id_hash;
        let at = T0 + CLIENT_TTL;
        assert!(
            !store
                .exchange_client_ticket(&late_hash, at, Some(third), exchanged(at))
                .await
                .unwrap()
        );
        assert!(
            store
                .tunnel_ticket_for_redemption(&third_hash, T0)
                .await
                .unwrap()
                .is_none()
        );
    }
);

both_backends!(tunnel_ticket_is_redeemed_once, |db: TestDb| async move {
    let store = &db.store;
    let (_, hash) = stored_tunnel_ticket(store, T0).await;
    let at = T0 + 1000;

    // Looking does not redeem.
    assert!(
        store
            .tunnel_ticket_for_redemption(&hash, at)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .tunnel_ticket_for_redemption(&hash, at)
            .await
            .unwrap()
            .is_some()
    );

    let (notify_id, first) = notify(7);
    assert!(store.redeem_tunnel_ticket(&hash, at, first).await.unwrap());
    assert!(
        store
            .tunnel_ticket_for_redemption(&hash, at)
            .await
            .unwrap()
            .is_none()
    );
    let (other_id, second) = notify(7);
    assert!(!store.redeem_tunnel_ticket(&hash, at, second).await.unwrap());

    // The loser's notify ticket was not stored; the winner's stops once.
    let stop_at = at + 90_000;
    assert_eq!(
        store
            .stop_notify(&ticket_hash(&other_id), TunnelServerId(7), stop_at, 1, 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .stop_notify(&ticket_hash(&notify_id), TunnelServerId(8), stop_at, 1, 1)
            .await
            .unwrap(),
        None,
        "only the tunnel server that redeemed the ticket may stop its session"
    );
    let stopped = store
        .stop_notify(
            &ticket_hash(&notify_id),
            TunnelServerId(7),
            stop_at,
            u64::MAX,
            2048,
        )
        .await
        .unwrap()
        .unwrap();
    let (alice, desk) = (
        store.user_by_name("alice").await.unwrap().unwrap().id,
        store.service_by_name("desk").await.unwrap().unwrap().id,
    );
    assert_eq!((stopped.user_id, stopped.service_id), (alice, desk));
    assert_eq!(stopped.tunnel_server_id, TunnelServerId(7));
    assert_eq!((stopped.started_at, stopped.duration_ms), (at, 90_000));
    assert_eq!((stopped.sent, stopped.recv), (u64::MAX, 2048));
    assert_eq!(
        store
            .stop_notify(
                &ticket_hash(&notify_id),
                TunnelServerId(7),
                stop_at + 1,
                5,
                5
            )
            .await
            .unwrap(),
        None,
        "only the first stop counts"
    );
});

both_backends!(
    tunnel_ticket_expires_at_its_expiry,
    |db: TestDb| async move {
        let store = &db.store;
        let (_, hash) = stored_tunnel_ticket(store, T0).await;
        let expires = T0 + TUNNEL_TTL;
        assert!(
            store
                .tunnel_ticket_for_redemption(&hash, expires - 1)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .tunnel_ticket_for_redemption(&hash, expires)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .redeem_tunnel_ticket(&hash, expires, notify(1).1)
                .await
                .unwrap()
        );
        assert_eq!(
            store.record_failed_proof(&hash, expires).await.unwrap(),
            None
        );
        assert!(
            store
                .redeem_tunnel_ticket(&hash, expires - 1, notify(1).1)
                .await
                .unwrap()
        );
    }
);

both_backends!(
    failed_proofs_are_counted_and_never_burn_the_ticket,
    |db: TestDb| async move {
        let store = &db.store;
        let (_, hash) = stored_tunnel_ticket(store, T0).await;
        for n in 1..=20 {
            assert_eq!(store.record_failed_proof(&hash, T0).await.unwrap(), Some(n));
            let ticket = store.tunnel_ticket_for_redemption(&hash, T0).await.unwrap();
            assert_eq!(ticket.unwrap().failed_proofs, n, "still redeemable");
        }
        assert!(
            store
                .redeem_tunnel_ticket(&hash, T0, notify(1).1)
                .await
                .unwrap()
        );
        assert_eq!(store.record_failed_proof(&hash, T0).await.unwrap(), None);
        // Unknown tickets count nothing.
        let unknown = ticket_hash(&TicketId::generate().unwrap());
        assert_eq!(store.record_failed_proof(&unknown, T0).await.unwrap(), None);
    }
);

/// 64 tasks redeem one tunnel ticket at once, spread over `stores` (separate pools, as
/// separate brokers would have); exactly one wins and exactly one notify ticket exists.
async fn race_redemptions(stores: Vec<Store>) {
    let (_, hash) = stored_tunnel_ticket(&stores[0], T0).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for n in 0..RACERS {
        let store = stores[n % stores.len()].clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let (id, new) = notify(1);
            barrier.wait().await;
            let won = store
                .redeem_tunnel_ticket(&hash, T0 + 1, new)
                .await
                .unwrap();
            (won, id)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (won, id) = task.await.unwrap();
        if won {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of {RACERS} redemptions wins");
    let store = &stores[0];
    assert!(
        store
            .stop_notify(&ticket_hash(&winners[0]), TunnelServerId(1), T0 + 2, 0, 0)
            .await
            .unwrap()
            .is_some()
    );
}

both_backends!(
    concurrent_redemptions_have_one_winner,
    |db: TestDb| async move {
        race_redemptions(vec![db.store.clone()]).await;
    }
);

both_backends!(
    concurrent_redemptions_on_two_pools_have_one_winner,
    |db: TestDb| async move {
        let other = db.connect_again().await;
        race_redemptions(vec![db.store.clone(), other]).await;
    }
);

/// `per_ticket` tasks per ticket exchange `tickets` client tickets at once, each with a
/// tunnel ticket of its own. Exchanges that finish together share transactions (group
/// commit), yet each must get the outcome it would get alone: one winner per ticket, a
/// tunnel ticket stored exactly for each winner, one audit event per winner.
async fn race_exchanges(store: &Store, tickets: usize, per_ticket: usize) {
    let (alice, desk) = alice_and_desk(store).await;
    let mut hashes = Vec::new();
    for _ in 0..tickets {
        let (_, client) = client_ticket(alice, desk, T0);
        hashes.push(client.id_hash);
        store.insert_client_ticket(client).await.unwrap();
    }
    let barrier = Arc::new(Barrier::new(tickets * per_ticket));
    let mut tasks = Vec::new();
    for racer in 0..tickets * per_ticket {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        let client_hash = hashes[racer % tickets];
        tasks.push(tokio::spawn(async move {
            let (_, _, tunnel) = tunnel_ticket(alice, desk, T0, TUNNEL_TTL);
            let tunnel_hash = tunnel.id_hash;
            barrier.wait().await;
            let won = store
                .exchange_client_ticket(&client_hash, T0 + 1, Some(tunnel), exchanged(T0 + 1))
                .await
                .unwrap();
            (racer % tickets, won, tunnel_hash)
        }));
    }
    let mut wins = vec![0_usize; tickets];
    for task in tasks {
        let (ticket, won, tunnel_hash) = task.await.unwrap();
        wins[ticket] += usize::from(won);
        let present = store
            .tunnel_ticket_for_redemption(&tunnel_hash, T0 + 1)
            .await
            .unwrap()
            .is_some();
        assert_eq!(present, won, "a tunnel ticket exists exactly for a winner");
    }
    assert_eq!(wins, vec![1; tickets], "one winner per ticket");
    let exchanged_events = store
        .audit_tail(1_000)
        .await
        .unwrap()
        .iter()
        .filter(|event| event.event.kind == "ticket.exchanged")
        .count();
    assert_eq!(exchanged_events, tickets, "one audit event per winner");
}

both_backends!(
    concurrent_exchanges_have_one_winner,
    |db: TestDb| async move { race_exchanges(&db.store, 1, RACERS).await }
);

both_backends!(
    concurrent_exchanges_of_many_tickets_win_once_each,
    |db: TestDb| async move { race_exchanges(&db.store, 16, 4).await }
);

both_backends!(
    concurrent_failed_proofs_count_exactly,
    |db: TestDb| async move {
        let store = db.store.clone();
        let (_, hash) = stored_tunnel_ticket(&store, T0).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for _ in 0..RACERS {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.record_failed_proof(&hash, T0).await.unwrap()
            }));
        }
        let mut counted = Vec::new();
        for task in tasks {
            counted.push(task.await.unwrap().expect("the ticket stays live"));
        }
        counted.sort_unstable();
        let expected: Vec<u32> = (1..=RACERS as u32).collect();
        assert_eq!(counted, expected);
    }
);

both_backends!(
    a_sweep_larger_than_one_statement_removes_everything_dead,
    |db: TestDb| async move {
        // Sweeps delete in chunks (2,000 rows a statement) so that exchanges never wait
        // behind one long delete; the chunks together must still remove every dead row.
        const EXPIRED: usize = 2_500;
        let store = db.store.clone();
        let (alice, desk) = alice_and_desk(&store).await;
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in (task..EXPIRED).step_by(8) {
                    let (_, ticket) = client_ticket(alice, desk, T0);
                    store.insert_client_ticket(ticket).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (_, live) = client_ticket(alice, desk, T0 + CLIENT_TTL);
        let live_hash = live.id_hash;
        store.insert_client_ticket(live).await.unwrap();

        let counts = store.sweep_expired(T0 + CLIENT_TTL).await.unwrap();
        assert_eq!(counts.client_tickets, EXPIRED as u64);
        assert!(
            store
                .exchange_context(&live_hash, T0 + CLIENT_TTL)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store.sweep_expired(T0 + CLIENT_TTL).await.unwrap().total(),
            0
        );
    }
);

both_backends!(
    sweep_removes_what_is_dead_and_nothing_else,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let now = T0 + 10 * 24 * 3_600_000;

        // Client tickets: one expired (unused), one expired (used), one live.
        let mut client_hashes = Vec::new();
        for (created, used) in [
            (now - 2 * CLIENT_TTL, false),
            (now - CLIENT_TTL, true),
            (now - 10, false),
        ] {
            let (_, new) = client_ticket(alice, desk, created);
            let hash = new.id_hash;
            store.insert_client_ticket(new).await.unwrap();
            if used {
                assert!(
                    store
                        .exchange_client_ticket(&hash, created + 1, None, exchanged(created + 1))
                        .await
                        .unwrap()
                );
            }
            client_hashes.push(hash);
        }
        // Tunnel tickets: expired; used over an hour ago; used just now; live.
        let (_, expired) = stored_tunnel_ticket(store, now - TUNNEL_TTL).await;
        let (_, used_long_ago) =
            stored_tunnel_ticket(store, now - USED_TUNNEL_TICKET_KEEP_MS).await;
        assert!(
            store
                .redeem_tunnel_ticket(
                    &used_long_ago,
                    now - USED_TUNNEL_TICKET_KEEP_MS,
                    notify(1).1
                )
                .await
                .unwrap()
        );
        let (_, used_recently) = stored_tunnel_ticket(store, now - 10).await;
        let (recent_notify, recent) = notify(1);
        assert!(
            store
                .redeem_tunnel_ticket(&used_recently, now - 5, recent)
                .await
                .unwrap()
        );
        let (_, live) = stored_tunnel_ticket(store, now).await;

        // Notify tickets: stopped over a day ago (the long-ago session), stopped recently,
        // running, abandoned (never stopped, long past its maximum duration).
        let (_, old_session) = stored_tunnel_ticket(store, now - 3 * 24 * 3_600_000).await;
        let (old_notify, old) = notify(1);
        assert!(
            store
                .redeem_tunnel_ticket(&old_session, now - 3 * 24 * 3_600_000, old)
                .await
                .unwrap()
        );
        assert!(
            store
                .stop_notify(
                    &ticket_hash(&old_notify),
                    TunnelServerId(1),
                    now - STOPPED_SESSION_KEEP_MS,
                    1,
                    1
                )
                .await
                .unwrap()
                .is_some()
        );
        let (_, stopped_recently) = stored_tunnel_ticket(store, now - 100).await;
        let (stopped_notify, stopped) = notify(1);
        assert!(
            store
                .redeem_tunnel_ticket(&stopped_recently, now - 100, stopped)
                .await
                .unwrap()
        );
        assert!(
            store
                .stop_notify(
                    &ticket_hash(&stopped_notify),
                    TunnelServerId(1),
                    now - 50,
                    1,
                    1
                )
                .await
                .unwrap()
                .is_some()
        );

        // Login sessions: expired, live.
        store
            .create_login_session(&TokenHash::of(b"old"), alice, now - 2000, now)
            .await
            .unwrap();
        store
            .create_login_session(&TokenHash::of(b"new"), alice, now - 2000, now + 1)
            .await
            .unwrap();

        // Each stored tunnel ticket also consumed a client ticket created at the same time.
        // Used client tickets are kept a day after their exchange (the portal's recent
        // connections): of the used ones only the old session's (3 days ago) goes, with the
        // expired unused one.
        assert_eq!(
            store.sweep_expired(now).await.unwrap(),
            SweepCounts {
                client_tickets: 1 + 1,
                tunnel_tickets: 3, // expired, used long ago, the old session's
                notify_tickets: 1, // stopped over a day ago
                login_sessions: 1,
            }
        );
        let expired_row = store
            .tunnel_ticket_for_redemption(&expired, now - TUNNEL_TTL)
            .await;
        assert!(expired_row.unwrap().is_none());
        assert!(
            store
                .tunnel_ticket_for_redemption(&live, now)
                .await
                .unwrap()
                .is_some()
        );

        // Survivors.
        assert!(
            store
                .exchange_context(&client_hashes[2], now)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .login_session_user(&TokenHash::of(b"new"), now)
                .await
                .unwrap()
                .is_some()
        );
        // The recent session still stops (its notify ticket survived) ...
        assert!(
            store
                .stop_notify(&ticket_hash(&recent_notify), TunnelServerId(1), now, 3, 3)
                .await
                .unwrap()
                .is_some()
        );
        // ... and a second sweep at the same time finds nothing more.
        assert_eq!(
            store.sweep_expired(now).await.unwrap(),
            SweepCounts::default()
        );

        // Much later, every ticket and the stopped sessions are gone.
        let later = now + 2 * STOPPED_SESSION_KEEP_MS;
        assert_eq!(
            store.sweep_expired(later).await.unwrap(),
            SweepCounts {
                client_tickets: 7,
                tunnel_tickets: 3,
                notify_tickets: 3, // two stopped, one abandoned (used long ago, never stopped)
                login_sessions: 1,
            }
        );
    }
);

both_backends!(
    abandoned_sessions_are_swept_after_their_grace,
    |db: TestDb| async move {
        let store = &db.store;
        let (_, hash) = stored_tunnel_ticket(store, T0).await;
        let (notify_id, new) = notify(1);
        assert!(store.redeem_tunnel_ticket(&hash, T0, new).await.unwrap());
        // desk allows 3600 s; the grace is a day beyond that.
        let end = T0 + 3_600_000 + portcullis_broker::store::ABANDONED_SESSION_GRACE_MS;
        assert_eq!(
            store.sweep_expired(end - 1).await.unwrap().notify_tickets,
            0
        );
        assert_eq!(store.sweep_expired(end).await.unwrap().notify_tickets, 1);
        assert_eq!(
            store
                .stop_notify(&ticket_hash(&notify_id), TunnelServerId(1), end, 1, 1)
                .await
                .unwrap(),
            None
        );
    }
);

/// Every text and blob value of every table of the schema (not sqlx's `_sqlx_migrations`
/// bookkeeping), read through a pool of its own.
async fn all_values(db: &TestDb) -> Vec<Vec<u8>> {
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let tables_sql = match db.store.backend() {
        portcullis_broker::store::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'"
        }
        portcullis_broker::store::Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_%' ESCAPE '\\'"
        }
    };
    let tables: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("name").unwrap())
        .collect();
    assert!(tables.iter().any(|t| t == "tunnel_tickets"), "{tables:?}");
    let mut values = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in &rows {
            for index in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(index) {
                    values.push(text.into_bytes());
                } else if let Ok(Some(blob)) = row.try_get::<Option<Vec<u8>>, _>(index) {
                    values.push(blob);
                }
            }
        }
    }
    pool.close().await;
    values
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

both_backends!(
    a_dump_reveals_no_ticket_and_no_secret,
    |db: TestDb| async move {
        sqlx::any::install_default_drivers();
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let (client_id, mut client) = client_ticket(alice, desk, T0);
        client.scrambler = "Scr4mblerKeptOnlyAsAHash0123456".to_owned();
        let client_hash = client.id_hash;
        store.insert_client_ticket(client).await.unwrap();
        let (tunnel_id, secret, tunnel) = tunnel_ticket(alice, desk, T0, TUNNEL_TTL);
        let tunnel_hash = tunnel.id_hash;
        assert!(
            store
                .exchange_client_ticket(&client_hash, T0, Some(tunnel), exchanged(T0))
                .await
                .unwrap()
        );
        let (notify_id, new) = notify(1);
        assert!(
            store
                .redeem_tunnel_ticket(&tunnel_hash, T0, new)
                .await
                .unwrap()
        );
        let token = "portal-session-token-0123456789abcdef";
        store
            .create_login_session(&TokenHash::of(token.as_bytes()), alice, T0, T0 + 1000)
            .await
            .unwrap();

        let hex = secret.to_hex();
        let needles: Vec<(&str, Vec<u8>)> = vec![
            ("client ticket id", client_id.expose().as_bytes().to_vec()),
            ("tunnel ticket id", tunnel_id.expose().as_bytes().to_vec()),
            ("notify ticket id", notify_id.expose().as_bytes().to_vec()),
            ("shared secret", secret.expose().to_vec()),
            ("shared secret (hex)", hex.as_bytes().to_vec()),
            ("login token", token.as_bytes().to_vec()),
            ("scrambler", b"Scr4mblerKeptOnlyAsAHash0123456".to_vec()),
        ];
        let values = all_values(&db).await;
        // The scan does see the rows: the target host is there.
        assert!(values.iter().any(|value| value == b"10.0.0.7"));
        for (what, needle) in &needles {
            assert!(
                !values.iter().any(|value| contains(value, needle)),
                "the {what} is in the database"
            );
        }

        // The raw SQLite files (database and WAL), byte for byte.
        if let Some(dir) = db.dir() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                for (what, needle) in &needles {
                    assert!(
                        !contains(&bytes, needle),
                        "the {what} is in a database file"
                    );
                }
            }
        }
    }
);

both_backends!(
    exchange_context_reads_ticket_service_user_and_right,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;

        // A live ticket of a user who may use the service.
        let (_, new) = client_ticket(alice, desk, T0);
        let hash = new.id_hash;
        store.insert_client_ticket(new.clone()).await.unwrap();
        let context = store
            .exchange_context(&hash, T0 + 1)
            .await
            .unwrap()
            .expect("a live ticket");
        assert_eq!(context.ticket.status_id, new.status_id);
        assert_eq!(context.ticket.user_id, alice);
        assert_eq!(context.username.as_deref(), Some("alice"));
        assert!(context.may_use);
        let service = context.service.expect("the service exists");
        let stored = store.service_by_id(desk).await.unwrap().unwrap();
        assert_eq!(
            service,
            ExchangeService {
                id: stored.id,
                name: stored.name,
                host: stored.host,
                port: stored.port,
                protocol: stored.protocol,
                transport: stored.transport,
                tunnel_group: stored.tunnel_group,
                max_session_secs: stored.max_session_secs,
                readiness: stored.readiness,
            }
        );

        // A user outside the allowed groups.
        let bob = store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
        let (_, new) = client_ticket(bob, desk, T0);
        let bob_hash = new.id_hash;
        store.insert_client_ticket(new).await.unwrap();
        let context = store
            .exchange_context(&bob_hash, T0 + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(context.username.as_deref(), Some("bob"));
        assert!(context.service.is_some());
        assert!(!context.may_use);
        // … until he joins one.
        store.add_member("staff", "bob").await.unwrap();
        assert!(
            store
                .exchange_context(&bob_hash, T0 + 1)
                .await
                .unwrap()
                .unwrap()
                .may_use
        );

        // A deleted service takes its tickets along.
        let gone = store
            .add_service(direct_service("gone", &["staff"]), T0)
            .await
            .unwrap();
        let (_, new) = client_ticket(alice, gone, T0);
        let gone_hash = new.id_hash;
        store.insert_client_ticket(new).await.unwrap();
        assert!(
            store
                .exchange_context(&gone_hash, T0 + 1)
                .await
                .unwrap()
                .unwrap()
                .may_use
        );
        store.remove_service("gone", 0).await.unwrap();
        assert_eq!(
            store.exchange_context(&gone_hash, T0 + 1).await.unwrap(),
            None
        );

        // Expired, used and unknown tickets have no context.
        assert_eq!(
            store
                .exchange_context(&hash, T0 + CLIENT_TTL)
                .await
                .unwrap(),
            None
        );
        assert!(
            store
                .exchange_client_ticket(&hash, T0 + 2, None, exchanged(T0 + 2))
                .await
                .unwrap()
        );
        assert_eq!(store.exchange_context(&hash, T0 + 3).await.unwrap(), None);
        let (unknown, _) = client_ticket(alice, desk, T0);
        assert_eq!(
            store
                .exchange_context(&ticket_hash(&unknown), T0 + 1)
                .await
                .unwrap(),
            None
        );
    }
);

/// The `ticket.exchanged` events in the audit log.
async fn exchange_events(store: &Store) -> Vec<String> {
    store
        .audit_tail(1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|stored| stored.event.kind == "ticket.exchanged")
        .map(|stored| stored.event.detail)
        .collect()
}

both_backends!(exchange_audits_only_when_it_wins, |db: TestDb| async move {
    let store = &db.store;
    let (alice, desk) = alice_and_desk(store).await;
    let (_, new) = client_ticket(alice, desk, T0);
    let hash = new.id_hash;
    store.insert_client_ticket(new).await.unwrap();

    // A bad audit event or a foreign tunnel ticket fails the whole exchange: the
    // ticket stays live and nothing is logged.
    let mut bad = exchanged(T0);
    bad.kind = String::new();
    assert!(matches!(
        store.exchange_client_ticket(&hash, T0, None, bad).await,
        Err(StoreError::Invalid(_))
    ));
    let (_, _, foreign) = tunnel_ticket(UserId(999), desk, T0, TUNNEL_TTL);
    assert!(matches!(
        store
            .exchange_client_ticket(&hash, T0, Some(foreign), exchanged(T0))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(exchange_events(store).await.is_empty());
    assert!(store.exchange_context(&hash, T0).await.unwrap().is_some());

    // Of many racing exchanges, only the winner's event is written.
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut handles = Vec::new();
    for racer in 0..RACERS {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        handles.push(tokio::spawn(async move {
            let mut event = exchanged(T0 + 1);
            event.detail = format!("{{\"racer\":{racer}}}");
            barrier.wait().await;
            let won = store
                .exchange_client_ticket(&hash, T0 + 1, None, event)
                .await
                .unwrap();
            won.then_some(racer)
        }));
    }
    let mut winners = Vec::new();
    for handle in handles {
        winners.extend(handle.await.unwrap());
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        exchange_events(store).await,
        vec![format!("{{\"racer\":{}}}", winners[0])]
    );

    // A late exchange of the used ticket writes nothing either.
    assert!(
        !store
            .exchange_client_ticket(&hash, T0 + 2, None, exchanged(T0 + 2))
            .await
            .unwrap()
    );
    assert_eq!(exchange_events(store).await.len(), 1);
});

/// The `tunnel.unreported` events in the audit log (at most 10,000), oldest first.
async fn unreported_events(store: &Store) -> Vec<portcullis_broker::store::AuditEvent> {
    store
        .audit_tail(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.event)
        .filter(|event| event.kind == "tunnel.unreported")
        .collect()
}

both_backends!(
    an_unreported_session_is_audited_when_swept,
    |db: TestDb| async move {
        // Issue 7 point 9: OpenUDS 5 tunnel servers never send `stop`; the sweeper used to
        // delete their expired notify tickets silently.
        sqlx::any::install_default_drivers();
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let server = store
            .add_tunnel_server(
                portcullis_broker::store::NewTunnelServer {
                    name: "uds5-tunnel".into(),
                    public_address: "127.0.0.1:7777".into(),
                    token_hash: TokenHash::of(b"sk-uds5"),
                    legacy: true,
                    group: "dc1".into(),
                },
                T0,
            )
            .await
            .unwrap();
        // Never stopped; stopped; never stopped but started later (still within its time).
        let (_, unreported_ticket) = stored_tunnel_ticket(store, T0).await;
        let (_, unreported) = notify(server.0);
        assert!(
            store
                .redeem_tunnel_ticket(&unreported_ticket, T0, unreported)
                .await
                .unwrap()
        );
        let (_, stopped_ticket) = stored_tunnel_ticket(store, T0).await;
        let (stopped_id, stopped) = notify(server.0);
        assert!(
            store
                .redeem_tunnel_ticket(&stopped_ticket, T0, stopped)
                .await
                .unwrap()
        );
        assert!(
            store
                .stop_notify(&ticket_hash(&stopped_id), server, T0 + 10, 5, 6)
                .await
                .unwrap()
                .is_some()
        );
        // desk allows 3600 s; a session is abandoned a day past that.
        let end = T0 + 3_600_000 + portcullis_broker::store::ABANDONED_SESSION_GRACE_MS;
        let (_, running_ticket) = stored_tunnel_ticket(store, end - 1000).await;
        let (_, running) = notify(server.0);
        assert!(
            store
                .redeem_tunnel_ticket(&running_ticket, end - 1000, running)
                .await
                .unwrap()
        );

        assert_eq!(
            store.sweep_expired(end - 1).await.unwrap().notify_tickets,
            1
        );
        assert!(
            unreported_events(store).await.is_empty(),
            "a stopped session is swept without an event, a live one is kept"
        );
        assert_eq!(store.sweep_expired(end).await.unwrap().notify_tickets, 1);
        let events = unreported_events(store).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.at, end);
        assert_eq!(event.username.as_deref(), Some("alice"));
        assert_eq!(event.service.as_deref(), Some("desk"));
        assert_eq!(event.source_ip, None);
        let detail: serde_json::Value = serde_json::from_str(&event.detail).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "tunnel_server": "uds5-tunnel",
                "legacy": true,
                "started_at": T0,
            })
        );
        // Swept once, audited once.
        assert_eq!(store.sweep_expired(end).await.unwrap().total(), 0);
        assert_eq!(unreported_events(store).await.len(), 1);

        // More than one sweep chunk (2,000 rows), each session audited once, also when the
        // tunnel server was unregistered since (its name is then unknown).
        const MANY: i64 = 2_100;
        store.remove_tunnel_server("uds5-tunnel").await.unwrap();
        let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let bulk = match store.backend() {
            portcullis_broker::store::Backend::Sqlite => {
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                 INSERT INTO notify_tickets (id_hash, tunnel_ticket_hash, user_id, service_id, \
                 tunnel_server_id, started_at, expires_at) \
                 SELECT randomblob(32), randomblob(32), $2, $3, $4, $5, $6 FROM n"
            }
            portcullis_broker::store::Backend::Postgres => {
                "INSERT INTO notify_tickets (id_hash, tunnel_ticket_hash, user_id, service_id, \
                 tunnel_server_id, started_at, expires_at) \
                 SELECT decode(lpad(to_hex(i), 64, '0'), 'hex'), \
                 decode(lpad(to_hex(i), 64, '0'), 'hex'), $2, $3, $4, $5, $6 \
                 FROM generate_series(1, CAST($1 AS BIGINT)) AS i"
            }
        };
        sqlx::query(bulk)
            .bind(MANY)
            .bind(alice.0)
            .bind(desk.0)
            .bind(server.0)
            .bind(end)
            .bind(end + 1)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let later = end + 1;
        let counts = store.sweep_expired(later).await.unwrap();
        assert_eq!(counts.notify_tickets, MANY as u64, "the running one stays");
        let events = unreported_events(store).await;
        assert_eq!(events.len(), 1 + MANY as usize);
        let expected = serde_json::json!({
            "tunnel_server": null,
            "legacy": null,
            "started_at": end,
        });
        for event in &events[1..] {
            assert_eq!(event.at, later);
            assert_eq!(event.username.as_deref(), Some("alice"));
            let detail: serde_json::Value = serde_json::from_str(&event.detail).unwrap();
            assert_eq!(detail, expected);
        }
        assert_eq!(store.sweep_expired(later).await.unwrap().total(), 0);
    }
);
