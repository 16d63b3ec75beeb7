#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;
use crate::kem::DecapsulationKey;

fn key() -> EncapsulationKey {
    DecapsulationKey::generate()
        .unwrap()
        .encapsulation_key()
        .clone()
}

fn portcullis_client() -> ClientInfo {
    ClientInfo {
        name: "portcullis-launcher".into(),
        version: "0.1.0".into(),
        os: "linux".into(),
        capabilities: vec![
            capability::PAYLOAD_SIGNATURE.into(),
            capability::TUNNEL_V1.into(),
        ],
        ssh_public_key: None,
    }
}

fn as_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn version_answer() {
    let answer = VersionAnswer::Result(ClientVersionInfo {
        available_version: "5.0.1".into(),
        required_version: "5.0.0".into(),
        client_link: "https://broker.example/download".into(),
    });
    assert_eq!(
        as_value(&answer),
        json!({"result": {"available_version": "5.0.1", "required_version": "5.0.0",
                          "client_link": "https://broker.example/download"}})
    );
    assert_eq!(
        VersionAnswer::from_json(&answer.to_json().unwrap()).unwrap(),
        answer
    );
    // OpenUDS 5 also sends camelCase duplicates; they are ignored.
    let openuds = br#"{"result": {"availableVersion": "5.0.0", "available_version": "5.0.0",
        "requiredVersion": "4.0.0", "required_version": "4.0.0",
        "downloadUrl": "https://x/", "client_link": "https://x/"}}"#;
    let info = VersionAnswer::from_json(openuds)
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(info.available().unwrap(), PROTOCOL_VERSION);
    assert_eq!(info.required().unwrap(), ProtocolVersion::new(4, 0, 0));
}

#[test]
fn ticket_request_shapes() {
    let key = key();
    let scrambler = Scrambler::parse("Scr4mbler").unwrap();
    let legacy = TicketRequest::new(&scrambler, &key, "desk-12", None);
    assert_eq!(
        as_value(&legacy),
        json!({"scrambler": "Scr4mbler", "kem_kyber_key": b64::encode(key.as_bytes()),
               "hostname": "desk-12", "version": "5.0.0"})
    );
    let ours = TicketRequest::new(&scrambler, &key, "desk-12", Some(portcullis_client()));
    assert_eq!(
        as_value(&ours)["client"],
        json!({"name": "portcullis-launcher", "version": "0.1.0", "os": "linux",
               "capabilities": ["payload-signature", "tunnel-v1"]})
    );
    let parsed = TicketRequest::from_json(&serde_json::to_vec(&ours).unwrap()).unwrap();
    assert_eq!(parsed, ours);

    let checked = parsed.check().unwrap();
    assert_eq!(checked.client_key, key);
    assert_eq!(checked.version, PROTOCOL_VERSION);
    assert!(!checked.is_openuds5());
    assert!(checked.wants_payload_signature() && checked.supports_tunnel_v1());

    let checked = legacy.check().unwrap();
    assert!(checked.is_openuds5());
    assert!(!checked.wants_payload_signature() && !checked.supports_tunnel_v1());

    let mut tunnel_only = portcullis_client();
    tunnel_only.capabilities = vec!["tunnel-v1".into(), "future-thing".into()];
    let checked = TicketRequest::new(&scrambler, &key, "", Some(tunnel_only))
        .check()
        .unwrap();
    assert!(!checked.is_openuds5() && !checked.wants_payload_signature());
    assert!(checked.supports_tunnel_v1());
}

