//! The user API behind the portal over real HTTPS: sign-in (with the production Argon2id
//! parameters once), the session cookie and its attributes, rate limiting, sign-out,
//! session expiry, and what a user may not see.

use std::time::Duration;

use crate::support::broker::{PASSWORD, Session, TestBroker};
use portcullis_broker::password::hash_password;
use reqwest::StatusCode;
use serde_json::json;

const BAD_CREDENTIALS: &str = "invalid user name or password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_with_a_production_hash_and_gets_a_strict_cookie() {
    let broker = TestBroker::start().await;
    let hash = tokio::task::spawn_blocking(|| hash_password(PASSWORD).unwrap())
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    broker
        .store()
        .add_user("carol", &hash, broker.clock.now())
        .await
        .unwrap();

    let session = broker.login("carol", PASSWORD).await;
    // 32 random bytes in standard base64.
    assert_eq!(session.token.len(), 44, "{}", session.set_cookie);
    let mut attributes = session.attributes();
    attributes.sort();
    assert_eq!(
        attributes,
        [
            "HttpOnly",
            "Max-Age=28800",
            "Path=/",
            "SameSite=Strict",
            "Secure"
        ]
    );
    assert_eq!(
        broker.services(&session).await,
        Vec::<serde_json::Value>::new()
    );

    // A second sign-in is a second, independent session.
    let other = broker.login("carol", PASSWORD).await;
    assert_ne!(other.token, session.token);
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.kind, "login");
    assert_eq!(events[0].event.source_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_cookie_is_secure_and_the_client_is_the_forwarded_one() {
    // Behind a TLS-terminating proxy the broker itself speaks HTTP, but browsers still
    // reach it over https: the cookie stays `Secure`. The proxy (here: loopback) is
    // trusted, so its X-Forwarded-For names the client.
    let broker = TestBroker::builder()
        .plain_http()
        .config(|config| {
            config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            config.limits.login_attempts_per_minute_per_ip = 2;
        })
        .start()
        .await;
    assert!(broker.base.starts_with("http://127.0.0.1:"));
    broker.add_user("alice", &["staff"]).await;
    let login_from = |client: &'static str, password: &'static str| {
        broker
            .http
            .post(broker.url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.66, {client}"))
            .json(&json!({ "username": "alice", "password": password }))
            .send()
    };
    let reply = login_from("198.51.100.7", PASSWORD).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let cookie = reply.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.kind, "login");
    assert_eq!(
        events[0].event.source_ip.as_deref(),
        Some("198.51.100.7"),
        "the last address the proxy recorded, not the one the client forged"
    );

    // The per-IP login budget (2 here) is per forwarded client, not one for the proxy.
    for _ in 0..2 {
        let reply = login_from("198.51.100.8", "guess").await.unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    let reply = login_from("198.51.100.8", "guess").await.unwrap();
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
    let reply = login_from("198.51.100.9", PASSWORD).await.unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::OK,
        "another client is not affected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let broker = TestBroker::start().await;
    broker.add_user("alice", &["staff"]).await;
    let reply = broker
        .http
        .post(broker.url("/api/login"))
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let events = broker.store().audit_tail(1).await.unwrap();
    assert_eq!(events[0].event.source_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let broker = TestBroker::start().await;
    broker.world().await;

    for (username, password) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let reply = broker.try_login(username, password).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{username}");
        assert_eq!(
            reply.json(),
            json!({ "error": BAD_CREDENTIALS }),
            "{username}"
        );
        assert!(reply.header("set-cookie").is_none(), "{username}");
        let events = broker.store().audit_tail(1).await.unwrap();
        assert_eq!(events[0].event.kind, "login.failed");
        assert_eq!(events[0].event.username.as_deref(), Some(username));
    }

    // Not a login request at all.
    let reply = broker
        .post_json("/api/login", &json!({ "user": "alice" }), None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({ "error": r#"invalid request: expected {"username", "password"}"# })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_user() {
    let broker = TestBroker::start().await;
    broker.world().await;

    // Five attempts a minute per user name (limits.login_attempts_per_minute_per_user).
    for attempt in 1..=5 {
        let reply = broker.try_login("alice", "guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // The sixth is refused before the password is even looked at, the right one too.
    let reply = broker.try_login("alice", PASSWORD).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(
        reply.json(),
        json!({ "error": format!("too many login attempts, retry in {retry_after} s") })
    );

    // Other users are not affected, and a successful login clears a user's count.
    for _ in 0..4 {
        let reply = broker.try_login("bob", "guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    broker.login("bob", PASSWORD).await;
    for _ in 0..5 {
        let reply = broker.try_login("bob", "guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_a_valid_session() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker.connect(&alice, world.desk).await;
    let not_signed_in = json!({ "error": "not signed in" });

    let forged = Session {
        token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        set_cookie: String::new(),
    };
    for session in [None, Some(&forged)] {
        let reply = broker.get("/api/services", session).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json(), not_signed_in);
        let reply = broker
            .post_json(
                &format!("/api/services/{}/connect", world.desk.0),
                &json!({}),
                session,
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json(), not_signed_in);
        let reply = broker.get(&launch.status_url, session).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json(), not_signed_in);
    }

    // The session expires with the (test) clock: 8 hours by default.
    broker.clock.advance(Duration::from_secs(8 * 3600));
    let reply = broker.get("/api/services", Some(&alice)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let other = broker.login("alice", PASSWORD).await;

    let reply = broker
        .post_json("/api/logout", &json!({}), Some(&alice))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({}));
    let cleared = Session::from_reply(&reply);
    assert_eq!(cleared.token, "");
    assert!(cleared.attributes().contains(&"Max-Age=0".to_owned()));

    let reply = broker.get("/api/services", Some(&alice)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Only that session: the other one is still signed in.
    assert_eq!(broker.services(&other).await.len(), 3);
    // Logging out without a session is harmless.
    let reply = broker.post_json("/api/logout", &json!({}), None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_reach_what_is_not_theirs() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let bob = broker.login("bob", PASSWORD).await;
    let not_found = json!({ "error": "not found" });

    // A service of another group, and one that does not exist: the same 404.
    for id in [world.vault.0, 9999] {
        let reply = broker.try_connect(&alice, id).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "service {id}");
        assert_eq!(reply.json(), not_found);
    }
    // Not a service id at all (recorded: axum's path rejection).
    let reply = broker
        .post_json("/api/services/desk/connect", &json!({}), Some(&alice))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Bob cannot follow Alice's connection.
    let launch = broker.connect(&alice, world.desk).await;
    let reply = broker.get(&launch.status_url, Some(&bob)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json(), not_found);
    assert_eq!(
        broker.connection_state(&alice, &launch).await,
        json!({ "state": "waiting" })
    );
    let names: Vec<String> = broker
        .services(&bob)
        .await
        .iter()
        .map(|service| service["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["vault"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_needs_a_json_body() {
    let broker = TestBroker::start().await;
    broker.add_user("alice", &["staff"]).await;
    let client = crate::support::broker::http_client(Some(&broker.data_dir().join("tls/cert.pem")));
    let form = client
        .post(broker.url("/api/login"))
        .header("content-type", "text/plain")
        .body(format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#));
    let reply = crate::support::broker::send(form).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.header("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_login_is_refused_with_413() {
    // Plain HTTP (as behind a TLS-terminating proxy), to speak raw HTTP/1.1.
    let broker = TestBroker::builder().plain_http().start().await;
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: broker.example\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 + 1
    );
    // Refused from the headers alone; the connection is closed (the body was not read).
    let answer = crate::support::broker::raw_http(broker.addr(), &head).await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"request body too large"}"#),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_and_an_openid_connect_user_cannot_sign_in_with_a_password() {
    let broker = TestBroker::start().await;
    broker.world().await;
    let session = broker.login("alice", PASSWORD).await;

    // Disabled: the session ends at once, and the password no longer signs in.
    broker
        .store()
        .set_user_disabled("alice", Some(broker.state().now()), None)
        .await
        .unwrap();
    let reply = broker.get("/api/services", Some(&session)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = broker.try_login("alice", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json(), json!({ "error": BAD_CREDENTIALS }));
    broker
        .store()
        .set_user_disabled("alice", None, None)
        .await
        .unwrap();
    broker.login("alice", PASSWORD).await;

    // A user of an OpenID Connect provider has no password (not an error: refused as any).
    broker
        .store()
        .add_oidc_user("dave", "Corp", "sub-dave", broker.state().now())
        .await
        .unwrap();
    for password in ["", PASSWORD] {
        let reply = broker.try_login("dave", password).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{password:?}");
    }
}
