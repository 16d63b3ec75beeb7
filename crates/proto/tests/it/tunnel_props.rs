//! Property tests of the tunnel codecs and record layer: round trips, prefixes, and
//! arbitrary input that must never panic.

use portcullis_proto::tunnel::{
    ClientHello, Control, ErrorCode, MAX_PLAINTEXT, OVERHEAD, PAYLOAD_OFFSET, Record, RecordOpener,
    ServerMessage, client, compute_open_proof, server, verify_open_proof,
};
use portcullis_proto::{ConnectionId, SessionId, SharedSecret, TicketId};
use proptest::prelude::*;

fn ticket() -> impl Strategy<Value = TicketId> {
    "[A-Za-z0-9]{48}".prop_map(|text| TicketId::parse(&text).unwrap())
}

fn client_hello() -> impl Strategy<Value = ClientHello> {
    prop_oneof![
        Just(ClientHello::Test),
        (ticket(), any::<[u8; 32]>()).prop_map(|(ticket, client_random)| ClientHello::Open {
            ticket,
            client_random
        }),
        (any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(id, client_random)| {
            ClientHello::Attach {
                session_id: SessionId::from_bytes(id),
                client_random,
            }
        }),
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u64>(),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(id, connection, received, client_random)| ClientHello::Resume {
                    session_id: SessionId::from_bytes(id),
                    connection_id: ConnectionId(connection),
                    received,
                    client_random,
                }
            ),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        Just(ServerMessage::TestAnswer),
        any::<[u8; 32]>().prop_map(|server_random| ServerMessage::Challenge { server_random }),
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u64>(),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(id, connection, server_received, confirm)| ServerMessage::Accept {
                    session_id: SessionId::from_bytes(id),
                    connection_id: ConnectionId(connection),
                    server_received,
                    confirm,
                }
            ),
        any::<u16>().prop_map(|code| ServerMessage::Refuse(ErrorCode::from_u16(code))),
    ]
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        any::<u64>().prop_map(|received| Control::Ack { received }),
        any::<u64>().prop_map(Control::Ping),
        any::<u64>().prop_map(Control::Pong),
        Just(Control::Close),
        Just(Control::EndSession),
        (any::<u16>(), ".{0,300}")
            .prop_map(|(code, message)| { Control::error(ErrorCode::from_u16(code), &message) }),
    ]
}

/// A client and a server connection of one fresh session.
fn established() -> (client::Established, server::Established) {
    let ticket = TicketId::parse(&"t".repeat(48)).unwrap();
    let secret = SharedSecret::from_bytes([3; 32]);
    let mut to_server = Vec::new();
    let state = client::open(&ticket, &secret, [1; 32], &mut to_server);
    let (hello, _) = ClientHello::decode(&to_server).unwrap().unwrap();
    let mut to_client = Vec::new();
    let server::Start::AwaitProof(server_state) = server::start(hello, [2; 32], &mut to_client)
    else {
        panic!("no challenge")
    };
    let (challenge, _) = ServerMessage::decode(&to_client).unwrap().unwrap();
    let mut proof = Vec::new();
    let state = state.handle(challenge, &mut proof).unwrap();
    let server::ProofReceived::Open(open) = server_state.receive_proof(proof.try_into().unwrap())
    else {
        panic!("not open")
    };
    let mut accept = Vec::new();
    let session = SessionId::from_bytes([9; 16]);
    let server = open
        .complete(&secret, session, ConnectionId(1), &mut accept)
        .unwrap();
    let (accept, _) = ServerMessage::decode(&accept).unwrap().unwrap();
    (state.handle(accept).unwrap().connection, server.connection)
}

