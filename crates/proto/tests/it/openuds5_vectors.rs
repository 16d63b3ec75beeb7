//! The OpenUDS 5 known-answer data in `tests/vectors/openuds5/` reproduces exactly.

use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::openuds::{Envelope, TicketKeys};
use portcullis_proto::{SharedSecret, TicketId};

fn assert_hex(actual: &[u8], expected_hex: &str, what: &str) {
    assert_eq!(hex::encode(actual), expected_hex, "{what}");
}

#[test]
fn key_schedule_cases_reproduce() {
    let vectors = crate::vector_files::openuds5("key-schedule.json");
    assert_eq!(vectors["hkdf"]["info"], "openuds-ticket-crypt");
    assert_eq!(vectors["hkdf"]["length"], 108);
    let cases = vectors["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let secret =
            SharedSecret::from_hex(crate::vector_files::text(case, "shared_secret_hex")).unwrap();
        let salt = match case.get("salt_ascii") {
            Some(ascii) => ascii.as_str().unwrap().as_bytes().to_vec(),
            None => hex::decode(crate::vector_files::text(case, "salt_hex")).unwrap(),
        };
        let keys = TicketKeys::derive(&secret, &salt).unwrap();
        assert_hex(
            keys.client_to_server(),
            crate::vector_files::text(case, "key_send_hex"),
            "key_send",
        );
        assert_hex(
            keys.server_to_client(),
            crate::vector_files::text(case, "key_receive_hex"),
            "key_receive",
        );
        if let Some(expected) = case.get("key_payload_hex") {
            assert_hex(
                keys.payload_key(),
                expected.as_str().unwrap(),
                "key_payload",
            );
        }
        if let Some(expected) = case.get("nonce_payload_hex") {
            assert_hex(
                keys.payload_nonce(),
                expected.as_str().unwrap(),
                "nonce_payload",
            );
        }
        if let Some(plaintext) = case.get("payload_plaintext") {
            let plaintext = plaintext.as_str().unwrap().as_bytes();
            let expected = portcullis_proto::b64::decode(
                crate::vector_files::text(case, "payload_data_b64"),
                "data",
            )
            .unwrap();
            assert_eq!(
                keys.encrypt_payload(plaintext).unwrap(),
                expected,
                "payload data"
            );
            // Sealing consumed the keys (the payload nonce is fixed): derive them again.
            let keys = TicketKeys::derive(&secret, &salt).unwrap();
            assert_eq!(
                keys.decrypt_payload(&expected).unwrap().as_slice(),
                plaintext
            );
        }
    }
}

#[test]
fn ticket_exchange_decrypts() {
    let vector = crate::vector_files::openuds5("ticket-exchange.json");
    assert_eq!(vector["kem"], "ML-KEM-768");
    let private = portcullis_proto::b64::decode(
        crate::vector_files::text(&vector, "kem_private_key_b64"),
        "private key",
    )
    .unwrap();
    let key = DecapsulationKey::from_expanded(&private).unwrap();
    let ticket = TicketId::parse(crate::vector_files::text(&vector, "ticket")).unwrap();
    let envelope: Envelope = serde_json::from_value(vector["response"].clone()).unwrap();
    let expected = &vector["expected"];

    let (plaintext, secret) = envelope.open(&key, &ticket).unwrap();
    assert_hex(
        secret.expose(),
        crate::vector_files::text(expected, "shared_secret_hex"),
        "shared secret",
    );
    assert_eq!(
        plaintext.as_slice(),
        crate::vector_files::text(expected, "plaintext").as_bytes()
    );

    let keys = TicketKeys::derive(&secret, ticket.as_bytes()).unwrap();
    assert_hex(
        keys.payload_key(),
        crate::vector_files::text(expected, "key_payload_hex"),
        "key_payload",
    );
    assert_hex(
        keys.client_to_server(),
        crate::vector_files::text(expected, "key_send_hex"),
        "key_send",
    );
    assert_hex(
        keys.server_to_client(),
        crate::vector_files::text(expected, "key_receive_hex"),
        "key_receive",
    );
    assert_hex(
        keys.payload_nonce(),
        crate::vector_files::text(expected, "nonce_payload_hex"),
        "nonce_payload",
    );
}

#[test]
fn ticket_exchange_refuses_the_wrong_ticket() {
    let vector = crate::vector_files::openuds5("ticket-exchange.json");
    let private = portcullis_proto::b64::decode(
        crate::vector_files::text(&vector, "kem_private_key_b64"),
        "private key",
    )
    .unwrap();
    let key = DecapsulationKey::from_expanded(&private).unwrap();
    let envelope: Envelope = serde_json::from_value(vector["response"].clone()).unwrap();
    let mut wrong = crate::vector_files::text(&vector, "ticket").to_owned();
    wrong.replace_range(0..1, "X");
    let wrong = TicketId::parse(&wrong).unwrap();
    assert_eq!(
        envelope.open(&key, &wrong).unwrap_err(),
        portcullis_proto::Error::DecryptFailed
    );
}
