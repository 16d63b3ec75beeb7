#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;
use crate::kem::DecapsulationKey;
use crate::openuds::Envelope;

const TICKET: &str = "c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD";
const NOTIFY: &str = "NotifyTicketNotifyTicketNotifyTicketNotifyTicket";

fn ticket() -> TicketId {
    TicketId::parse(TICKET).unwrap()
}

fn proof() -> StartProof {
    StartProof {
        client_random: [1; 32],
        server_random: [2; 32],
        proof: [0xab; 32],
    }
}

fn as_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn start_request_shapes() {
    let pair = DecapsulationKey::generate().unwrap();
    let key = pair.encapsulation_key();
    let legacy = TunnelRequest::start(&ticket(), "192.0.2.7".parse().unwrap(), key, None);
    assert_eq!(
        as_value(&legacy),
        json!({"ticket": TICKET, "command": "start", "ip": "192.0.2.7",
               "kem_kyber_key": b64::encode(key.as_bytes()), "sent": null, "recv": null})
    );
    let ours = TunnelRequest::start(
        &ticket(),
        "2001:db8::1".parse().unwrap(),
        key,
        Some(&proof()),
    );
    let value = as_value(&ours);
    assert_eq!(value["client_random"], "01".repeat(32));
    assert_eq!(value["server_random"], "02".repeat(32));
    assert_eq!(value["proof"], "ab".repeat(32));
    let parsed = TunnelRequest::from_json(&serde_json::to_vec(&ours).unwrap()).unwrap();
    assert_eq!(parsed, ours);
    let TunnelCommand::Start(start) = parsed.check().unwrap() else {
        panic!("not a start")
    };
    assert_eq!(start.ticket, ticket());
    assert_eq!(start.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(&start.tunnel_key, key);
    assert_eq!(start.proof, Some(proof()));
    let TunnelCommand::Start(start) = legacy.check().unwrap() else {
        panic!("not a start")
    };
    assert_eq!(start.proof, None);
}

#[test]
fn stop_request_shapes() {
    let notify = TicketId::parse(NOTIFY).unwrap();
    let stop = TunnelRequest::stop(&notify, 1000, 2000);
    assert_eq!(
        as_value(&stop),
        json!({"ticket": NOTIFY, "command": "stop", "ip": "", "kem_kyber_key": null,
               "sent": 1000, "recv": 2000})
    );
    let TunnelCommand::Stop(checked) = stop.check().unwrap() else {
        panic!("not a stop")
    };
    assert_eq!(
        checked,
        StopRequest {
            notify,
            sent: 1000,
            recv: 2000
        }
    );
    // The shape OpenUDS 5 tunnel servers send, with fields missing instead of null.
    let minimal = format!(r#"{{"ticket": "{NOTIFY}", "command": "stop", "sent": 1, "recv": 2}}"#);
    assert!(
        TunnelRequest::from_json(minimal.as_bytes())
            .unwrap()
            .check()
            .is_ok()
    );
}

#[test]
fn bad_tunnel_requests_are_typed_errors() {
    let pair = DecapsulationKey::generate().unwrap();
    let good = TunnelRequest::start(
        &ticket(),
        "192.0.2.7".parse().unwrap(),
        pair.encapsulation_key(),
        Some(&proof()),
    );
    let check = |change: fn(&mut TunnelRequest)| {
        let mut request = good.clone();
        change(&mut request);
        request.check().unwrap_err()
    };
    assert!(matches!(
        check(|r| r.ticket = "short".into()),
        Error::Invalid {
            what: "ticket id",
            ..
        }
    ));
    assert!(matches!(
        check(|r| r.ip = String::new()),
        Error::Invalid { what: "ip", .. }
    ));
    assert!(matches!(
        check(|r| r.ip = "example.com".into()),
        Error::Invalid { what: "ip", .. }
    ));
    assert!(matches!(
        check(|r| r.kem_kyber_key = None),
        Error::Invalid {
            what: "kem_kyber_key",
            ..
        }
    ));
    assert_eq!(
        check(|r| r.kem_kyber_key = Some("!".into())),
        Error::Base64("kem_kyber_key")
    );
    assert!(matches!(
        check(|r| r.proof = None),
        Error::Invalid { what: "proof", .. }
    ));
    assert!(matches!(
        check(|r| r.client_random = Some("AB".repeat(32))),
        Error::Invalid {
            what: "client_random",
            reason: "must be lowercase hex"
        }
    ));
    assert!(matches!(
        check(|r| r.server_random = Some("ab".repeat(31))),
        Error::WrongLength {
            what: "server_random",
            expected: 32,
            got: 31
        }
    ));
    assert!(matches!(
        check(|r| r.proof = Some("zz".repeat(32))),
        Error::Invalid { what: "proof", .. }
    ));
    let mut stop = TunnelRequest::stop(&ticket(), 1, 2);
    stop.recv = None;
    assert!(matches!(
        stop.check(),
        Err(Error::Invalid {
            what: "stop request",
            ..
        })
    ));

    for body in [
        format!(r#"{{"ticket": "{TICKET}", "command": "test"}}"#),
        format!(r#"{{"ticket": "{TICKET}"}}"#),
        format!(r#"{{"ticket": "{TICKET}", "command": "stop", "sent": -1, "recv": 0}}"#),
        "{".to_owned(),
    ] {
        assert!(
            matches!(
                TunnelRequest::from_json(body.as_bytes()),
                Err(Error::Json {
                    what: "tunnel request",
                    ..
                })
            ),
            "{body}"
        );
    }
}

#[test]
fn debug_hides_the_ticket() {
    let shown = format!("{:?}", TunnelRequest::stop(&ticket(), 1, 2));
    assert!(
        !shown.contains(TICKET) && shown.contains("c6s9FAa5"),
        "{shown}"
    );
}

fn start_answer() -> TunnelStart {
    TunnelStart {
        remotes: vec![
            Remote {
                host: "10.0.0.5".into(),
                port: 3389,
            },
            Remote {
                host: "rdp.internal".into(),
                port: 3390,
            },
        ],
        notify: TicketId::parse(NOTIFY).unwrap(),
        shared_secret: SharedSecret::from_bytes([0x5a; 32]),
    }
}

#[test]
fn start_answer_round_trip_and_shape() {
    let start = start_answer();
    let json = start.to_json().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&json).unwrap(),
        json!({"remotes": [{"host": "10.0.0.5", "port": 3389}, {"host": "rdp.internal", "port": 3390}],
               "notify": NOTIFY, "shared_secret": "5a".repeat(32)})
    );
    assert_eq!(TunnelStart::from_json(&json).unwrap(), start);
    // OpenUDS 5 adds `extra` to each remote; uppercase hex is accepted.
    let openuds = format!(
        r#"{{"remotes": [{{"host": "h", "port": 1, "extra": {{}}}}], "notify": "{NOTIFY}",
            "shared_secret": "{}"}}"#,
        "5A".repeat(32)
    );
    assert_eq!(
        TunnelStart::from_json(openuds.as_bytes())
            .unwrap()
            .shared_secret,
        start.shared_secret
    );
}

#[test]
fn start_answer_through_the_envelope() {
    let tunnel_server = DecapsulationKey::generate().unwrap();
    let tunnel_ticket = ticket();
    let start = start_answer();
    let (envelope, _) = Envelope::seal(
        tunnel_server.encapsulation_key(),
        &tunnel_ticket,
        &start.to_json().unwrap(),
    )
    .unwrap();
    let body = serde_json::to_value(&envelope).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "not wrapped in result: {keys:?}");
    let (plaintext, _) = envelope.open(&tunnel_server, &tunnel_ticket).unwrap();
    assert_eq!(TunnelStart::from_json(&plaintext).unwrap(), start);
}

