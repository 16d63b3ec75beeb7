#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;
use crate::kem::DecapsulationKey;
use SignaturePolicy::{IfPresent, Required};

fn broker_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_seed(&[42; 32]).unwrap())
}

fn script() -> &'static SignedScript {
    static SCRIPT: OnceLock<SignedScript> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        SignedScript::sign(
            b"// connect\nconsole.log(data.host);\n".to_vec(),
            broker_key(),
        )
        .unwrap()
    })
}

struct Client {
    ticket: TicketId,
    pair: DecapsulationKey,
}

impl Client {
    fn new() -> Self {
        Self {
            ticket: TicketId::generate().unwrap(),
            pair: DecapsulationKey::generate().unwrap(),
        }
    }

    fn options(&self, payload_signature: bool) -> BuildOptions<'_> {
        BuildOptions {
            ticket: &self.ticket,
            client_key: self.pair.encapsulation_key(),
            payload_signature,
        }
    }

    fn verify(
        &self,
        payload: DecodedPayload,
        policy: SignaturePolicy,
    ) -> Result<VerifiedPayload, Error> {
        payload.verify(
            broker_key().verifying_key(),
            &self.ticket,
            self.pair.encapsulation_key(),
            policy,
        )
    }

    /// Decodes and verifies `json`.
    fn open(&self, json: &[u8], policy: SignaturePolicy) -> Result<VerifiedPayload, Error> {
        self.verify(decode(json)?, policy)
    }
}

const PARAMS: &[u8] = br#"{"host":"10.0.0.5","port":3389,"password":"hunter2"}"#;

fn built(client: &Client, params: &[u8], signed: bool) -> Vec<u8> {
    build(
        script(),
        params,
        &LogSettings::default(),
        broker_key(),
        &client.options(signed),
    )
    .unwrap()
    .to_vec()
}

fn wire(json: &[u8]) -> WirePayload {
    serde_json::from_slice(json).unwrap()
}

fn rewire(payload: &WirePayload) -> Vec<u8> {
    serde_json::to_vec(payload).unwrap()
}

#[test]
fn round_trip_with_payload_signature() {
    let client = Client::new();
    let decoded = client
        .open(&built(&client, PARAMS, true), Required)
        .unwrap();
    assert_eq!(decoded.script(), script().script());
    assert_eq!(
        decoded.script_text().unwrap(),
        "// connect\nconsole.log(data.host);\n"
    );
    assert_eq!(decoded.params(), PARAMS);
    assert_eq!(decoded.params_json()["port"], 3389);
    assert!(decoded.is_javascript());
    assert_eq!(decoded.script_signature(), script().signature());
    assert_eq!(decoded.log(), &LogSettings::default());
    assert_eq!(
        decoded.payload_signature().map(<[u8]>::len),
        Some(SIGNATURE_LEN)
    );
}

#[test]
fn round_trip_without_payload_signature() {
    let client = Client::new();
    let json = built(&client, PARAMS, false);
    let decoded = client.open(&json, IfPresent).unwrap();
    assert!(decoded.payload_signature().is_none());
    assert_eq!(decoded.params(), PARAMS);
    assert_eq!(
        client.open(&json, Required).unwrap_err(),
        Error::MissingSignature("payload")
    );
}

