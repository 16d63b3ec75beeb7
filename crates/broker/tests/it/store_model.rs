//! The store's data model on SQLite and on a real PostgreSQL server: users, groups,
//! memberships, login sessions, services, tunnel servers, the audit log, migrations.

use crate::support::fixtures::{
    PASSWORD_HASH, T0, alice_and_desk, client_ticket, direct_service, exchanged, tunnel_ticket,
    tunneled_service,
};
use crate::support::{TestDb, both_backends};
use portcullis_broker::store::{
    AuditEvent, Backend, NewTunnelServer, Protocol, Store, StoreError, TokenHash, Transport,
};

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Conflict(message)) => assert!(message.contains(needle), "{message}"),
        other => panic!("expected a conflict mentioning {needle:?}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(found)) => assert_eq!(found, what),
        other => panic!("expected NotFound({what:?}), got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "expected Invalid, got {result:?}"
    );
}

#[tokio::test]
async fn postgres_harness_gives_independent_databases() {
    let first = crate::support::postgres_url().await;
    let second = crate::support::postgres_url().await;
    assert_ne!(first, second);
    assert!(
        first.starts_with("postgres://postgres@127.0.0.1:"),
        "{first}"
    );
    let server = portcullis_testkit::postgres::server();
    assert!(server.dir().join("data").is_dir());
    assert!(server.port() > 0 && !server.version().is_empty());
    eprintln!(
        "PostgreSQL {} on port {}: initdb and start took {:?}",
        server.version(),
        server.port(),
        server.startup()
    );

    // Two stores on one URL share the database (as two brokers would) ...
    let a = Store::connect(&first).await.unwrap();
    let b = Store::connect(&first).await.unwrap();
    a.add_group("shared").await.unwrap();
    assert_eq!(b.list_groups().await.unwrap().len(), 1);
    // ... and another database is untouched.
    let c = Store::connect(&second).await.unwrap();
    assert!(c.list_groups().await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let error = Store::connect("mysql://root:hunter2@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)));
    assert!(!error.to_string().contains("hunter2"));
}

#[tokio::test]
async fn sqlite_uses_wal_and_creates_the_file() {
    let db = TestDb::sqlite().await;
    db.store.add_group("g").await.unwrap();
    let dir = db.dir().unwrap();
    assert!(dir.join("broker.db").is_file());
    assert!(dir.join("broker.db-wal").is_file(), "WAL journal expected");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_one_database() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.add_group("g").await.unwrap();
    assert_eq!(store.list_groups().await.unwrap().len(), 1);
}

both_backends!(connect_twice_and_ping, |db: TestDb| async move {
    db.store.ping().await.unwrap();
    // Migrations already applied: a second connect is a no-op, not an error.
    let again = db.connect_again().await;
    again.ping().await.unwrap();
    assert_eq!(again.backend(), db.store.backend());
    assert!(matches!(
        db.store.backend(),
        Backend::Sqlite | Backend::Postgres
    ));
});

both_backends!(users, |db: TestDb| async move {
    let store = &db.store;
    let bob = store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
    let alice = store
        .add_user("alice", PASSWORD_HASH, T0 + 1)
        .await
        .unwrap();
    assert_ne!(alice, bob);
    assert_conflict(store.add_user("alice", PASSWORD_HASH, T0).await, "alice");

    let found = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((found.id, found.created_at), (alice, T0 + 1));
    assert_eq!(found.password_hash, PASSWORD_HASH);
    assert!(
        !format!("{found:?}").contains("argon2id"),
        "Debug hides the hash"
    );
    assert_eq!(
        store.user_by_id(bob).await.unwrap().unwrap().username,
        "bob"
    );
    assert!(store.user_by_name("carol").await.unwrap().is_none());

    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
    store.set_password_hash(alice, new_hash).await.unwrap();
    assert_eq!(
        store
            .user_by_id(alice)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        new_hash
    );

    // Rules: Argon2id strings only, sane names.
    assert_invalid(store.add_user("carol", "hunter2", T0).await);
    assert_invalid(store.set_password_hash(alice, "hunter2").await);
    assert_invalid(store.add_user("", PASSWORD_HASH, T0).await);
    assert_invalid(store.add_user(" carol", PASSWORD_HASH, T0).await);
    assert_invalid(store.add_user("ca\nrol", PASSWORD_HASH, T0).await);
    assert_invalid(store.add_user(&"c".repeat(129), PASSWORD_HASH, T0).await);
    assert_not_found(
        store
            .set_password_hash(portcullis_broker::store::UserId(999), PASSWORD_HASH)
            .await,
        "user",
    );

    store.remove_user("bob", 0).await.unwrap();
    assert!(store.user_by_id(bob).await.unwrap().is_none());
    assert_not_found(store.remove_user("bob", 0).await, "user");
});

both_backends!(groups_and_memberships, |db: TestDb| async move {
    let store = &db.store;
    let alice = store.add_user("alice", PASSWORD_HASH, T0).await.unwrap();
    store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
    store.add_group("staff").await.unwrap();
    store.add_group("admins").await.unwrap();
    assert_conflict(store.add_group("staff").await, "staff");
    assert_invalid(store.add_group("").await);

    let groups: Vec<String> = store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(groups, ["admins", "staff"]);

    store.add_member("staff", "alice").await.unwrap();
    store.add_member("admins", "alice").await.unwrap();
    store.add_member("staff", "bob").await.unwrap();
    assert_conflict(store.add_member("staff", "alice").await, "alice");
    assert_not_found(store.add_member("nobody", "alice").await, "group");
    assert_not_found(store.add_member("staff", "carol").await, "user");

    assert_eq!(
        store.groups_of_user(alice).await.unwrap(),
        ["admins", "staff"]
    );
    assert_eq!(
        store.members_of_group("staff").await.unwrap(),
        ["alice", "bob"]
    );
    assert_not_found(store.members_of_group("nobody").await, "group");

    store.remove_member("staff", "alice", 0).await.unwrap();
    assert_eq!(store.groups_of_user(alice).await.unwrap(), ["admins"]);
    assert_not_found(store.remove_member("staff", "alice", 0).await, "membership");
    assert_not_found(store.remove_member("staff", "carol", 0).await, "user");
    assert_not_found(store.remove_member("nobody", "alice", 0).await, "group");

    // Removing a group removes its memberships.
    store.remove_group("admins", 0).await.unwrap();
    assert!(store.groups_of_user(alice).await.unwrap().is_empty());
    assert_not_found(store.remove_group("admins", 0).await, "group");
});

both_backends!(removing_a_user_cascades, |db: TestDb| async move {
    let store = &db.store;
    let (alice, desk) = alice_and_desk(store).await;
    let token = TokenHash::of(b"session token");
    store
        .create_login_session(&token, alice, T0, T0 + 3_600_000)
        .await
        .unwrap();
    let (_, client) = client_ticket(alice, desk, T0);
    let client_hash = client.id_hash;
    store.insert_client_ticket(client).await.unwrap();
    let (_, _, tunnel) = tunnel_ticket(alice, desk, T0, 30_000);
    let tunnel_hash = tunnel.id_hash;
    let (_, second) = client_ticket(alice, desk, T0);
    let second_hash = second.id_hash;
    store.insert_client_ticket(second).await.unwrap();
    assert!(
        store
            .exchange_client_ticket(&second_hash, T0, Some(tunnel), exchanged(T0))
            .await
            .unwrap()
    );

    store.remove_user("alice", 0).await.unwrap();
    assert!(
        store
            .login_session_user(&token, T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.members_of_group("staff").await.unwrap().is_empty());
    assert!(
        store
            .exchange_context(&client_hash, T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .tunnel_ticket_for_redemption(&tunnel_hash, T0)
            .await
            .unwrap()
            .is_none()
    );
    // The name is free again, under a new id.
    let again = store.add_user("alice", PASSWORD_HASH, T0).await.unwrap();
    assert_ne!(again, alice);
    assert!(store.groups_of_user(again).await.unwrap().is_empty());
});

both_backends!(login_sessions, |db: TestDb| async move {
    let store = &db.store;
    let alice = store.add_user("alice", PASSWORD_HASH, T0).await.unwrap();
    let token = TokenHash::of(b"token-1");
    let expires = T0 + 1000;
    store
        .create_login_session(&token, alice, T0, expires)
        .await
        .unwrap();
    assert_conflict(
        store.create_login_session(&token, alice, T0, expires).await,
        "token",
    );
    assert_invalid(
        store
            .create_login_session(&TokenHash::of(b"x"), alice, T0, T0)
            .await,
    );
    assert_not_found(
        store
            .create_login_session(
                &TokenHash::of(b"y"),
                portcullis_broker::store::UserId(12345),
                T0,
                expires,
            )
            .await,
        "user",
    );

    let user = store.login_session_user(&token, expires - 1).await.unwrap();
    assert_eq!(user.unwrap().id, alice);
    // Expired exactly at expires_at.
    assert!(
        store
            .login_session_user(&token, expires)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .login_session_user(&TokenHash::of(b"token-2"), T0)
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.delete_login_session(&token).await.unwrap());
    assert!(!store.delete_login_session(&token).await.unwrap());
    assert!(
        store
            .login_session_user(&token, T0)
            .await
            .unwrap()
            .is_none()
    );

    for n in 0..3u8 {
        store
            .create_login_session(&TokenHash::of(&[n]), alice, T0, expires)
            .await
            .unwrap();
    }
    assert_eq!(store.delete_login_sessions_of(alice).await.unwrap(), 3);
});

both_backends!(services, |db: TestDb| async move {
    let store = &db.store;
    store.add_group("staff").await.unwrap();
    store.add_group("admins").await.unwrap();

    let desk = store
        .add_service(direct_service("desk", &["staff", "admins", "staff"]), T0)
        .await
        .unwrap();
    let shell = store
        .add_service(tunneled_service("shell", "dc1", &["admins"]), T0 + 5)
        .await
        .unwrap();
    assert_conflict(
        store.add_service(direct_service("desk", &[]), T0).await,
        "desk",
    );

    let found = store.service_by_id(desk).await.unwrap().unwrap();
    assert_eq!(found.name, "desk");
    assert_eq!(
        (found.protocol, found.transport),
        (Protocol::Rdp, Transport::Direct)
    );
    assert_eq!(
        (found.host.as_str(), found.port),
        ("desk.example.internal", 3389)
    );
    assert_eq!(found.tunnel_group, None);
    assert_eq!(found.max_session_secs, 8 * 3600);
    assert_eq!(found.allowed_groups, ["admins", "staff"]);
    let shell_found = store.service_by_name("shell").await.unwrap().unwrap();
    assert_eq!(shell_found.id, shell);
    assert_eq!(shell_found.tunnel_group.as_deref(), Some("dc1"));
    assert_eq!(shell_found.created_at, T0 + 5);
    assert!(store.service_by_name("nope").await.unwrap().is_none());

    let listed = store.list_services().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], found);
    assert_eq!(listed[1], shell_found);

    // Rules.
    let mut tunneled_without_group = tunneled_service("t", "dc1", &[]);
    tunneled_without_group.tunnel_group = None;
    assert_invalid(store.add_service(tunneled_without_group, T0).await);
    let mut direct_with_group = direct_service("d", &[]);
    direct_with_group.tunnel_group = Some("dc1".to_owned());
    assert_invalid(store.add_service(direct_with_group, T0).await);
    let mut port_zero = direct_service("p", &[]);
    port_zero.port = 0;
    assert_invalid(store.add_service(port_zero, T0).await);
    let mut no_duration = direct_service("p", &[]);
    no_duration.max_session_secs = 0;
    assert_invalid(store.add_service(no_duration, T0).await);
    let mut no_host = direct_service("p", &[]);
    no_host.host = String::new();
    assert_invalid(store.add_service(no_host, T0).await);

    // An unknown group aborts the whole insertion.
    assert_not_found(
        store
            .add_service(direct_service("ghost", &["staff", "nobody"]), T0)
            .await,
        "group",
    );
    assert!(store.service_by_name("ghost").await.unwrap().is_none());

    // Removing a group revokes its grants; removing a service removes it.
    store.remove_group("admins", 0).await.unwrap();
    assert_eq!(
        store
            .service_by_id(desk)
            .await
            .unwrap()
            .unwrap()
            .allowed_groups,
        ["staff"]
    );
    assert!(
        store
            .service_by_id(shell)
            .await
            .unwrap()
            .unwrap()
            .allowed_groups
            .is_empty()
    );
    store.remove_service("shell", 0).await.unwrap();
    assert!(store.service_by_id(shell).await.unwrap().is_none());
    assert_not_found(store.remove_service("shell", 0).await, "service");
});

both_backends!(service_access_follows_groups, |db: TestDb| async move {
    let store = &db.store;
    let alice = store.add_user("alice", PASSWORD_HASH, T0).await.unwrap();
    let bob = store.add_user("bob", PASSWORD_HASH, T0).await.unwrap();
    for group in ["staff", "admins", "guests"] {
        store.add_group(group).await.unwrap();
    }
    store.add_member("staff", "alice").await.unwrap();
    store.add_member("admins", "alice").await.unwrap();
    store.add_member("guests", "bob").await.unwrap();
    let desk = store
        .add_service(direct_service("desk", &["staff", "admins"]), T0)
        .await
        .unwrap();
    let admin = store
        .add_service(direct_service("admin", &["admins"]), T0)
        .await
        .unwrap();
    let kiosk = store
        .add_service(direct_service("kiosk", &["guests"]), T0)
        .await
        .unwrap();
    store
        .add_service(direct_service("nobody", &[]), T0)
        .await
        .unwrap();

    let names = |services: Vec<portcullis_broker::store::Service>| -> Vec<String> {
        services.into_iter().map(|s| s.name).collect()
    };
    // Granted through two groups, listed once.
    assert_eq!(
        names(store.services_for_user(alice).await.unwrap()),
        ["admin", "desk"]
    );
    assert_eq!(
        names(store.services_for_user(bob).await.unwrap()),
        ["kiosk"]
    );
    let listed = store.services_for_user(alice).await.unwrap();
    assert_eq!(listed[1].allowed_groups, ["admins", "staff"]);

    assert!(store.user_may_use_service(alice, desk).await.unwrap());
    assert!(store.user_may_use_service(alice, admin).await.unwrap());
    assert!(!store.user_may_use_service(alice, kiosk).await.unwrap());
    assert!(!store.user_may_use_service(bob, desk).await.unwrap());

    store.remove_member("admins", "alice", 0).await.unwrap();
    assert!(store.user_may_use_service(alice, desk).await.unwrap());
    assert!(!store.user_may_use_service(alice, admin).await.unwrap());
    assert_eq!(
        names(store.services_for_user(alice).await.unwrap()),
        ["desk"]
    );
});

both_backends!(tunnel_servers, |db: TestDb| async move {
    let store = &db.store;
    let new = |name: &str, token: &[u8], legacy: bool, group: &str| NewTunnelServer {
        name: name.to_owned(),
        public_address: format!("{name}.example.net:7777"),
        token_hash: TokenHash::of(token),
        legacy,
        group: group.to_owned(),
    };
    let t1 = store
        .add_tunnel_server(new("t1", b"sk-one", false, "dc1"), T0)
        .await
        .unwrap();
    store
        .add_tunnel_server(new("t2", b"sk-two", true, "dc1"), T0)
        .await
        .unwrap();
    store
        .add_tunnel_server(new("t3", b"sk-three", false, "dc2"), T0)
        .await
        .unwrap();
    assert_conflict(
        store
            .add_tunnel_server(new("t1", b"sk-other", false, "dc1"), T0)
            .await,
        "t1",
    );
    assert_conflict(
        store
            .add_tunnel_server(new("t4", b"sk-one", false, "dc1"), T0)
            .await,
        "token",
    );
    assert_invalid(
        store
            .add_tunnel_server(new("t5", b"sk-5", false, ""), T0)
            .await,
    );

    let found = store
        .tunnel_server_by_token_hash(&TokenHash::of(b"sk-one"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, t1);
    assert_eq!(found.name, "t1");
    assert_eq!(found.public_address, "t1.example.net:7777");
    assert!(!found.legacy);
    assert_eq!(found.group, "dc1");
    let legacy = store
        .tunnel_server_by_token_hash(&TokenHash::of(b"sk-two"))
        .await
        .unwrap()
        .unwrap();
    assert!(legacy.legacy);
    assert!(
        store
            .tunnel_server_by_token_hash(&TokenHash::of(b"sk-wrong"))
            .await
            .unwrap()
            .is_none()
    );

    let in_dc1: Vec<String> = store
        .tunnel_servers_in_group("dc1")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(in_dc1, ["t1", "t2"]);
    assert_eq!(store.list_tunnel_servers().await.unwrap().len(), 3);

    store.remove_tunnel_server("t1").await.unwrap();
    assert!(
        store
            .tunnel_server_by_token_hash(&TokenHash::of(b"sk-one"))
            .await
            .unwrap()
            .is_none()
    );
    assert_not_found(store.remove_tunnel_server("t1").await, "tunnel server");
});

both_backends!(audit_log, |db: TestDb| async move {
    let store = &db.store;
    let event = |n: i64| AuditEvent {
        actor: None,
        at: T0 + n,
        kind: "test.event".to_owned(),
        username: (n % 2 == 0).then(|| "alice".to_owned()),
        service: Some("desk".to_owned()),
        source_ip: Some("192.0.2.1".to_owned()),
        detail: format!(r#"{{"n":{n}}}"#),
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(store.audit(event(n)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let tail = store.audit_tail(3).await.unwrap();
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[2].id, ids[4], "newest last");
    assert_eq!(tail[0].event, event(2));

    let after = store.audit_after(ids[1], 2).await.unwrap();
    assert_eq!(
        after.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[2], ids[3]]
    );
    assert!(store.audit_after(ids[4], 10).await.unwrap().is_empty());

    // The detail must be a JSON object; empty stands for {}.
    let mut bad = event(9);
    bad.detail = "[1, 2]".to_owned();
    assert_invalid(store.audit(bad).await);
    let mut not_json = event(9);
    not_json.detail = "n=1".to_owned();
    assert_invalid(store.audit(not_json).await);
    let mut empty = event(9);
    empty.detail = String::new();
    empty.username = None;
    store.audit(empty).await.unwrap();
    let last = store.audit_tail(1).await.unwrap().pop().unwrap();
    assert_eq!(last.event.detail, "{}");
    assert_eq!(last.event.username, None);

    // Pruning deletes what is strictly older than the bound, and nothing else.
    assert_eq!(store.prune_audit(T0 + 3).await.unwrap(), 3);
    let left: Vec<i64> = store
        .audit_tail(10)
        .await
        .unwrap()
        .iter()
        .map(|stored| stored.event.at)
        .collect();
    assert_eq!(left, [T0 + 3, T0 + 4, T0 + 9]);
    assert_eq!(store.prune_audit(T0 + 3).await.unwrap(), 0);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_starting_together_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        crate::support::sqlite_url(dir.path()),
        crate::support::postgres_url().await,
    ] {
        // Eight at once: enough for a process to lose the race on several migrations.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for task in tasks {
            stores.push(task.await.unwrap().unwrap());
        }
        stores[0].add_group("g").await.unwrap();
        assert_eq!(stores[7].list_groups().await.unwrap().len(), 1);
    }
}

both_backends!(oidc_users_and_disabled_accounts, |db: TestDb| async move {
    let store = &db.store;
    store.add_group("staff").await.unwrap();
    store.add_user("carol", PASSWORD_HASH, T0).await.unwrap();
    let alice = store
        .add_oidc_user("alice", "Corp", "sub-1", T0)
        .await
        .unwrap();
    let found = store.user_by_oidc("Corp", "sub-1").await.unwrap().unwrap();
    assert_eq!(found.id, alice);
    let link = found.oidc.unwrap();
    assert_eq!(
        (link.provider.as_str(), link.subject.as_str()),
        ("Corp", "sub-1")
    );
    assert!(
        store
            .user_by_name("carol")
            .await
            .unwrap()
            .unwrap()
            .oidc
            .is_none()
    );
    assert!(
        store
            .user_by_oidc("Other", "sub-1")
            .await
            .unwrap()
            .is_none()
    );
    assert_conflict(
        store.add_oidc_user("carol", "Corp", "sub-2", T0).await,
        "carol",
    );
    assert_conflict(store.add_oidc_user("bob", "Corp", "sub-1", T0).await, "bob");
    // The same subject at another provider is another user.
    store
        .add_oidc_user("bob", "Other", "sub-1", T0)
        .await
        .unwrap();

    let missing = store
        .set_user_groups(alice, &["staff".to_owned(), "nope".to_owned()], T0)
        .await
        .unwrap()
        .0;
    assert_eq!(missing, ["nope"]);
    assert_eq!(store.groups_of_user(alice).await.unwrap(), ["staff"]);

    let token = TokenHash::of(b"oidc-session");
    store
        .create_login_session(&token, alice, T0, T0 + 1000)
        .await
        .unwrap();
    store
        .set_user_disabled("alice", Some(T0 + 1), None)
        .await
        .unwrap();
    assert!(
        store
            .login_session_user(&token, T0 + 2)
            .await
            .unwrap()
            .is_none()
    );
    let disabled = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(disabled.disabled_at, Some(T0 + 1));
    store.set_user_disabled("alice", None, None).await.unwrap();
    assert_eq!(
        store
            .user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .disabled_at,
        None
    );
    assert_not_found(
        store.set_user_disabled("nobody", Some(T0), None).await,
        "user",
    );
});