#[test]
fn bad_start_answers_are_refused() {
    let secret = "5a".repeat(32);
    let cases = [
        format!(r#"{{"remotes": [], "notify": "{NOTIFY}", "shared_secret": "{secret}"}}"#),
        format!(
            r#"{{"remotes": [{{"host": "", "port": 1}}], "notify": "{NOTIFY}", "shared_secret": "{secret}"}}"#
        ),
        format!(
            r#"{{"remotes": [{{"host": "h", "port": 0}}], "notify": "{NOTIFY}", "shared_secret": "{secret}"}}"#
        ),
        format!(
            r#"{{"remotes": [{{"host": "h", "port": 1}}], "notify": "short", "shared_secret": "{secret}"}}"#
        ),
        format!(
            r#"{{"remotes": [{{"host": "h", "port": 1}}], "notify": "{NOTIFY}", "shared_secret": ""}}"#
        ),
        format!(
            r#"{{"remotes": [{{"host": "h", "port": 1}}], "notify": "{NOTIFY}", "shared_secret": null}}"#
        ),
        format!(
            r#"{{"remotes": [{{"host": "h", "port": 70000}}], "notify": "{NOTIFY}", "shared_secret": "{secret}"}}"#
        ),
    ];
    for body in cases {
        assert!(TunnelStart::from_json(body.as_bytes()).is_err(), "{body}");
    }
}

#[test]
fn secrets_do_not_leak_through_debug_or_errors() {
    let start = start_answer();
    let shown = format!("{start:?}");
    assert!(
        !shown.contains(&"5a".repeat(4)) && !shown.contains(NOTIFY),
        "{shown}"
    );
    let bad = format!(
        r#"{{"remotes": [{{"host": "h", "port": 1}}], "notify": "{NOTIFY}", "shared_secret": "{}zz"}}"#,
        "5a".repeat(31)
    );
    match TunnelStart::from_json(bad.as_bytes()).unwrap_err() {
        Error::Json { detail, .. } => assert!(!detail.contains("5a5a"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stop_answer_and_refusal() {
    assert_eq!(serde_json::to_string(&StopAnswer {}).unwrap(), "{}");
    assert_eq!(
        serde_json::from_str::<StopAnswer>("{}").unwrap(),
        StopAnswer {}
    );
    assert_eq!(
        serde_json::to_string(&TunnelRefusal::access_denied()).unwrap(),
        r#"{"error":"Access denied"}"#
    );
}
