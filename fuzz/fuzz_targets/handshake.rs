//! Handshake parsers: any bytes give a message, "need more", or an error — never a panic;
//! a prefix of a valid message is never an error; a decoded message re-encodes to the
//! same bytes; the server state machine accepts whatever the parser accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::tunnel::{ClientHello, ServerMessage, server};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((hello, used))) = ClientHello::decode(data) {
        let mut encoded = Vec::new();
        hello.encode(&mut encoded);
        assert_eq!(encoded, data[..used]);
        for cut in 0..used {
            assert!(matches!(ClientHello::decode(&data[..cut]), Ok(None)));
        }
        let mut out = Vec::new();
        if let server::Start::AwaitProof(await_proof) = server::start(hello, [9; 32], &mut out) {
            let mut proof = [0u8; 32];
            let rest = &data[used..];
            let n = rest.len().min(32);
            proof[..n].copy_from_slice(&rest[..n]);
            let _ = await_proof.receive_proof(proof);
        }
    }
    if let Ok(Some((message, used))) = ServerMessage::decode(data) {
        let mut encoded = Vec::new();
        message.encode(&mut encoded);
        assert_eq!(encoded, data[..used]);
        for cut in 0..used {
            assert!(matches!(ServerMessage::decode(&data[..cut]), Ok(None)));
        }
    }
});
