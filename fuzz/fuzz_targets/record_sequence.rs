//! Sequences of operations over one connection: the client seals data and control
//! records, the network delivers them in arbitrary slices, and may flip one bit. Untampered
//! delivery must yield exactly what was sent, in order; a flipped bit must end in an error
//! before any altered byte is delivered.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use portcullis_proto::tunnel::{Control, Record};

fuzz_target!(|data: &[u8]| {
    let Some((&flip, ops)) = data.split_first() else { return };
    let mut pair = common::pair();
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    let mut controls = Vec::new();
    for op in ops.chunks(3).take(64) {
        let len = usize::from(op.get(1).copied().unwrap_or(0)) * 64;
        match op[0] % 4 {
            0 | 1 => {
                let chunk = vec![op[0]; len.max(1)];
                pair.client.sealer.seal_data(&chunk, &mut wire).unwrap();
                sent.extend_from_slice(&chunk);
            }
            2 => {
                let control = Control::Ack { received: u64::from(op[0]) * len as u64 };
                pair.client.sealer.seal_control(&control, &mut wire).unwrap();
                controls.push(control);
            }
            _ => {
                let control = Control::Ping(len as u64);
                pair.client.sealer.seal_control(&control, &mut wire).unwrap();
                controls.push(control);
            }
        }
    }
    let tampered = flip != 0 && !wire.is_empty();
    if tampered {
        let bit = usize::from(flip) * 131 % (wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
    }

    let mut received = Vec::new();
    let mut received_controls = Vec::new();
    let mut failed = false;
    let mut offset = 0;
    while offset < wire.len() {
        match pair.server.opener.open_in_place(&mut wire[offset..]) {
            Ok(Some((Record::Data(bytes), used))) => {
                received.extend_from_slice(bytes);
                offset += used;
            }
            Ok(Some((Record::Control(control), used))) => {
                received_controls.push(control);
                offset += used;
            }
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(sent.starts_with(&received), "delivered bytes that were never sent");
    if tampered {
        // A flip in the length may leave the stream waiting for more bytes instead.
        assert!(failed || received.len() < sent.len() || received_controls.len() < controls.len());
    } else {
        assert!(!failed);
        assert_eq!(received, sent);
        assert_eq!(received_controls, controls);
    }
});
