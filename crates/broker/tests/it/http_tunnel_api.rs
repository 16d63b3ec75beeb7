//! The tunnel-server API over real HTTPS: a tunneled exchange, then `start` as the tunnel
//! server with the launcher's handshake proof, `stop` with close accounting, and every
//! refusal — always HTTP 403 `{"error": "Access denied"}`, never a 500
//! (docs/protocol.md §7, and §9 differences 2, 4 and 7).

use std::net::IpAddr;
use std::time::Duration;

use crate::support::broker::{
    Launcher, PASSWORD, TestBroker, assert_access_denied, metric, proof_for, raw_http, wrong_proof,
};
use portcullis_broker::store::{NewTunnelServer, TokenHash};
use portcullis_proto::TicketId;
use portcullis_proto::api::{Remote, StartProof};
use portcullis_proto::hex;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The detail of the newest audit event of `kind`.
async fn last_audit(broker: &TestBroker, kind: &str) -> Value {
    let events = broker.store().audit_tail(50).await.unwrap();
    let event = events
        .iter()
        .rev()
        .find(|event| event.event.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} event"));
    serde_json::from_str(&event.event.detail).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_ticket_is_redeemed_once_with_the_proof_and_the_session_accounted() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;

    // The launcher's side: params name the tunnel server and carry a tunnel ticket, but
    // neither the target nor the shared secret.
    let launch = broker.connect(&alice, world.shell).await;
    let launcher = Launcher::portcullis();
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    let tunnel_ticket = opened.tunnel_ticket();
    assert_eq!(
        *opened.params(),
        json!({
            "name": "shell",
            "transport": "tunneled",
            "tunnel": {
                "host": "tunnel-dc1.example",
                "port": 7443,
                "ticket": tunnel_ticket.expose(),
                // The time to open the first connection (tickets.tunnel_startup_secs), not
                // the tunnel ticket's lifetime: OpenUDS 5 launchers stay at least that long.
                "startup_time": 30_000,
                "verify_ssl": true,
                "tls": false,
                "protocol": "v1",
            },
            "protocol": "ssh",
        })
    );
    let params_text = String::from_utf8(opened.payload.params().to_vec()).unwrap();
    assert!(!params_text.contains(opened.secret.to_hex().as_str()));
    assert_ne!(tunnel_ticket, *launch.ticket());

    // The tunnel server's side: `start` with the launcher's proof.
    let proof = proof_for(&opened.tunnel_secret(), &tunnel_ticket);
    let reply = world.dc1.start(&broker, &tunnel_ticket, Some(&proof)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answer = reply.json();
    assert!(answer.get("result").is_none(), "not wrapped: {answer}");
    assert_eq!(answer["algorithm"], "AES-256-GCM");
    let start = world.dc1.open_start(&reply, &tunnel_ticket);
    assert_eq!(
        start.remotes,
        [Remote {
            host: "127.0.0.1".to_owned(),
            port: world.target.port
        }]
    );
    // A v1 tunnel server gets the tunnel secret derived from the KEM secret, never the KEM
    // secret itself, which also keys the payload envelope (§6.7).
    assert!(start.shared_secret == opened.tunnel_secret());
    assert!(start.shared_secret != opened.secret);
    let started = last_audit(&broker, "tunnel.started").await;
    assert_eq!(started["tunnel_server"], "tunnel-dc1");
    assert_eq!(started["proof"], true);

    // One use: the same ticket with a fresh, valid proof is refused.
    let again = world
        .dc1
        .start(
            &broker,
            &tunnel_ticket,
            Some(&proof_for(&opened.secret, &tunnel_ticket)),
        )
        .await;
    assert_access_denied(&again);

    // Only the tunnel server that started the session may report its end.
    assert_access_denied(&world.dc2.stop(&broker, &start.notify, 1, 1).await);

    // The session ends: close accounting lands in the audit log (difference 7), once.
    broker.clock.advance(Duration::from_millis(1234));
    let stop = world
        .dc1
        .stop(&broker, &start.notify, 4096, 1_000_000)
        .await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.body);
    assert_eq!(stop.json(), json!({}));
    let events = broker.store().audit_tail(1).await.unwrap();
    let stopped = &events[0].event;
    assert_eq!(stopped.kind, "tunnel.stopped");
    assert_eq!(stopped.username.as_deref(), Some("alice"));
    assert_eq!(stopped.service.as_deref(), Some("shell"));
    assert_eq!(
        serde_json::from_str::<Value>(&stopped.detail).unwrap(),
        json!({
            "tunnel_server": "tunnel-dc1",
            "sent": 4096,
            "recv": 1_000_000,
            "duration_ms": 1234,
        })
    );
    assert_access_denied(&world.dc1.stop(&broker, &start.notify, 1, 1).await);
    // Neither the tunnel ticket nor an unknown ticket is a notify ticket.
    assert_access_denied(&world.dc1.stop(&broker, &tunnel_ticket, 1, 1).await);
    assert_access_denied(
        &world
            .dc1
            .stop(&broker, &TicketId::generate().unwrap(), 1, 1)
            .await,
    );

    let metrics = broker.metrics().await;
    assert_eq!(metric(&metrics, "portcullis_tunnel_redemptions_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proofs_never_burn_a_ticket_and_are_limited_per_source_and_ticket() {
    let broker = TestBroker::builder()
        .config(|config| config.tickets.wrong_proofs_per_minute_per_source = 3)
        .start()
        .await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();

    // Wrong proofs from different sources (someone who saw the ticket id on the wire),
    // within the ticket's budget of 5, then the right one: redeemed. A wrong proof never
    // burns the ticket.
    let first = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    for source in 1..=4u8 {
        let reply = world
            .dc1
            .start_from(
                &broker,
                &first.ticket,
                IpAddr::from([192, 0, 2, source]),
                Some(&wrong_proof(&first.ticket)),
            )
            .await;
        assert_access_denied(&reply);
    }
    let start = world
        .dc1
        .redeem(
            &broker,
            &first.ticket,
            Some(&proof_for(&first.secret, &first.ticket)),
        )
        .await;
    assert!(start.shared_secret == first.secret);
    let audited = last_audit(&broker, "tunnel.bad_proof").await;
    assert_eq!(audited["tunnel_server"], "tunnel-dc1");

    // A proof for another ticket, with the randoms swapped, or made with the KEM secret
    // instead of the tunnel secret, is just as wrong.
    let second = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    let for_other_ticket = proof_for(&second.secret, &first.ticket);
    let good = proof_for(&second.secret, &second.ticket);
    let swapped = StartProof {
        client_random: good.server_random,
        server_random: good.client_random,
        proof: good.proof,
    };
    let with_kem_secret = proof_for(&second.kem_secret, &second.ticket);
    for proof in [for_other_ticket, swapped, with_kem_secret] {
        assert_access_denied(&world.dc1.start(&broker, &second.ticket, Some(&proof)).await);
    }

    // That was the third wrong proof from the test's source address this minute: its
    // next request is refused unchecked, even with the right proof, and consumes nothing.
    assert_access_denied(&world.dc1.start(&broker, &second.ticket, Some(&good)).await);
    // The same ticket from another address is checked, and redeemed.
    let start = world
        .dc1
        .start_from(
            &broker,
            &second.ticket,
            IpAddr::from([192, 0, 2, 99]),
            Some(&good),
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);

    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="bad_proof"}"#
        ),
        7.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="proof_limit"}"#
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "portcullis_tunnel_redemptions_total"), 2.0);

    // A ticket that used up its budget is refused unchecked for the rest of the minute,
    // from any address, and is not burnt: the next minute the right proof redeems it.
    let third = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    for source in 10..15u8 {
        let reply = world
            .dc1
            .start_from(
                &broker,
                &third.ticket,
                IpAddr::from([192, 0, 2, source]),
                Some(&wrong_proof(&third.ticket)),
            )
            .await;
        assert_access_denied(&reply);
    }
    let good = proof_for(&third.secret, &third.ticket);
    let fresh = IpAddr::from([198, 51, 100, 1]);
    assert_access_denied(
        &world
            .dc1
            .start_from(&broker, &third.ticket, fresh, Some(&good))
            .await,
    );
    broker.clock.advance(Duration::from_secs(61));
    let start = world
        .dc1
        .start_from(&broker, &third.ticket, fresh, Some(&good))
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_wrong_proof_flood_from_many_addresses_does_not_stop_another_users_open() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    broker.add_user("carol", &["staff"]).await;
    let alice = broker.login("alice", PASSWORD).await;
    let carol = broker.login("carol", PASSWORD).await;
    let launcher = Launcher::portcullis();

    // Alice floods the tunnel server with wrong proofs for her own tickets: 150 in all,
    // ten from each of fifteen addresses, more than the tunnel server's budget of 100.
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(broker.launch_tunneled(&alice, world.shell, &launcher).await);
    }
    for source in 1..=15u8 {
        for attempt in 0..10usize {
            let ticket = &tickets[attempt % tickets.len()].ticket;
            let reply = world
                .dc1
                .start_from(
                    &broker,
                    ticket,
                    IpAddr::from([203, 0, 113, source]),
                    Some(&wrong_proof(ticket)),
                )
                .await;
            assert_access_denied(&reply);
        }
    }
    // Carol's correct Open, from an address of her own, goes through.
    let hers = broker.launch_tunneled(&carol, world.shell, &launcher).await;
    let reply = world
        .dc1
        .start_from(
            &broker,
            &hers.ticket,
            IpAddr::from([198, 51, 100, 7]),
            Some(&proof_for(&hers.secret, &hers.ticket)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Alice spent her own budget: only its worth of wrong proofs was checked and audited.
    let metrics = broker.metrics().await;
    let checked = metric(
        &metrics,
        r#"portcullis_tunnel_redemptions_refused_total{reason="bad_proof"}"#,
    );
    assert!(checked <= 20.0, "{checked} wrong proofs checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_server_needs_the_proof_and_a_legacy_server_does_not() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;

    // A v1 tunnel server without a proof is refused (and that counts as a wrong proof,
    // which does not consume the ticket).
    let v1 = broker
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;
    assert_access_denied(&world.dc1.start(&broker, &v1.ticket, None).await);
    world
        .dc1
        .redeem(
            &broker,
            &v1.ticket,
            Some(&proof_for(&v1.secret, &v1.ticket)),
        )
        .await;

    // An OpenUDS 5 launcher is sent to the legacy tunnel server of `old-app`…
    let launch = broker.connect(&alice, world.old_app).await;
    let launcher = Launcher::openuds5();
    let opened = launcher.exchange_verified(&broker, &launch.url).await;
    assert!(opened.payload.payload_signature().is_none());
    let tunnel = &opened.params()["tunnel"];
    assert_eq!(tunnel["host"], "tunnel-legacy.example");
    assert_eq!(tunnel["port"], 7443);
    assert_eq!(tunnel["protocol"], "openuds5");
    let ticket = opened.tunnel_ticket();

    // …which redeems without a proof (it cannot make one), once.
    let start = world.legacy.redeem(&broker, &ticket, None).await;
    assert_eq!(start.remotes[0].port, world.target.port);
    assert!(start.shared_secret == opened.secret);
    assert_eq!(last_audit(&broker, "tunnel.started").await["proof"], false);
    assert_access_denied(&world.legacy.start(&broker, &ticket, None).await);
    let stop = world.legacy.stop(&broker, &start.notify, 10, 20).await;
    assert_eq!(stop.json(), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_groups_and_bad_tokens_are_denied_and_consume_nothing() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;
    let proof = proof_for(&launch.secret, &launch.ticket);

    // Tunnel servers of other groups, with the right proof or none.
    assert_access_denied(&world.dc2.start(&broker, &launch.ticket, Some(&proof)).await);
    assert_access_denied(&world.legacy.start(&broker, &launch.ticket, None).await);
    assert_access_denied(
        &world
            .legacy
            .start(&broker, &launch.ticket, Some(&proof))
            .await,
    );

    // A token registered without the `sk-` prefix is never accepted.
    let plain_token = "plain-token-without-the-prefix";
    broker
        .store()
        .add_tunnel_server(
            NewTunnelServer {
                name: "no-prefix".to_owned(),
                public_address: "no-prefix.example:7443".to_owned(),
                token_hash: TokenHash::of(plain_token.as_bytes()),
                legacy: false,
                group: "dc1".to_owned(),
            },
            broker.clock.now(),
        )
        .await
        .unwrap();

    let body = world.dc1.start_body(&launch.ticket, Some(&proof));
    let token = world.dc1.token.clone();
    let bad_authorizations = [
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some("Bearer sk-".to_owned()),
        Some("Bearer sk-not-a-registered-token".to_owned()),
        Some(format!("Bearer {plain_token}")),
        Some(format!("Basic {token}")),
        Some(token.clone()),
        Some(format!("Bearer {}", token.trim_start_matches("sk-"))),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", world.dc1.token.to_uppercase())),
    ];
    for authorization in &bad_authorizations {
        let reply = broker
            .tunnel_api(authorization.as_deref(), body.clone())
            .await;
        assert_access_denied(&reply);
    }

    // None of that consumed (or counted against) the ticket.
    world
        .dc1
        .redeem(&broker, &launch.ticket, Some(&proof))
        .await;
    let metrics = broker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"portcullis_tunnel_redemptions_refused_total{reason="bad_token"}"#
        ),
        bad_authorizations.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_denied_never_a_server_error() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker
        .launch_tunneled(&alice, world.shell, &Launcher::portcullis())
        .await;
    let proof = proof_for(&launch.secret, &launch.ticket);
    let good: Value =
        serde_json::from_slice(&world.dc1.start_body(&launch.ticket, Some(&proof))).unwrap();
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&body).unwrap()
    };
    let proof_hex = hex::encode(&proof.proof);

    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not JSON", b"ticket=abc&command=start".to_vec()),
        ("truncated", br#"{"ticket": "#.to_vec()),
        ("an array", b"[]".to_vec()),
        ("an empty object", b"{}".to_vec()),
        ("unknown command", with("command", json!("launch"))),
        ("no command", without("command")),
        ("malformed ticket", with("ticket", json!("short"))),
        ("missing kem key", without("kem_kyber_key")),
        ("null kem key", with("kem_kyber_key", Value::Null)),
        ("kem key not base64", with("kem_kyber_key", json!("@@@"))),
        ("short kem key", with("kem_kyber_key", json!("AAAA"))),
        ("no ip", without("ip")),
        ("null ip", with("ip", Value::Null)),
        ("ip with a port", with("ip", json!("192.0.2.7:5000"))),
        (
            "uppercase hex proof",
            with("proof", json!(proof_hex.to_uppercase())),
        ),
        ("non-hex proof", with("proof", json!("zz".repeat(32)))),
        ("short proof", with("proof", json!(&proof_hex[..62]))),
        ("long proof", with("proof", json!(format!("{proof_hex}00")))),
        ("proof not a string", with("proof", json!(12))),
        ("proof without randoms", without("client_random")),
        (
            "wrong hex in a random",
            with("server_random", json!("g".repeat(64))),
        ),
        ("stop without byte counts", with("command", json!("stop"))),
        ("negative byte count", {
            let mut body = good.clone();
            body["command"] = json!("stop");
            body["sent"] = json!(-1);
            body["recv"] = json!(0);
            serde_json::to_vec(&body).unwrap()
        }),
    ];
    for (what, body) in bodies {
        let reply = world.dc1.post(&broker, body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            reply.body
        );
        assert_eq!(reply.json(), json!({ "error": "Access denied" }), "{what}");
    }

    // Malformed requests never reached the ticket: the right proof still redeems it.
    let start = world
        .dc1
        .redeem(&broker, &launch.ticket, Some(&proof))
        .await;
    assert!(start.shared_secret == launch.secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tunnel_tickets_are_denied() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let alice = broker.login("alice", PASSWORD).await;
    let launcher = Launcher::portcullis();

    // A tunnel ticket lives 120 s (tickets.tunnel_ticket_ttl_secs).
    let expiring = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    broker.clock.advance(Duration::from_secs(120));
    let proof = proof_for(&expiring.secret, &expiring.ticket);
    assert_access_denied(
        &world
            .dc1
            .start(&broker, &expiring.ticket, Some(&proof))
            .await,
    );

    // Removing the service revokes its outstanding tunnel tickets.
    let revoked = broker.launch_tunneled(&alice, world.shell, &launcher).await;
    broker.store().remove_service("shell", 0).await.unwrap();
    let proof = proof_for(&revoked.secret, &revoked.ticket);
    assert_access_denied(
        &world
            .dc1
            .start(&broker, &revoked.ticket, Some(&proof))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_tunnel_request_is_refused_without_a_server_error() {
    let broker = TestBroker::builder().plain_http().start().await;
    let world = broker.world().await;
    let head = format!(
        "POST /uds/rest/tunnel/ticket HTTP/1.1\r\nHost: broker.example\r\n\
         Authorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        world.dc1.authorization(),
        64 * 1024 + 1
    );
    let answer = raw_http(broker.addr(), &head).await;
    // Refused from the headers alone, like every refusal: 403 Access denied.
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"error":"Access denied"}"#), "{answer}");
}

/// In a tunnel group with both a v1 and a legacy server, a ticket issued for the v1 server
/// needs the launcher's proof even when the legacy server (or whoever holds its token)
/// presents it: a tunnel ticket records whether it was issued for a legacy server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_cannot_redeem_a_v1_ticket_without_the_proof() {
    let broker = TestBroker::start().await;
    let world = broker.world().await;
    let v1 = broker.add_tunnel_server("mixed-v1", "mixed", false).await;
    let legacy = broker
        .add_tunnel_server("mixed-legacy", "mixed", true)
        .await;
    let service = broker
        .add_service(crate::support::broker::tunneled_service(
            "mixed-app",
            world.target.port,
            "mixed",
            &["staff"],
        ))
        .await;
    let alice = broker.login("alice", PASSWORD).await;
    let launch = broker
        .launch_tunneled(&alice, service, &Launcher::portcullis())
        .await;

    // The launcher was sent to the v1 server and will prove itself there…
    assert_access_denied(&legacy.start(&broker, &launch.ticket, None).await);
    // …so only its proof redeems the ticket.
    let proof = proof_for(&launch.secret, &launch.ticket);
    v1.redeem(&broker, &launch.ticket, Some(&proof)).await;
}