proptest! {
    #[test]
    fn client_hello_round_trips(hello in client_hello()) {
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), hello.encoded_len());
        prop_assert_eq!(ClientHello::decode(&bytes).unwrap(), Some((hello, bytes.len())));
        for cut in 0..bytes.len() {
            prop_assert_eq!(ClientHello::decode(&bytes[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn client_hello_decode_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(Some((hello, used))) = ClientHello::decode(&bytes) {
            let mut again = Vec::new();
            hello.encode(&mut again);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn client_hello_with_valid_prefix_never_panics(command in 0u8..6, tail in proptest::collection::vec(any::<u8>(), 0..90)) {
        let mut bytes = b"PCTN\x01".to_vec();
        bytes.push(command);
        bytes.extend_from_slice(&tail);
        let _ = ClientHello::decode(&bytes);
    }

    #[test]
    fn server_message_round_trips(message in server_message()) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(ServerMessage::decode(&bytes).unwrap(), Some((message, bytes.len())));
        for cut in 0..bytes.len() {
            prop_assert_eq!(ServerMessage::decode(&bytes[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn server_message_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(Some((message, used))) = ServerMessage::decode(&bytes) {
            let mut again = Vec::new();
            message.encode(&mut again);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn records_round_trip_in_both_directions(
        items in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Ok),
                control().prop_map(Err),
            ],
            1..12,
        ),
        split in any::<prop::sample::Index>(),
    ) {
        let (mut client, mut server) = established();
        let mut wire = Vec::new();
        let mut frame = vec![0u8; OVERHEAD + 3000];
        for item in &items {
            match item {
                Ok(data) => {
                    frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + data.len()].copy_from_slice(data);
                    let len = client.sealer.seal_in_place(&mut frame, data.len()).unwrap();
                    wire.extend_from_slice(&frame[..len]);
                }
                Err(control) => client.sealer.seal_control(control, &mut wire).unwrap(),
            }
        }
        // Every strict prefix of the first frame waits for more bytes.
        let first_len = RecordOpener::frame_len(&wire).unwrap().unwrap();
        let cut = split.index(first_len);
        let mut prefix = wire[..cut].to_vec();
        prop_assert!(server.opener.open_in_place(&mut prefix).unwrap().is_none());
        let mut offset = 0;
        for item in &items {
            let (record, used) = server.opener.open_in_place(&mut wire[offset..]).unwrap().unwrap();
            match (item, record) {
                (Ok(data), Record::Data(opened)) => prop_assert_eq!(&data[..], opened),
                (Err(control), Record::Control(opened)) => prop_assert_eq!(control, &opened),
                (_, other) => prop_assert!(false, "unexpected {:?}", other),
            }
            offset += used;
        }
        prop_assert_eq!(offset, wire.len());
        // And the other direction.
        let mut back = Vec::new();
        server.sealer.seal_data(b"back", &mut back).unwrap();
        let (record, _) = client.opener.open_in_place(&mut back).unwrap().unwrap();
        prop_assert_eq!(record, Record::Data(b"back"));
    }

    #[test]
    fn opener_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), header in any::<u32>()) {
        let (_, mut server) = established();
        let mut buf = header.to_be_bytes().to_vec();
        buf.extend_from_slice(&bytes);
        match server.opener.open_in_place(&mut buf) {
            Ok(None) => prop_assert!(header as usize + 4 > buf.len()),
            Ok(Some(_)) => prop_assert!(false, "forged record accepted"),
            Err(_) => prop_assert!(server.opener.open_in_place(&mut []).is_err(), "errors stick"),
        }
    }

    #[test]
    fn bit_flips_in_records_fail(data in proptest::collection::vec(any::<u8>(), 0..500), bit in any::<prop::sample::Index>()) {
        let (mut client, mut server) = established();
        let mut wire = Vec::new();
        client.sealer.seal_data(&data, &mut wire).unwrap();
        let bit = bit.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        wire.resize(wire.len() + MAX_PLAINTEXT + OVERHEAD, 0);
        prop_assert!(server.opener.open_in_place(&mut wire).is_err());
    }

    #[test]
    fn open_proofs_bind_every_input(
        secret in any::<[u8; 32]>(),
        ticket in ticket(),
        cr in any::<[u8; 32]>(),
        sr in any::<[u8; 32]>(),
        flip in 0usize..4,
    ) {
        let secret = SharedSecret::from_bytes(secret);
        let proof = compute_open_proof(&secret, &ticket, &cr, &sr).unwrap();
        prop_assert_eq!(verify_open_proof(&secret, &ticket, &cr, &sr, &proof), Ok(()));
        let (mut cr2, mut sr2, mut proof2, mut secret2) = (cr, sr, proof, *secret.expose());
        match flip {
            0 => cr2[0] ^= 1,
            1 => sr2[31] ^= 1,
            2 => proof2[7] ^= 1,
            _ => secret2[3] ^= 1,
        }
        let secret2 = SharedSecret::from_bytes(secret2);
        prop_assert_eq!(
            verify_open_proof(&secret2, &ticket, &cr2, &sr2, &proof2),
            Err(portcullis_proto::Error::BadProof("proof"))
        );
    }
}
