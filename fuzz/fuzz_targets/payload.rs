//! The launcher payload decoder on arbitrary (decrypted) bytes: typed errors, bounded
//! decompression, and no payload that verifies without the broker's key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_proto::kem::EncapsulationKey;
use portcullis_proto::payload::{self, SignaturePolicy, SigningKey};
use portcullis_proto::TicketId;

struct Fixture {
    key: SigningKey,
    ticket: TicketId,
    client_key: EncapsulationKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut client_key = vec![0x11; 1152];
        client_key.extend_from_slice(&[0x22; 32]);
        Fixture {
            key: SigningKey::from_seed(&[5; 32]).unwrap(),
            ticket: TicketId::parse("PayloadPayloadPayloadPayloadPayloadPayloadPayloa").unwrap(),
            client_key: EncapsulationKey::from_bytes(&client_key).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = payload::decode(data) {
        let fixture = fixture();
        let verified = decoded.verify(
            fixture.key.verifying_key(),
            &fixture.ticket,
            &fixture.client_key,
            SignaturePolicy::IfPresent,
        );
        assert!(verified.is_err(), "a fuzzed payload verified under a key it never saw");
    }
});