#[test]
fn a_request_without_a_kem_key_is_refused_clearly() {
    for body in [
        json!({"scrambler": "s", "hostname": "h", "version": "5.0.0"}),
        json!({"scrambler": "s", "kem_kyber_key": "", "hostname": "h", "version": "5.0.0"}),
        json!({"scrambler": "s", "kem_kyber_key": null, "hostname": "h", "version": "5.0.0"}),
    ] {
        let request = TicketRequest::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        match request.check().unwrap_err() {
            Error::Invalid {
                what: "kem_kyber_key",
                reason,
            } => {
                assert!(reason.contains("plaintext"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bad_ticket_requests_are_typed_errors() {
    let good = TicketRequest::new(&Scrambler::parse("s").unwrap(), &key(), "h", None);
    let check = |change: fn(&mut TicketRequest)| {
        let mut request = good.clone();
        change(&mut request);
        request.check().unwrap_err()
    };
    assert_eq!(
        check(|r| r.kem_kyber_key = Some("%%%".into())),
        Error::Base64("kem_kyber_key")
    );
    assert!(matches!(
        check(|r| r.kem_kyber_key = Some(b64::encode(&[0; 1183]))),
        Error::WrongLength {
            expected: 1184,
            got: 1183,
            ..
        }
    ));
    assert!(matches!(
        check(|r| r.scrambler = String::new()),
        Error::Invalid {
            what: "scrambler",
            ..
        }
    ));
    assert!(matches!(
        check(|r| r.version = "5.0".into()),
        Error::Invalid {
            what: "version",
            ..
        }
    ));
    assert!(matches!(
        check(|r| r.hostname = "a\nb".into()),
        Error::Invalid {
            what: "hostname",
            ..
        }
    ));
    assert!(matches!(
        check(|r| r.client = Some(ClientInfo {
            os: "x".repeat(65),
            ..portcullis_client()
        })),
        Error::Invalid { what: "client", .. }
    ));
    assert!(matches!(
        check(|r| {
            r.client = Some(ClientInfo {
                capabilities: vec!["c".into(); 33],
                ..portcullis_client()
            })
        }),
        Error::Invalid { what: "client", .. }
    ));
    for body in [&b"{}"[..], b"[]", b"{\"scrambler\": 5}", b"not json"] {
        assert!(matches!(
            TicketRequest::from_json(body),
            Err(Error::Json {
                what: "ticket request",
                ..
            })
        ));
    }
}

#[test]
fn debug_does_not_print_the_key() {
    let key = key();
    let request = TicketRequest::new(&Scrambler::parse("s").unwrap(), &key, "h", None);
    let shown = format!("{request:?}");
    assert!(
        !shown.contains(&b64::encode(&key.as_bytes()[..30])),
        "{shown}"
    );
}

#[test]
fn ticket_answers() {
    let envelope = Envelope {
        algorithm: "AES-256-GCM".into(),
        ciphertext: "Y3Q=".into(),
        data: "ZGF0YQ==".into(),
    };
    let ok = TicketAnswer::Result(envelope.clone());
    assert_eq!(
        String::from_utf8(ok.to_json().unwrap()).unwrap(),
        r#"{"result":{"algorithm":"AES-256-GCM","ciphertext":"Y3Q=","data":"ZGF0YQ=="}}"#
    );
    assert_eq!(
        TicketAnswer::from_json(&ok.to_json().unwrap())
            .unwrap()
            .into_result(),
        Ok(envelope)
    );

    let preparing = TicketAnswer::Error(ErrorBody::preparing(Percent::new(50).unwrap()));
    assert_eq!(
        String::from_utf8(preparing.to_json().unwrap()).unwrap(),
        r#"{"error":{"message":"Preparing service","is_retryable":true,"percent":50}}"#
    );
    assert_eq!(
        TicketAnswer::from_json(&preparing.to_json().unwrap()).unwrap(),
        preparing
    );
    assert_eq!(
        as_value(&TicketAnswer::Error(ErrorBody::fatal("Access denied"))),
        json!({"error": {"message": "Access denied", "is_retryable": false, "percent": 0}})
    );
}

#[test]
fn bad_answers_are_refused() {
    let bad: [&[u8]; 8] = [
        br#"{}"#,
        br#"{"result": {"algorithm": "a", "ciphertext": "b", "data": "c"},
             "error": {"message": "m", "is_retryable": false, "percent": 0}}"#,
        br#"{"error": {"message": "m", "is_retryable": false, "percent": 101}}"#,
        br#"{"error": {"message": "m", "is_retryable": false, "percent": -1}}"#,
        br#"{"error": {"message": "m", "is_retryable": false, "percent": 2.5}}"#,
        br#"{"error": {"message": "m", "is_retryable": "1", "percent": 0}}"#,
        br#"{"result": {"algorithm": "a", "ciphertext": "b"}}"#,
        br#"{"error": "Access denied"}"#,
    ];
    for body in bad {
        assert!(
            matches!(
                TicketAnswer::from_json(body),
                Err(Error::Json {
                    what: "client API answer",
                    ..
                })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn percent_rules() {
    assert_eq!(Percent::new(100).unwrap().get(), 100);
    assert!(Percent::new(101).is_err());
    assert_eq!(Percent::saturating(250).get(), 100);
}

#[test]
fn ticket_exchange_path_holds_the_whole_ticket() {
    let ticket = TicketId::parse("c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD").unwrap();
    assert_eq!(
        ticket_exchange_path(&ticket),
        "/uds/rest/client/c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD/ticket"
    );
}

#[test]
fn a_broker_key_answer_checks_its_fingerprint_and_algorithm() {
    let key = crate::payload::SigningKey::from_seed(&[4; 32]).unwrap();
    let answer = BrokerKey::new(key.verifying_key());
    assert_eq!(answer.algorithm, "MLDSA65");
    let json = serde_json::to_string(&answer).unwrap();
    let back: BrokerKey = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.verifying_key().unwrap().fingerprint(),
        key.verifying_key().fingerprint()
    );
    let other = crate::payload::SigningKey::from_seed(&[5; 32]).unwrap();
    let swapped = BrokerKey {
        fingerprint: other.verifying_key().fingerprint(),
        ..answer.clone()
    };
    assert!(swapped.verifying_key().is_err());
    let wrong_algorithm = BrokerKey {
        algorithm: "RSA".into(),
        ..answer
    };
    assert!(wrong_algorithm.verifying_key().is_err());
}

#[test]
fn an_ssh_public_key_counts_only_with_its_capability_and_must_parse() {
    let line = crate::ssh::Ed25519PublicKey::from_bytes([9; 32]).to_openssh();
    let mut client = ClientInfo {
        ssh_public_key: Some(line.clone()),
        ..portcullis_client()
    };
    assert_eq!(client.ssh_public_key(), None, "no capability, no key");
    client.capabilities.push(capability::SSH_CERTIFICATE.into());
    assert_eq!(
        client.ssh_public_key().map(|key| key.to_openssh()),
        Some(line)
    );
    let json = as_value(&client);
    assert_eq!(
        json["ssh_public_key"],
        serde_json::json!(client.ssh_public_key.clone())
    );
    // Absent, it is not serialized at all (OpenUDS 5 brokers see nothing new).
    assert!(
        as_value(&portcullis_client())
            .get("ssh_public_key")
            .is_none()
    );
    client.ssh_public_key = Some("ssh-rsa AAAA".into());
    assert!(client.check().is_err());
}
