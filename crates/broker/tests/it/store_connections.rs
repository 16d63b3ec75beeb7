//! Connections as the portal follows them, on both backends: a client ticket through its
//! exchange, the tunnel session's start and stop, expiry, failure, and the recent list.

use crate::support::fixtures::{
    CLIENT_TTL, T0, alice_and_desk, client_ticket, direct_service, exchanged, tunnel_ticket,
};
use crate::support::{TestDb, both_backends};
use portcullis_broker::store::{
    ConnectionState, NewNotifyTicket, RECENT_CONNECTIONS, Store, TunnelServerId,
    USED_CLIENT_TICKET_KEEP_MS, UserId,
};
use portcullis_broker::tickets::crypto::ticket_hash;
use portcullis_proto::TicketId;

const TUNNEL_TTL: i64 = 120_000;

async fn state(store: &Store, status_id: &str, user: UserId, now: i64) -> ConnectionState {
    store
        .connection(status_id, user, now)
        .await
        .unwrap()
        .expect("the connection")
        .state
}

both_backends!(
    a_tunneled_connection_is_followed_to_its_stop_report,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let (_, client) = client_ticket(alice, desk, T0);
        let (status_id, client_hash) = (client.status_id.clone(), client.id_hash);
        store.insert_client_ticket(client).await.unwrap();
        assert_eq!(
            state(store, &status_id, alice, T0).await,
            ConnectionState::Waiting
        );

        // Exchanged: the tunnel is not open yet.
        let (tunnel_id, _, tunnel) = tunnel_ticket(alice, desk, T0 + 10, TUNNEL_TTL);
        assert!(
            store
                .exchange_client_ticket(&client_hash, T0 + 10, Some(tunnel), exchanged(T0 + 10))
                .await
                .unwrap()
        );
        assert_eq!(
            state(store, &status_id, alice, T0 + 20).await,
            ConnectionState::Preparing {
                percent: 100,
                message: None
            }
        );

        // A tunnel server opens it ...
        let notify = TicketId::generate().unwrap();
        assert!(
            store
                .redeem_tunnel_ticket(
                    &ticket_hash(&tunnel_id),
                    T0 + 1000,
                    NewNotifyTicket {
                        id_hash: ticket_hash(&notify),
                        tunnel_server_id: TunnelServerId(1),
                    },
                )
                .await
                .unwrap()
        );
        assert_eq!(
            state(store, &status_id, alice, T0 + 2000).await,
            ConnectionState::Connected { since: T0 + 1000 }
        );
        // ... (long after the client ticket's own expiry) ...
        let later = T0 + 10 * CLIENT_TTL;
        assert_eq!(store.sweep_expired(later).await.unwrap().client_tickets, 0);
        // ... and reports its end.
        store
            .stop_notify(
                &ticket_hash(&notify),
                TunnelServerId(1),
                later,
                4096,
                1_000_000,
            )
            .await
            .unwrap()
            .expect("stopped");
        let ended = ConnectionState::Ended {
            started_at: T0 + 1000,
            ended_at: later,
            sent: 4096,
            recv: 1_000_000,
        };
        assert_eq!(state(store, &status_id, alice, later).await, ended);

        let recent = store.recent_connections(alice, later).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].status_id, status_id);
        assert_eq!(recent[0].service.as_deref(), Some("desk"));
        assert_eq!(recent[0].created_at, T0);
        assert_eq!(recent[0].state, ended);

        // Another user sees nothing of it.
        let bob = store
            .add_user("bob", crate::support::fixtures::PASSWORD_HASH, T0)
            .await
            .unwrap();
        assert_eq!(
            store.connection(&status_id, bob, later).await.unwrap(),
            None
        );
        assert!(
            store
                .recent_connections(bob, later)
                .await
                .unwrap()
                .is_empty()
        );

        // A day after the exchange the connection is history, and swept.
        let gone = T0 + 10 + USED_CLIENT_TICKET_KEEP_MS;
        assert_eq!(store.sweep_expired(gone).await.unwrap().client_tickets, 1);
        assert_eq!(
            store.connection(&status_id, alice, gone).await.unwrap(),
            None
        );
    }
);

both_backends!(
    direct_expired_and_failed_connections,
    |db: TestDb| async move {
        let store = &db.store;
        let (alice, desk) = alice_and_desk(store).await;
        let direct = store
            .add_service(direct_service("rdp-desk", &["staff"]), T0)
            .await
            .unwrap();

        // Direct: connected from the exchange on.
        let (_, client) = client_ticket(alice, direct, T0);
        let (direct_status, hash) = (client.status_id.clone(), client.id_hash);
        store.insert_client_ticket(client).await.unwrap();
        assert!(
            store
                .exchange_client_ticket(&hash, T0 + 5, None, exchanged(T0 + 5))
                .await
                .unwrap()
        );
        assert_eq!(
            state(store, &direct_status, alice, T0 + CLIENT_TTL * 2).await,
            ConnectionState::Connected { since: T0 + 5 }
        );

        // Never exchanged: expired.
        let (_, client) = client_ticket(alice, desk, T0 + 1);
        let expired_status = client.status_id.clone();
        store.insert_client_ticket(client).await.unwrap();
        assert_eq!(
            state(store, &expired_status, alice, T0 + 1 + CLIENT_TTL).await,
            ConnectionState::Expired
        );

        // Exchanged, but no tunnel server redeemed the tunnel ticket in time: failed, also
        // once the tunnel ticket is swept.
        let (_, client) = client_ticket(alice, desk, T0 + 2);
        let (failed_status, hash) = (client.status_id.clone(), client.id_hash);
        store.insert_client_ticket(client).await.unwrap();
        let (_, _, tunnel) = tunnel_ticket(alice, desk, T0 + 3, TUNNEL_TTL);
        assert!(
            store
                .exchange_client_ticket(&hash, T0 + 3, Some(tunnel), exchanged(T0 + 3))
                .await
                .unwrap()
        );
        let dead = T0 + 3 + TUNNEL_TTL;
        assert_eq!(
            state(store, &failed_status, alice, dead).await,
            ConnectionState::Failed
        );
        store.sweep_expired(dead).await.unwrap();
        assert_eq!(
            state(store, &failed_status, alice, dead).await,
            ConnectionState::Failed
        );
        // The unused ticket is swept at its expiry; the used ones are kept.
        assert_eq!(
            store
                .connection(&expired_status, alice, dead)
                .await
                .unwrap(),
            None
        );

        // Newest first, at most RECENT_CONNECTIONS.
        for n in 0..RECENT_CONNECTIONS {
            let (_, client) = client_ticket(alice, desk, dead + n);
            store.insert_client_ticket(client).await.unwrap();
        }
        let recent = store.recent_connections(alice, dead).await.unwrap();
        assert_eq!(recent.len(), usize::try_from(RECENT_CONNECTIONS).unwrap());
        assert_eq!(recent[0].created_at, dead + RECENT_CONNECTIONS - 1);
        assert!(
            recent
                .windows(2)
                .all(|pair| pair[0].created_at >= pair[1].created_at)
        );
    }
);