#[test]
fn exact_json_shape() {
    let client = Client::new();
    let log = LogSettings {
        level: "debug".into(),
        ticket: Some("L".repeat(48)),
    };
    let json = build(script(), b"{}", &log, broker_key(), &client.options(true)).unwrap();
    let value: Value = serde_json::from_slice(&json).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "log",
            "params",
            "payload_signature",
            "script",
            "signature",
            "signature_algorithm",
            "type"
        ]
    );
    assert_eq!(value["type"], "javascript");
    assert_eq!(value["signature_algorithm"], "MLDSA65");
    assert_eq!(
        value["log"],
        serde_json::json!({"level": "debug", "ticket": "L".repeat(48)})
    );
    assert!(json.starts_with(br#"{"script":""#));

    let plain = built(&client, b"{}", false);
    let value: Value = serde_json::from_slice(&plain).unwrap();
    assert!(value.get("payload_signature").is_none());
    assert_eq!(
        value["log"],
        serde_json::json!({"level": "info", "ticket": null})
    );
}

#[test]
fn a_wrong_script_signature_fails() {
    let client = Client::new();
    let mut payload = wire(&built(&client, PARAMS, true));
    let other = SigningKey::generate().unwrap();
    payload.signature = b64::encode(&other.sign(script().script()).unwrap());
    assert_eq!(
        client.open(&rewire(&payload), Required).unwrap_err(),
        Error::BadSignature("script")
    );

    // A script that is not the one signed.
    let mut payload = wire(&built(&client, PARAMS, true));
    payload.script = b64::encode(&compress(b"evil()").unwrap());
    assert_eq!(
        client.open(&rewire(&payload), Required).unwrap_err(),
        Error::BadSignature("script")
    );

    // A signature of the wrong length.
    let mut payload = wire(&built(&client, PARAMS, true));
    payload.signature = b64::encode(b"short");
    assert_eq!(
        client.open(&rewire(&payload), Required).unwrap_err(),
        Error::BadSignature("script")
    );
}

#[test]
fn params_swapped_after_signing_fail() {
    let client = Client::new();
    let original = wire(&built(&client, PARAMS, true));
    let other = wire(&built(
        &client,
        br#"{"host":"evil.example","port":3389}"#,
        true,
    ));
    let swapped = WirePayload {
        params: other.params,
        ..original
    };
    assert_eq!(
        client.open(&rewire(&swapped), IfPresent).unwrap_err(),
        Error::BadSignature("payload")
    );
    // Without the payload signature the swap is undetectable: that is OpenUDS 5's weakness.
    let stripped = WirePayload {
        payload_signature: None,
        ..wire(&rewire(&swapped))
    };
    client.open(&rewire(&stripped), IfPresent).unwrap();
    assert_eq!(
        client.open(&rewire(&stripped), Required).unwrap_err(),
        Error::MissingSignature("payload")
    );
}

#[test]
fn a_payload_for_another_client_key_fails() {
    let client = Client::new();
    let man_in_the_middle = DecapsulationKey::generate().unwrap();
    let options = BuildOptions {
        ticket: &client.ticket,
        client_key: man_in_the_middle.encapsulation_key(),
        payload_signature: true,
    };
    let json = build(
        script(),
        PARAMS,
        &LogSettings::default(),
        broker_key(),
        &options,
    )
    .unwrap();
    assert_eq!(
        client.open(&json, Required).unwrap_err(),
        Error::BadSignature("payload")
    );
}

#[test]
fn a_payload_for_another_ticket_fails() {
    let client = Client::new();
    let other_ticket = TicketId::generate().unwrap();
    let options = BuildOptions {
        ticket: &other_ticket,
        client_key: client.pair.encapsulation_key(),
        payload_signature: true,
    };
    let json = build(
        script(),
        PARAMS,
        &LogSettings::default(),
        broker_key(),
        &options,
    )
    .unwrap();
    assert_eq!(
        client.open(&json, Required).unwrap_err(),
        Error::BadSignature("payload")
    );
}

#[test]
fn a_payload_signed_by_another_broker_fails() {
    let client = Client::new();
    let decoded = decode(&built(&client, PARAMS, true)).unwrap();
    let other = SigningKey::generate().unwrap();
    assert_eq!(
        decoded
            .verify(
                other.verifying_key(),
                &client.ticket,
                client.pair.encapsulation_key(),
                Required
            )
            .unwrap_err(),
        Error::BadSignature("script")
    );
}

#[test]
fn unknown_type_and_algorithm_are_kept_as_data() {
    let client = Client::new();
    let mut payload = wire(&built(&client, PARAMS, true));
    payload.script_type = "python".into();
    let verified = client.open(&rewire(&payload), Required).unwrap();
    assert_eq!(verified.script_type(), "python");
    assert!(!verified.is_javascript());
    payload.signature_algorithm = "RSA".into();
    assert_eq!(
        client.open(&rewire(&payload), IfPresent).unwrap_err(),
        Error::Unsupported {
            what: "script signature algorithm",
            value: "RSA".into()
        }
    );
}

#[test]
fn malformed_base64_is_typed_per_field() {
    let client = Client::new();
    let good = wire(&built(&client, PARAMS, true));
    type Breaker = fn(&mut WirePayload);
    let cases: [(&str, Breaker); 4] = [
        ("script", |p| p.script = "not base64!".into()),
        ("signature", |p| p.signature = "QQ".into()),
        ("params", |p| p.params = "====".into()),
        ("payload_signature", |p| {
            p.payload_signature = Some("a b".into())
        }),
    ];
    for (field, break_it) in cases {
        let mut payload = good.clone();
        break_it(&mut payload);
        assert_eq!(
            decode(&rewire(&payload)).unwrap_err(),
            Error::Base64(field),
            "{field}"
        );
    }
}

#[test]
fn malformed_documents_are_typed() {
    for json in [&b""[..], b"[]", b"{", b"{\"script\": 1}", b"null"] {
        assert!(
            matches!(
                decode(json),
                Err(Error::Json {
                    what: "launcher payload",
                    ..
                })
            ),
            "{:?}",
            String::from_utf8_lossy(json)
        );
    }
    let client = Client::new();
    let mut payload = wire(&built(&client, PARAMS, true));
    let missing_log = {
        let mut value: Value = serde_json::from_slice(&rewire(&payload)).unwrap();
        value.as_object_mut().unwrap().remove("log");
        serde_json::to_vec(&value).unwrap()
    };
    match decode(&missing_log).unwrap_err() {
        Error::Json {
            what: "launcher payload",
            detail,
        } => {
            assert!(detail.contains("missing field `log`"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    payload.params = b64::encode(&compress(b"{not json").unwrap());
    assert!(matches!(
        decode(&rewire(&payload)),
        Err(Error::Json { what: "params", .. })
    ));
    payload.params = b64::encode(b"BZh9 but not really");
    assert_eq!(
        decode(&rewire(&payload)).unwrap_err(),
        Error::Decompress("params")
    );
}

#[test]
fn json_errors_do_not_echo_values() {
    let json = br#"{"script": "x", "type": "javascript", "signature_algorithm": "MLDSA65",
        "signature": "x", "params": "x", "log": "hunter2"}"#;
    match decode(json).unwrap_err() {
        Error::Json { detail, .. } => assert!(!detail.contains("hunter2"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decompression_bombs_are_refused() {
    let client = Client::new();
    let bomb = b64::encode(&compress(&vec![0u8; 9 * 1024 * 1024]).unwrap());
    let mut payload = wire(&built(&client, PARAMS, true));
    payload.params = bomb.clone();
    assert_eq!(
        decode(&rewire(&payload)).unwrap_err(),
        Error::DecompressedTooLarge {
            what: "params",
            limit: MAX_DECOMPRESSED
        }
    );
    payload.script = bomb;
    assert_eq!(
        decode(&rewire(&payload)).unwrap_err(),
        Error::DecompressedTooLarge {
            what: "script",
            limit: MAX_DECOMPRESSED
        }
    );
}

#[test]
fn build_refuses_misuse() {
    let client = Client::new();
    let log = LogSettings::default();
    assert!(matches!(
        build(
            script(),
            b"{oops",
            &log,
            broker_key(),
            &client.options(true)
        ),
        Err(Error::Json { what: "params", .. })
    ));
    let other = SigningKey::generate().unwrap();
    assert!(matches!(
        build(script(), b"{}", &log, &other, &client.options(true)),
        Err(Error::Misuse(_))
    ));
    let forged = SignedScript::from_parts(
        b"x".to_vec(),
        vec![0; SIGNATURE_LEN],
        broker_key().verifying_key(),
    );
    assert_eq!(forged.unwrap_err(), Error::BadSignature("script"));
}

#[test]
fn signed_scripts_can_be_restored_from_stored_signatures() {
    let restored = SignedScript::from_parts(
        script().script().to_vec(),
        script().signature().to_vec(),
        broker_key().verifying_key(),
    )
    .unwrap();
    assert_eq!(restored.digest(), script().digest());
    let shown = format!("{restored:?}");
    assert!(
        shown.contains(&crate::hex::encode(script().digest())),
        "{shown}"
    );
}

#[test]
fn debug_hides_params_and_log_ticket() {
    let client = Client::new();
    let log = LogSettings {
        level: "info".into(),
        ticket: Some("SECRETLOGTICKET".into()),
    };
    let json = build(script(), PARAMS, &log, broker_key(), &client.options(true)).unwrap();
    let shown = format!(
        "{:?} {:?} {:?}",
        decode(&json).unwrap(),
        client.open(&json, Required).unwrap(),
        wire(&json)
    );
    for secret in ["hunter2", "SECRETLOGTICKET", &wire(&json).params] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn the_message_binds_every_input() {
    let client = Client::new();
    let other = Client::new();
    let base =
        payload_signature_message(b"s", b"p", &client.ticket, client.pair.encapsulation_key());
    for changed in [
        payload_signature_message(b"t", b"p", &client.ticket, client.pair.encapsulation_key()),
        payload_signature_message(b"s", b"q", &client.ticket, client.pair.encapsulation_key()),
        payload_signature_message(b"s", b"p", &other.ticket, client.pair.encapsulation_key()),
        payload_signature_message(b"s", b"p", &client.ticket, other.pair.encapsulation_key()),
    ] {
        assert_ne!(base, changed);
    }
}

fn params_strategy() -> impl Strategy<Value = Vec<u8>> {
    (any::<Vec<u8>>(), ".*", any::<i64>()).prop_map(|(bytes, text, number)| {
        serde_json::to_vec(&serde_json::json!({"bytes": bytes, "text": text, "n": number})).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_scripts_and_params_round_trip(
        script_bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        params in params_strategy(),
        signed in any::<bool>(),
    ) {
        let client = Client::new();
        let script = SignedScript::sign(script_bytes.clone(), broker_key()).unwrap();
        let json = build(&script, &params, &LogSettings::default(), broker_key(), &client.options(signed)).unwrap();
        let policy = if signed { Required } else { IfPresent };
        let verified = client.open(&json, policy).unwrap();
        prop_assert_eq!(verified.script(), &script_bytes[..]);
        prop_assert_eq!(verified.params(), &params[..]);
        prop_assert_eq!(verified.payload_signature().is_some(), signed);
    }
}

#[test]
fn broker_types_are_shareable_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SigningKey>();
    shareable::<VerifyingKey>();
    shareable::<SignedScript>();
    shareable::<DecodedPayload>();
    shareable::<VerifiedPayload>();
}
