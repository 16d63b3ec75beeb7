//! The record opener on arbitrary bytes from a peer: never a panic, never a Data record
//! that the peer did not seal (forgeries fail authentication), and errors stick.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pair = common::pair();
    for opener in [&mut pair.server.opener, &mut pair.client.opener] {
        let mut buffer = data.to_vec();
        let mut offset = 0;
        loop {
            match opener.open_in_place(&mut buffer[offset..]) {
                // Only a 2^-128 forgery could get here from arbitrary bytes.
                Ok(Some((_, used))) => offset += used,
                Ok(None) => break,
                Err(_) => {
                    assert!(opener.failure().is_some());
                    assert!(opener.open_in_place(&mut buffer[offset..]).is_err());
                    break;
                }
            }
        }
    }
});
