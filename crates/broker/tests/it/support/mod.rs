//! Shared test support for the broker: databases on both backends, and a macro that runs
//! one test body on each.
//!
//! - [`postgres_url`]: a fresh database on a real PostgreSQL server (see [`postgres`]),
//!   shared by every test of the process; pass the URL to several stores or broker
//!   processes to have them share one database.
//! - [`sqlite_url`]: a SQLite file in a directory the test owns.
//! - [`TestDb`]: a connected [`Store`] on either backend, with its URL.
//! - [`both_backends!`]: `both_backends!(name, |db| async move { … })` makes the tests
//!   `name::sqlite` and `name::postgres` (filter with `cargo test sqlite` or `postgres`).
//! - [`broker`]: real brokers on loopback and the parties that talk to them over HTTP(S),
//!   for the `http_*` tests.

#![allow(unreachable_pub)]

pub mod broker;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use portcullis_broker::store::{Backend, Store};
use tempfile::TempDir;

/// The URL of a fresh database on the process's PostgreSQL test server.
pub async fn postgres_url() -> String {
    portcullis_testkit::postgres::create_database().await
}

/// The URL of the SQLite database file `broker.db` in `dir` (created on connect).
pub fn sqlite_url(dir: &Path) -> String {
    portcullis_broker::config::DatabaseUrl::sqlite(&dir.join("broker.db"))
        .expose()
        .to_owned()
}

/// A fresh database and a store connected to it.
pub struct TestDb {
    /// The database URL; connect more stores (or brokers) to it to share the database.
    pub url: String,
    /// A store on it, migrated.
    pub store: Store,
    /// Keeps a SQLite database's directory alive.
    dir: Option<Arc<TempDir>>,
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = sqlite_url(dir.path());
        let store = Store::connect(&url).await.expect("connecting to SQLite");
        assert_eq!(store.backend(), Backend::Sqlite);
        Self {
            url,
            store,
            dir: Some(Arc::new(dir)),
        }
    }

    /// A fresh database on the PostgreSQL test server.
    pub async fn postgres() -> Self {
        let url = postgres_url().await;
        let store = Store::connect(&url)
            .await
            .expect("connecting to PostgreSQL");
        assert_eq!(store.backend(), Backend::Postgres);
        Self {
            url,
            store,
            dir: None,
        }
    }

    /// The directory of a SQLite database.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref().map(TempDir::path)
    }

    /// Another store (its own pool, as a second broker would have) on the same database.
    pub async fn connect_again(&self) -> Store {
        Store::connect(&self.url).await.expect("connecting again")
    }
}

/// Runs `body` on `db`; gives the closure of [`both_backends!`] its argument type.
pub async fn run<F, Fut>(db: TestDb, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    // A body that uses only `db.store` captures only that field (closures capture
    // disjoint fields), which would drop the SQLite directory under the running test.
    let keep_dir = db.dir.clone();
    body(db).await;
    drop(keep_dir);
}

/// `both_backends!(name, |db| async move { … })`: the same test body, with a fresh
/// [`TestDb`], as `name::sqlite` and `name::postgres` on a multi-threaded runtime.
macro_rules! both_backends {
    ($(#[$meta:meta])* $name:ident, $body:expr) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::support::TestDb::sqlite().await;
                $crate::support::run(db, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::support::TestDb::postgres().await;
                $crate::support::run(db, $body).await;
            }
        }
    };
}
pub(crate) use both_backends;

/// Small builders for store tests.
pub mod fixtures {
    use portcullis_broker::store::{
        AuditEvent, NewClientTicket, NewService, NewTunnelTicket, Protocol, Readiness, ServiceId,
        Store, Transport, UserId,
    };
    use portcullis_broker::tickets::crypto::{seal_secret, ticket_hash};
    use portcullis_proto::{Scrambler, SharedSecret, TicketId};

    /// A well-formed Argon2id PHC string (the store checks the form only).
    pub const PASSWORD_HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    /// A point in time, Unix milliseconds (2025-01-01T00:00:00Z).
    pub const T0: i64 = 1_735_689_600_000;

    /// A client ticket's lifetime.
    pub const CLIENT_TTL: i64 = 60_000;

    /// A direct RDP service granted to `groups`.
    pub fn direct_service(name: &str, groups: &[&str]) -> NewService {
        NewService {
            name: name.to_owned(),
            host: "desk.example.internal".to_owned(),
            port: 3389,
            protocol: Protocol::Rdp,
            transport: Transport::Direct,
            tunnel_group: None,
            max_session_secs: 8 * 3600,
            readiness: Readiness::Tcp,
            allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// A tunneled SSH service behind tunnel group `tunnel_group`, granted to `groups`.
    pub fn tunneled_service(name: &str, tunnel_group: &str, groups: &[&str]) -> NewService {
        NewService {
            name: name.to_owned(),
            host: "10.0.0.7".to_owned(),
            port: 22,
            protocol: Protocol::Ssh,
            transport: Transport::Tunneled,
            tunnel_group: Some(tunnel_group.to_owned()),
            max_session_secs: 3600,
            readiness: Readiness::Tcp,
            allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// User `alice` in group `staff`, and the tunneled service `desk` (tunnel group `dc1`)
    /// granted to `staff`.
    pub async fn alice_and_desk(store: &Store) -> (UserId, ServiceId) {
        let user = store.add_user("alice", PASSWORD_HASH, T0).await.unwrap();
        store.add_group("staff").await.unwrap();
        store.add_member("staff", "alice").await.unwrap();
        let service = store
            .add_service(tunneled_service("desk", "dc1", &["staff"]), T0)
            .await
            .unwrap();
        (user, service)
    }

    /// A fresh client ticket id and its row, valid for [`CLIENT_TTL`] from `now`.
    pub fn client_ticket(
        user: UserId,
        service: ServiceId,
        now: i64,
    ) -> (TicketId, NewClientTicket) {
        let id = TicketId::generate().unwrap();
        let new = NewClientTicket {
            id_hash: ticket_hash(&id),
            status_id: Scrambler::generate().unwrap().as_str().to_owned(),
            user_id: user,
            service_id: service,
            scrambler: "scrambler".to_owned(),
            client_os: Some("linux".to_owned()),
            created_at: now,
            expires_at: now + CLIENT_TTL,
            credential: None,
        };
        (id, new)
    }

    /// The audit event a test exchange at `at` records.
    pub fn exchanged(at: i64) -> AuditEvent {
        AuditEvent {
            actor: None,
            at,
            kind: "ticket.exchanged".to_owned(),
            username: Some("alice".to_owned()),
            service: Some("desk".to_owned()),
            source_ip: Some("192.0.2.1".to_owned()),
            detail: String::new(),
        }
    }

    /// A fresh tunnel ticket id, its secret, and its row, valid for `ttl` from `now`.
    pub fn tunnel_ticket(
        user: UserId,
        service: ServiceId,
        now: i64,
        ttl: i64,
    ) -> (TicketId, SharedSecret, NewTunnelTicket) {
        let id = TicketId::generate().unwrap();
        let secret = SharedSecret::generate().unwrap();
        let new = NewTunnelTicket {
            id_hash: ticket_hash(&id),
            secret_enc: seal_secret(&id, &secret).unwrap(),
            target_host: "10.0.0.7".to_owned(),
            target_port: 22,
            service_id: service,
            user_id: user,
            tunnel_group: "dc1".to_owned(),
            max_session_secs: 3600,
            created_at: now,
            expires_at: now + ttl,
            issued_to_legacy: false,
        };
        (id, secret, new)
    }
}
