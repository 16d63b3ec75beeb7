//! Handshake state machine tests: success, refusals, wrong proofs and confirmations.

use super::key_schedule::{Accepted, Transcript};
use super::*;
use crate::{ConnectionId, Error, SessionId, SharedSecret, TicketId};

const CR: Random = [0x11; 32];
const SR: Random = [0x22; 32];
const SESSION: SessionId = SessionId::from_bytes([0x33; 16]);

fn ticket() -> TicketId {
    TicketId::parse("PortcullisTunnelTicket0123456789abcdefghijklmnop").unwrap()
}

fn secret() -> SharedSecret {
    SharedSecret::from_bytes([0x44; 32])
}

fn decode_one(bytes: &[u8]) -> ServerMessage {
    let (message, used) = ServerMessage::decode(bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    message
}

/// Runs a server handshake to the point where the proof arrived.
fn server_until_proof(
    hello_bytes: &[u8],
    proof: &[u8],
    out: &mut Vec<u8>,
) -> server::ProofReceived {
    let (hello, used) = ClientHello::decode(hello_bytes).unwrap().unwrap();
    assert_eq!(used, hello_bytes.len());
    let server::Start::AwaitProof(state) = server::start(hello, SR, out) else {
        panic!("not a challenge")
    };
    state.receive_proof(proof.try_into().unwrap())
}

#[test]
fn test_command_answers_ok() {
    let mut to_server = Vec::new();
    let client = client::test(&mut to_server);
    assert_eq!(to_server, b"PCTN\x01\x01");
    let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
    let mut to_client = Vec::new();
    assert!(matches!(
        server::start(hello, SR, &mut to_client),
        server::Start::Tested
    ));
    assert_eq!(to_client, b"OK");
    assert_eq!(client.handle(decode_one(&to_client)), Ok(()));
    let refused =
        client::test(&mut Vec::new()).handle(ServerMessage::Refuse(ErrorCode::ShuttingDown));
    assert_eq!(refused, Err(Error::Refused(ErrorCode::ShuttingDown)));
}

#[test]
fn open_completes_and_both_sides_agree() {
    let mut to_server = Vec::new();
    let client = client::open(&ticket(), &secret(), CR, &mut to_server);
    let hello_len = to_server.len();
    let mut to_client = Vec::new();
    let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
    let server::Start::AwaitProof(server) = server::start(hello, SR, &mut to_client) else {
        panic!()
    };
    assert_eq!(server.command(), Command::Open);
    let client = client
        .handle(decode_one(&to_client), &mut to_server)
        .unwrap();
    let proof: [u8; MAC_LEN] = to_server[hello_len..].try_into().unwrap();
    let server::ProofReceived::Open(server) = server.receive_proof(proof) else {
        panic!()
    };
    assert_eq!(server.ticket(), &ticket());
    assert_eq!((server.client_random(), server.server_random()), (&CR, &SR));
    assert_eq!(
        verify_open_proof(&secret(), &ticket(), &CR, &SR, server.proof()),
        Ok(())
    );
    assert_eq!(
        compute_open_proof(&secret(), &ticket(), &CR, &SR).unwrap(),
        proof
    );
    to_client.clear();
    let mut server = server
        .complete(&secret(), SESSION, ConnectionId(1), &mut to_client)
        .unwrap()
        .connection;
    let opened = client.handle(decode_one(&to_client)).unwrap();
    assert_eq!(opened.credentials.session_id(), SESSION);
    let mut client = opened.connection;
    assert_eq!(
        (client.session_id, client.connection_id),
        (SESSION, ConnectionId(1))
    );
    assert_eq!(client.server_received, 0);

    let mut wire = Vec::new();
    client.sealer.seal_data(b"ping", &mut wire).unwrap();
    let (record, _) = server.opener.open_in_place(&mut wire).unwrap().unwrap();
    assert_eq!(record, Record::Data(b"ping"));
    let mut wire = Vec::new();
    server.sealer.seal_data(b"pong", &mut wire).unwrap();
    let (record, _) = client.opener.open_in_place(&mut wire).unwrap().unwrap();
    assert_eq!(record, Record::Data(b"pong"));
}

#[test]
fn wrong_proof_is_refused_by_the_server() {
    let mut to_server = Vec::new();
    let _client = client::open(&ticket(), &secret(), CR, &mut to_server);
    let mut out = Vec::new();
    let server::ProofReceived::Open(state) = server_until_proof(&to_server, &[0; 32], &mut out)
    else {
        panic!()
    };
    out.clear();
    let result = state.complete(&secret(), SESSION, ConnectionId(1), &mut out);
    assert_eq!(result.unwrap_err(), Error::BadProof("proof"));
    assert!(out.is_empty(), "nothing is sent on a wrong proof");
    server::refuse(ErrorCode::for_error(&Error::BadProof("proof")), &mut out);
    assert_eq!(out, [3, 0, 3]);
}

#[test]
fn attach_with_the_wrong_session_key_is_refused() {
    let credentials = SessionCredentials::new(SESSION, SessionKey::derive(&secret(), &ticket()));
    let mut to_server = Vec::new();
    let client = client::attach(&credentials, CR, &mut to_server);
    let hello_len = to_server.len();
    let mut to_client = Vec::new();
    let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
    let server::Start::AwaitProof(server) = server::start(hello, SR, &mut to_client) else {
        panic!()
    };
    let _client = client
        .handle(decode_one(&to_client), &mut to_server)
        .unwrap();
    let server::ProofReceived::Attach(server) =
        server.receive_proof(to_server[hello_len..].try_into().unwrap())
    else {
        panic!()
    };
    assert_eq!(server.session_id(), SESSION);
    let other_key = SessionKey::derive(&SharedSecret::from_bytes([0x55; 32]), &ticket());
    let result = server.complete(&other_key, ConnectionId(2), &mut Vec::new());
    assert_eq!(result.unwrap_err(), Error::BadProof("proof"));
}

#[test]
fn wrong_confirm_is_refused_by_the_client() {
    let mut to_server = Vec::new();
    let client = client::open(&ticket(), &secret(), CR, &mut to_server);
    let client = client
        .handle(
            ServerMessage::Challenge { server_random: SR },
            &mut to_server,
        )
        .unwrap();
    let forged = ServerMessage::Accept {
        session_id: SESSION,
        connection_id: ConnectionId(1),
        server_received: 0,
        confirm: [0; 32],
    };
    assert_eq!(
        client.handle(forged).unwrap_err(),
        Error::BadProof("confirm")
    );
}

#[test]
fn refuse_and_unexpected_messages_end_the_client() {
    let client = client::open(&ticket(), &secret(), CR, &mut Vec::new());
    let refused = client.handle(
        ServerMessage::Refuse(ErrorCode::AccessDenied),
        &mut Vec::new(),
    );
    assert_eq!(
        refused.unwrap_err(),
        Error::Refused(ErrorCode::AccessDenied)
    );

    let client = client::open(&ticket(), &secret(), CR, &mut Vec::new());
    let unexpected = client.handle(ServerMessage::TestAnswer, &mut Vec::new());
    assert!(matches!(unexpected, Err(Error::Unexpected(_))));

    let client = client::open(&ticket(), &secret(), CR, &mut Vec::new());
    let client = client.handle(
        ServerMessage::Challenge { server_random: SR },
        &mut Vec::new(),
    );
    let refused = client
        .unwrap()
        .handle(ServerMessage::Refuse(ErrorCode::BrokerUnavailable));
    assert_eq!(
        refused.unwrap_err(),
        Error::Refused(ErrorCode::BrokerUnavailable)
    );

    let client = client::open(&ticket(), &secret(), CR, &mut Vec::new());
    let client = client.handle(
        ServerMessage::Challenge { server_random: SR },
        &mut Vec::new(),
    );
    let unexpected = client
        .unwrap()
        .handle(ServerMessage::Challenge { server_random: SR });
    assert!(matches!(unexpected, Err(Error::Unexpected(_))));
}

/// A correctly confirmed `Accept` whose fields contradict the hello is still refused.
#[test]
fn accept_must_match_the_hello() {
    let key = SessionKey::derive(&secret(), &ticket());
    let credentials = SessionCredentials::new(SESSION, key.duplicate());
    let accept_for = |hello: &ClientHello, proof: &[u8; MAC_LEN], accepted: Accepted| {
        let transcript = Transcript::new(hello, &SR);
        let confirm = key
            .handshake_keys()
            .unwrap()
            .confirm(&transcript, proof, &accepted);
        ServerMessage::Accept {
            session_id: accepted.session_id,
            connection_id: accepted.connection_id,
            server_received: accepted.server_received,
            confirm,
        }
    };
    let other_session = SessionId::from_bytes([0x66; 16]);
    let cases = [
        (
            None,
            Accepted {
                session_id: other_session,
                connection_id: ConnectionId(2),
                server_received: 0,
            },
        ),
        (
            None,
            Accepted {
                session_id: SESSION,
                connection_id: ConnectionId(2),
                server_received: 5,
            },
        ),
        (
            Some(7),
            Accepted {
                session_id: SESSION,
                connection_id: ConnectionId(8),
                server_received: 0,
            },
        ),
        (
            Some(7),
            Accepted {
                session_id: other_session,
                connection_id: ConnectionId(7),
                server_received: 0,
            },
        ),
    ];
    for (resume, accepted) in cases {
        let mut out = Vec::new();
        let state = match resume {
            None => client::attach(&credentials, CR, &mut out),
            Some(id) => client::resume(&credentials, ConnectionId(id), 0, CR, &mut out),
        };
        let hello = ClientHello::decode(&out).unwrap().unwrap().0;
        let hello_len = out.len();
        let state = state
            .handle(ServerMessage::Challenge { server_random: SR }, &mut out)
            .unwrap();
        let proof: [u8; MAC_LEN] = out[hello_len..].try_into().unwrap();
        let result = state.handle(accept_for(&hello, &proof, accepted));
        assert!(matches!(result, Err(Error::Unexpected(_))), "{accepted:?}");
    }
}

/// A client's Attach or Resume handshake up to the proof, for the two-step server API.
fn proof_from_client(
    credentials: &SessionCredentials,
    resume: Option<(ConnectionId, u64)>,
) -> (
    client::AwaitAccept<client::Established>,
    server::ProofReceived,
) {
    let mut to_server = Vec::new();
    let client = match resume {
        None => client::attach(credentials, CR, &mut to_server),
        Some((id, received)) => client::resume(credentials, id, received, CR, &mut to_server),
    };
    let mut challenge = Vec::new();
    let server::Start::AwaitProof(server) = server::start(
        ClientHello::decode(&to_server).unwrap().unwrap().0,
        SR,
        &mut challenge,
    ) else {
        panic!("no challenge")
    };
    let mut proof = Vec::new();
    let client = client.handle(decode_one(&challenge), &mut proof).unwrap();
    (client, server.receive_proof(proof.try_into().unwrap()))
}

#[test]
fn attach_and_resume_verify_the_proof_before_anything_else() {
    let key = SessionKey::derive(&secret(), &ticket());
    let credentials = SessionCredentials::new(SESSION, SessionKey::derive(&secret(), &ticket()));
    let wrong = SessionKey::derive(&SharedSecret::from_bytes([9; 32]), &ticket());

    // Attach: a wrong key fails at verify; the right one verifies, then accepts.
    let (_, server::ProofReceived::Attach(attach)) = proof_from_client(&credentials, None) else {
        panic!()
    };
    assert_eq!(attach.verify(&wrong).unwrap_err(), Error::BadProof("proof"));
    let (client, server::ProofReceived::Attach(attach)) = proof_from_client(&credentials, None)
    else {
        panic!()
    };
    let verified = attach.verify(&key).unwrap();
    let mut accept = Vec::new();
    let server = verified.accept(&key, ConnectionId(2), &mut accept).unwrap();
    let client = client.handle(decode_one(&accept)).unwrap();
    assert_eq!(
        (client.connection_id, server.connection_id),
        (ConnectionId(2), ConnectionId(2))
    );

    // Resume: `received` is readable only once the proof verified.
    let resume_of = Some((ConnectionId(1), 40));
    let (_, server::ProofReceived::Resume(resume)) = proof_from_client(&credentials, resume_of)
    else {
        panic!()
    };
    assert_eq!(resume.verify(&wrong).unwrap_err(), Error::BadProof("proof"));
    let (client, server::ProofReceived::Resume(resume)) =
        proof_from_client(&credentials, resume_of)
    else {
        panic!()
    };
    let verified = resume.verify(&key).unwrap();
    assert_eq!(
        (verified.connection_id(), verified.client_received()),
        (ConnectionId(1), 40)
    );
    let mut accept = Vec::new();
    let server = verified.accept(&key, 77, &mut accept).unwrap();
    let client = client.handle(decode_one(&accept)).unwrap();
    assert_eq!((client.server_received, server.client_received), (77, 40));
}

/// A completed `Hold` handshake: the client's and the server's record keys.
fn held() -> (client::Established, server::Established) {
    let key = SessionKey::derive(&secret(), &ticket());
    let credentials = SessionCredentials::new(SESSION, key.duplicate());
    let mut to_server = Vec::new();
    let client = client::hold(&credentials, CR, &mut to_server);
    assert_eq!(&to_server[..6], b"PCTN\x01\x05");
    assert_eq!(to_server.len(), Command::Hold.hello_len());
    let hello_len = to_server.len();
    let mut to_client = Vec::new();
    let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
    let server::Start::AwaitProof(server) = server::start(hello, SR, &mut to_client) else {
        panic!()
    };
    assert_eq!(server.command(), Command::Hold);
    let client = client
        .handle(decode_one(&to_client), &mut to_server)
        .unwrap();
    let proof: [u8; MAC_LEN] = to_server[hello_len..].try_into().unwrap();
    let server::ProofReceived::Hold(server) = server.receive_proof(proof) else {
        panic!()
    };
    assert_eq!(server.session_id(), SESSION);
    let mut accept = Vec::new();
    let server = server
        .verify(&key)
        .unwrap()
        .accept(&key, &mut accept)
        .unwrap();
    assert_eq!(server.connection_id, ConnectionId::HOLD);
    let client = client.handle(decode_one(&accept)).unwrap();
    assert_eq!(
        (client.connection_id, client.server_received),
        (ConnectionId(0), 0)
    );
    (client, server)
}

#[test]
fn a_hold_is_accepted_with_connection_id_zero_and_a_wrong_proof_is_refused() {
    held();
    let key = SessionKey::derive(&secret(), &ticket());
    let other = SessionKey::derive(&SharedSecret::from_bytes([0x55; 32]), &ticket());
    let credentials = SessionCredentials::new(SESSION, other);
    let mut to_server = Vec::new();
    let client = client::hold(&credentials, CR, &mut to_server);
    let hello_len = to_server.len();
    let mut to_client = Vec::new();
    let server::ProofReceived::Hold(server) = ({
        let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
        let server::Start::AwaitProof(server) = server::start(hello, SR, &mut to_client) else {
            panic!()
        };
        let _ = client
            .handle(decode_one(&to_client), &mut to_server)
            .unwrap();
        server.receive_proof(to_server[hello_len..].try_into().unwrap())
    }) else {
        panic!()
    };
    assert_eq!(server.verify(&key).unwrap_err(), Error::BadProof("proof"));
}

#[test]
fn a_client_refuses_a_hold_accept_that_names_a_data_connection() {
    let key = SessionKey::derive(&secret(), &ticket());
    let credentials = SessionCredentials::new(SESSION, key.duplicate());
    let mut to_server = Vec::new();
    let client = client::hold(&credentials, CR, &mut to_server);
    let hello_len = to_server.len();
    let mut challenge = Vec::new();
    ServerMessage::Challenge { server_random: SR }.encode(&mut challenge);
    let client = client
        .handle(decode_one(&challenge), &mut to_server)
        .unwrap();
    // A server that answers the hold as if it were an Attach (connection 1), with a
    // correct confirm: the client refuses it.
    let (hello, _) = ClientHello::decode(&to_server[..hello_len])
        .unwrap()
        .unwrap();
    let transcript = Transcript::new(&hello, &SR);
    let proof: [u8; MAC_LEN] = to_server[hello_len..].try_into().unwrap();
    let accepted = Accepted {
        session_id: SESSION,
        connection_id: ConnectionId(1),
        server_received: 0,
    };
    let confirm = key
        .handshake_keys()
        .unwrap()
        .confirm(&transcript, &proof, &accepted);
    let accept = ServerMessage::Accept {
        session_id: SESSION,
        connection_id: ConnectionId(1),
        server_received: 0,
        confirm,
    };
    assert!(matches!(client.handle(accept), Err(Error::Unexpected(_))));
}

#[test]
fn a_hold_carries_pings_and_the_end_of_the_session_and_nothing_else() {
    let start = std::time::Instant::now();
    let (client, server) = held();
    let mut client = HoldLink::client(client.sealer, client.opener, start);
    let mut server = HoldLink::server(server.sealer, server.opener, start);
    // The client pings after the interval without sending; the server answers.
    assert_eq!(client.poll_timeout(), start + HOLD_PING_INTERVAL);
    let later = start + HOLD_PING_INTERVAL;
    client.handle_timeout(later).unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire, later).unwrap();
    let (event, used) = server.handle_input(&mut wire, later).unwrap().unwrap();
    assert_eq!((event, used), (HoldEvent::Nothing, wire.len()));
    assert_eq!(server.poll_timeout(), later + HOLD_TIMEOUT);
    let mut back = Vec::new();
    server.poll_transmit(&mut back, later).unwrap();
    let (event, _) = client.handle_input(&mut back, later).unwrap().unwrap();
    assert_eq!(event, HoldEvent::Pong(1));
    // The server ends the session: the client learns why.
    let mut ended = Vec::new();
    server
        .session_ended(EndReason::IdleTimeout, &mut ended, later)
        .unwrap();
    assert!(server.is_finished());
    let (event, _) = client.handle_input(&mut ended, later).unwrap().unwrap();
    assert_eq!(event, HoldEvent::SessionEnded(EndReason::IdleTimeout));
    assert!(client.is_finished());
    assert!(matches!(
        client.session_ended(EndReason::IdleTimeout, &mut Vec::new(), later),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn a_hold_fails_on_data_and_on_silence() {
    let start = std::time::Instant::now();
    let (client, server) = held();
    let mut client_sealer = client.sealer;
    let mut server_link = HoldLink::server(server.sealer, server.opener, start);
    let mut data = Vec::new();
    client_sealer
        .seal_data(b"not on a hold", &mut data)
        .unwrap();
    assert!(matches!(
        server_link.handle_input(&mut data, start),
        Err(Error::Unexpected(_))
    ));
    // The failure sticks.
    assert!(server_link.poll_transmit(&mut Vec::new(), start).is_err());

    let (client, server) = held();
    let mut server_link = HoldLink::server(server.sealer, server.opener, start);
    let mut client_link = HoldLink::client(client.sealer, client.opener, start);
    let mut end = Vec::new();
    client_link.end_session(&mut end, start).unwrap();
    let (event, _) = server_link.handle_input(&mut end, start).unwrap().unwrap();
    assert_eq!(event, HoldEvent::EndSession);
    // Silence: the server gives a hold up after HOLD_TIMEOUT, the client after twice
    // the ping interval.
    let (client, server) = held();
    let mut server_link = HoldLink::server(server.sealer, server.opener, start);
    let mut client_link = HoldLink::client(client.sealer, client.opener, start);
    server_link
        .handle_timeout(start + HOLD_TIMEOUT - core::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        server_link.handle_timeout(start + HOLD_TIMEOUT),
        Err(Error::Silent("nothing received on the hold"))
    );
    client_link
        .handle_timeout(start + HOLD_PING_INTERVAL)
        .unwrap();
    assert!(
        client_link
            .handle_timeout(start + 2 * HOLD_PING_INTERVAL)
            .is_err()
    );
}
