//! The JSON bodies of both APIs and the launch URL on arbitrary bytes: the first byte picks
//! the parser, the rest is its input. Every parse either fails with a typed error or yields
//! a value that survives its `check` consistently:
//!
//! - requests (what the broker parses): `from_json` then `check`; a checked request, built
//!   again by the sender's own constructor, checks to the same fields;
//! - answers (what launchers and tunnel servers parse): `from_json` then the checks their
//!   readers make (versions, the broker key, opening an envelope), and a re-encoded
//!   answer parses to the same value;
//! - the launch URL: `LaunchUrl::parse`, and the exposed URL parses to the same ticket.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_proto::api::{
    Answer, BrokerKey, LaunchUrl, TicketAnswer, TicketRequest, TunnelCommand, TunnelRequest,
    TunnelStart, VersionAnswer,
};
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::TicketId;

/// The requester's key and ticket that fuzzed envelopes are opened with.
fn recipient() -> &'static (DecapsulationKey, TicketId) {
    static RECIPIENT: OnceLock<(DecapsulationKey, TicketId)> = OnceLock::new();
    RECIPIENT.get_or_init(|| {
        (
            DecapsulationKey::generate().unwrap(),
            TicketId::parse("ApiBodiesApiBodiesApiBodiesApiBodiesApiBodiesApi").unwrap(),
        )
    })
}

/// A re-encoded answer parses to the same value.
macro_rules! assert_round_trips {
    ($answer:expr, $ty:ty) => {
        let again = <$ty>::from_json(&$answer.to_json().expect("serializable"))
            .expect("a serialized answer parses");
        assert_eq!(again, $answer);
    };
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    match selector % 7 {
        // Client API request: the ticket exchange.
        0 => {
            let Ok(request) = TicketRequest::from_json(body) else {
                return;
            };
            let Ok(checked) = request.check() else {
                return;
            };
            let rebuilt = TicketRequest::new(
                &checked.scrambler,
                &checked.client_key,
                &checked.hostname,
                checked.client.clone(),
            )
            .check()
            .expect("a checked request, built again, checks");
            assert_eq!(rebuilt.scrambler, checked.scrambler);
            assert_eq!(rebuilt.client_key, checked.client_key);
            assert_eq!(rebuilt.hostname, checked.hostname);
            assert_eq!(rebuilt.client, checked.client);
        }
        // Tunnel-server API request: start or stop.
        1 => {
            let Ok(request) = TunnelRequest::from_json(body) else {
                return;
            };
            match request.check() {
                Ok(TunnelCommand::Start(start)) => {
                    let rebuilt = TunnelRequest::start(
                        &start.ticket,
                        start.ip,
                        &start.tunnel_key,
                        start.proof.as_ref(),
                    );
                    let Ok(TunnelCommand::Start(again)) = rebuilt.check() else {
                        panic!("a checked start, built again, checks");
                    };
                    assert_eq!(again.ticket, start.ticket);
                    assert_eq!(again.ip, start.ip);
                    assert_eq!(again.tunnel_key, start.tunnel_key);
                    assert_eq!(again.proof, start.proof);
                }
                Ok(TunnelCommand::Stop(stop)) => {
                    let rebuilt = TunnelRequest::stop(&stop.notify, stop.sent, stop.recv);
                    let Ok(TunnelCommand::Stop(again)) = rebuilt.check() else {
                        panic!("a checked stop, built again, checks");
                    };
                    assert_eq!(again, stop);
                }
                Err(_) => {}
            }
        }
        // Tunnel-server API answer to start: the decrypted plaintext.
        2 => {
            if let Ok(start) = TunnelStart::from_json(body) {
                let again = TunnelStart::from_json(&start.to_json().expect("serializable"))
                    .expect("a serialized start answer parses");
                assert_eq!(again, start);
            }
        }
        // The launch URL.
        3 => {
            if let Ok(text) = std::str::from_utf8(body) {
                if let Ok(url) = LaunchUrl::parse(text) {
                    let again = LaunchUrl::parse(&url.expose()).expect("an exposed URL parses");
                    assert_eq!(again.host(), url.host());
                    assert_eq!(again.ticket(), url.ticket());
                }
            }
        }
        // Client API answer to the exchange (its envelope is also what the tunnel-server
        // API answers to start), opened as the requester does: a forged one never opens.
        4 => {
            let Ok(answer) = TicketAnswer::from_json(body) else {
                return;
            };
            assert_round_trips!(answer, TicketAnswer);
            if let Answer::Result(envelope) = answer {
                let (key, ticket) = recipient();
                assert!(envelope.open(key, ticket).is_err(), "a fuzzed envelope opened");
            }
        }
        // Client API answer to the version query, with the versions the launcher reads.
        5 => {
            let Ok(answer) = VersionAnswer::from_json(body) else {
                return;
            };
            assert_round_trips!(answer, VersionAnswer);
            if let Answer::Result(info) = answer {
                let _ = info.available();
                let _ = info.required();
            }
        }
        // Client API answer with the broker key, checked as at first contact.
        _ => {
            let Ok(answer) = Answer::<BrokerKey>::from_json(body) else {
                return;
            };
            assert_round_trips!(answer, Answer<BrokerKey>);
            if let Answer::Result(stated) = answer {
                if let Ok(key) = stated.verifying_key() {
                    assert!(key.fingerprint().eq_ignore_ascii_case(&stated.fingerprint));
                }
            }
        }
    }
});
