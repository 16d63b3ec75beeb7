//! The JSON bodies of both APIs and the launch URL on arbitrary bytes: the first byte picks
//! the parser, the rest is its input. Every parse either fails with a typed error or yields
//! a value whose checked form re-encodes and parses again to the same result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::api::{LaunchUrl, TicketRequest, TunnelRequest, TunnelStart};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(request) = TicketRequest::from_json(body) {
                let _ = request.check();
            }
        }
        1 => {
            if let Ok(request) = TunnelRequest::from_json(body) {
                let _ = request.check();
            }
        }
        2 => {
            if let Ok(start) = TunnelStart::from_json(body) {
                let again = TunnelStart::from_json(&start.to_json().expect("serializable"))
                    .expect("a serialized start answer parses");
                assert_eq!(again, start);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                if let Ok(url) = LaunchUrl::parse(text) {
                    let again = LaunchUrl::parse(&url.expose()).expect("an exposed URL parses");
                    assert_eq!(again.host(), url.host());
                    assert_eq!(again.ticket(), url.ticket());
                }
            }
        }
    }
});
