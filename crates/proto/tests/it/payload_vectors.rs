//! Launcher payload known answers: the OpenUDS 5 payload in `tests/vectors/openuds5/`
//! decodes, and `tests/vectors/payload-v1.json` (our fixed-seed vector) reproduces and
//! verifies.
//!
//! Regenerate the latter with `PORTCULLIS_REGENERATE_VECTORS=1 cargo test -p
//! portcullis-proto --test it payload_vectors`. ML-DSA signing is randomized, so the stored
//! signatures are checked by verification, not by comparing bytes with fresh ones.

use std::path::PathBuf;

use portcullis_proto::kem::{DecapsulationKey, ENCAPSULATION_KEY_LEN, EncapsulationKey};
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::{
    self, BuildOptions, LogSettings, SignaturePolicy, SignedScript, SigningKey, VerifyingKey,
    WirePayload, payload_signature_message,
};
use portcullis_proto::{Error, TicketId, b64};
use serde_json::{Value, json};

#[test]
fn the_openuds5_payload_decodes() {
    let vector = crate::vector_files::openuds5("ticket-exchange.json");
    let plaintext = crate::vector_files::text(&vector["expected"], "plaintext");

    // Its fields, decoded as `payload::decode` does (a `DecodedPayload` shows nothing
    // before it verifies, and this one never can).
    let wire: WirePayload = serde_json::from_str(plaintext).unwrap();
    let unpack =
        |field: &str, what| payload::decompress(&b64::decode(field, what).unwrap(), what).unwrap();
    assert_eq!(
        unpack(&wire.script, "script").as_slice(),
        b"// js sample script"
    );
    assert_eq!(wire.script_type, "javascript");
    assert_eq!(wire.signature_algorithm, "unused-sig-algo");
    assert_eq!(
        b64::decode(&wire.signature, "signature").unwrap(),
        b"unused signature for test"
    );
    let params = unpack(&wire.params, "params");
    assert!(params.starts_with(br#"{"param1": 1, "#));
    assert_eq!(
        serde_json::from_slice::<Value>(&params).unwrap(),
        json!({"param1": 1, "parm2": 2.0, "param3": true, "param4": null,
               "param5": [1, 2, 3, 4], "param6": "Test"})
    );
    assert_eq!(
        wire.log,
        LogSettings {
            level: "info".into(),
            ticket: None
        }
    );
    assert!(wire.payload_signature.is_none());

    // It decodes, but carries no ML-DSA-65 signature a launcher could accept.
    let decoded = payload::decode(plaintext.as_bytes()).unwrap();
    let private = b64::decode(
        crate::vector_files::text(&vector, "kem_private_key_b64"),
        "private key",
    )
    .unwrap();
    let key = DecapsulationKey::from_expanded(&private).unwrap();
    let ticket = TicketId::parse(crate::vector_files::text(&vector, "ticket")).unwrap();
    let broker = SigningKey::from_seed(&[0; 32]).unwrap();
    assert_eq!(
        decoded
            .verify(
                broker.verifying_key(),
                &ticket,
                key.encapsulation_key(),
                SignaturePolicy::IfPresent
            )
            .unwrap_err(),
        Error::Unsupported {
            what: "script signature algorithm",
            value: "unused-sig-algo".into()
        }
    );

    // End to end: the recorded broker answer decrypts to this payload.
    let envelope: Envelope = serde_json::from_value(vector["response"].clone()).unwrap();
    let (opened, _) = envelope.open(&key, &ticket).unwrap();
    assert_eq!(opened.as_slice(), plaintext.as_bytes());
    payload::decode(&opened).unwrap();
}

// ---- payload-v1.json ----------------------------------------------------------------

const KAT_FILE: &str = "tests/vectors/payload-v1.json";
const KAT_SCRIPT: &str = "// portcullis known-answer script\nconsole.log(data.message);\n";
const KAT_PARAMS: &str = r#"{"message":"hello","port":3389}"#;
const KAT_TICKET: &str = "PortcullisPayloadV1KnownAnswerTicket012345678901";

fn kat_seed() -> [u8; 32] {
    core::array::from_fn(|i| u8::try_from(i).unwrap())
}

/// The launcher key of the vector: 1152 bytes of 0x11 (every 12-bit coefficient is 273,
/// below q = 3329) followed by a 32-byte seed rho of 0x22. A valid ML-KEM-768
/// encapsulation key that any implementation can rebuild without a KEM library.
fn kat_client_key() -> EncapsulationKey {
    let mut bytes = vec![0x11u8; 1152];
    bytes.extend_from_slice(&[0x22; 32]);
    assert_eq!(bytes.len(), ENCAPSULATION_KEY_LEN);
    EncapsulationKey::from_bytes(&bytes).unwrap()
}

fn kat_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(KAT_FILE)
}

fn generate() -> Value {
    let key = SigningKey::from_seed(&kat_seed()).unwrap();
    let ticket = TicketId::parse(KAT_TICKET).unwrap();
    let client_key = kat_client_key();
    let message = payload_signature_message(
        KAT_SCRIPT.as_bytes(),
        KAT_PARAMS.as_bytes(),
        &ticket,
        &client_key,
    );
    let script = SignedScript::sign(KAT_SCRIPT.as_bytes().to_vec(), &key).unwrap();
    let options = BuildOptions {
        ticket: &ticket,
        client_key: &client_key,
        payload_signature: true,
    };
    let payload_json = payload::build(
        &script,
        KAT_PARAMS.as_bytes(),
        &LogSettings::default(),
        &key,
        &options,
    )
    .unwrap();
    json!({
        "description": "Portcullis launcher payload v1 known answers. The public key, fingerprint \
            and message are deterministic; ML-DSA-65 signing is randomized, so the signatures \
            must verify but are not reproduced byte for byte.",
        "signing_key": {
            "algorithm": "ML-DSA-65",
            "seed_hex": hex::encode(kat_seed()),
            "public_key_b64": key.verifying_key().to_base64(),
            "fingerprint": key.verifying_key().fingerprint(),
        },
        "inputs": {
            "script": KAT_SCRIPT,
            "params": KAT_PARAMS,
            "ticket": KAT_TICKET,
            "client_key_construction": "1152 bytes 0x11 followed by 32 bytes 0x22",
            "client_key_b64": b64::encode(client_key.as_bytes()),
        },
        "payload_signature_message_hex": hex::encode(message),
        "payload_signature_b64": b64::encode(&key.sign(&message).unwrap()),
        "script_signature_b64": b64::encode(script.signature()),
        "payload_json": String::from_utf8(payload_json.to_vec()).unwrap(),
    })
}

#[test]
fn the_payload_v1_vector_reproduces_and_verifies() {
    if std::env::var_os("PORTCULLIS_REGENERATE_VECTORS").is_some_and(|value| value == "1") {
        let mut text = serde_json::to_string_pretty(&generate()).unwrap();
        text.push('\n');
        std::fs::write(kat_path(), text).unwrap();
    }
    let stored = std::fs::read_to_string(kat_path()).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}; run with PORTCULLIS_REGENERATE_VECTORS=1 to create it",
            kat_path().display()
        )
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();

    // Deterministic parts.
    let seed = hex::decode(crate::vector_files::text(
        &stored["signing_key"],
        "seed_hex",
    ))
    .unwrap();
    assert_eq!(seed, kat_seed());
    let key = SigningKey::from_seed(&kat_seed()).unwrap();
    let public = VerifyingKey::from_base64(crate::vector_files::text(
        &stored["signing_key"],
        "public_key_b64",
    ))
    .unwrap();
    assert_eq!(
        key.verifying_key(),
        &public,
        "public key derived from the seed"
    );
    assert_eq!(
        crate::vector_files::text(&stored["signing_key"], "fingerprint"),
        public.fingerprint()
    );
    let inputs = &stored["inputs"];
    assert_eq!(crate::vector_files::text(inputs, "script"), KAT_SCRIPT);
    assert_eq!(crate::vector_files::text(inputs, "params"), KAT_PARAMS);
    assert_eq!(crate::vector_files::text(inputs, "ticket"), KAT_TICKET);
    let client_key = kat_client_key();
    assert_eq!(
        crate::vector_files::text(inputs, "client_key_b64"),
        b64::encode(client_key.as_bytes())
    );
    let ticket = TicketId::parse(KAT_TICKET).unwrap();
    let message = payload_signature_message(
        KAT_SCRIPT.as_bytes(),
        KAT_PARAMS.as_bytes(),
        &ticket,
        &client_key,
    );
    assert_eq!(
        crate::vector_files::text(&stored, "payload_signature_message_hex"),
        hex::encode(message)
    );

    // Signatures verify.
    let payload_signature = b64::decode(
        crate::vector_files::text(&stored, "payload_signature_b64"),
        "sig",
    )
    .unwrap();
    public
        .verify(&message, &payload_signature, "payload")
        .unwrap();
    let mut flipped = payload_signature.clone();
    flipped[0] ^= 1;
    assert_eq!(
        public.verify(&message, &flipped, "payload"),
        Err(Error::BadSignature("payload"))
    );
    let script_signature = b64::decode(
        crate::vector_files::text(&stored, "script_signature_b64"),
        "sig",
    )
    .unwrap();
    public
        .verify(KAT_SCRIPT.as_bytes(), &script_signature, "script")
        .unwrap();

    // The stored payload decodes and verifies for its ticket and client key only.
    let stored_json = crate::vector_files::text(&stored, "payload_json").as_bytes();
    let verified = payload::decode(stored_json)
        .unwrap()
        .verify(&public, &ticket, &client_key, SignaturePolicy::Required)
        .unwrap();
    assert_eq!(verified.script(), KAT_SCRIPT.as_bytes());
    assert_eq!(verified.params(), KAT_PARAMS.as_bytes());
    let other = DecapsulationKey::generate().unwrap();
    assert_eq!(
        payload::decode(stored_json)
            .unwrap()
            .verify(
                &public,
                &ticket,
                other.encapsulation_key(),
                SignaturePolicy::Required
            )
            .unwrap_err(),
        Error::BadSignature("payload")
    );
}
