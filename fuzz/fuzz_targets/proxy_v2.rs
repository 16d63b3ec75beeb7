//! The PROXY protocol v2 decoder on arbitrary bytes from a load balancer (or whoever
//! reaches the port): never a panic, never more than `MAX_HEADER_LEN` bytes consumed, and
//! answers consistent across prefixes — once a prefix is refused every longer input is,
//! and once a prefix holds a header every longer input gives that same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::proxy_v2::{self, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let full = proxy_v2::decode(data);
    if let Ok(Some((_, used))) = &full {
        assert!(*used <= data.len() && *used <= MAX_HEADER_LEN);
    }
    if let Ok(None) = &full {
        // Need more bytes is only ever said below the cap.
        assert!(data.len() < MAX_HEADER_LEN);
    }
    let mut settled = None;
    for len in 0..=data.len().min(MAX_HEADER_LEN + 1) {
        let answer = proxy_v2::decode(&data[..len]);
        match (&settled, &answer) {
            (None, Ok(None)) => {}
            (None, _) => settled = Some(answer.clone()),
            (Some(Err(_)), Err(_)) => {}
            (Some(earlier), _) => assert_eq!(earlier, &answer, "prefix of {len} bytes"),
        }
    }
    if let Some(settled) = settled {
        match (settled, full) {
            (Err(_), Err(_)) => {}
            (settled, full) => assert_eq!(settled, full),
        }
    }
});
