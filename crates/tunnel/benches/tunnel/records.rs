//! The record layer alone, with no I/O: what sealing and opening full-size Data records
//! (AES-256-GCM, in place) costs one thread per GiB, to set beside the relays' CPU figures.

use std::time::Instant;

use portcullis_proto::tunnel::{
    DEFAULT_PLAINTEXT, OVERHEAD, PAYLOAD_OFFSET, ServerMessage, client, fresh_random, server,
};
use portcullis_proto::{ConnectionId, SessionId, SharedSecret, TicketId};

/// Seconds of one thread per GiB to seal (launcher) and open (server) `bytes` of records.
pub(crate) fn seal_and_open_secs_per_gib(bytes: u64) -> f64 {
    let (mut sealer, mut opener) = key_pair();
    let mut frame = vec![0x3Cu8; OVERHEAD + DEFAULT_PLAINTEXT];
    let records = bytes.div_ceil(DEFAULT_PLAINTEXT as u64);
    let started = Instant::now();
    for _ in 0..records {
        frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + DEFAULT_PLAINTEXT].fill(0x3C);
        let len = sealer.seal_in_place(&mut frame, DEFAULT_PLAINTEXT).unwrap();
        let (_, used) = opener.open_in_place(&mut frame[..len]).unwrap().unwrap();
        assert_eq!(used, len);
    }
    let moved = records * DEFAULT_PLAINTEXT as u64;
    started.elapsed().as_secs_f64() / (moved as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// The launcher's sealer and the server's opener of one connection, from an in-memory
/// `Open` handshake.
fn key_pair() -> (
    portcullis_proto::tunnel::RecordSealer,
    portcullis_proto::tunnel::RecordOpener,
) {
    let ticket = TicketId::generate().unwrap();
    let secret = SharedSecret::generate().unwrap();
    let mut to_server = Vec::new();
    let hello = client::open(&ticket, &secret, fresh_random().unwrap(), &mut to_server);
    let (decoded, _) = portcullis_proto::tunnel::ClientHello::decode(&to_server)
        .unwrap()
        .unwrap();
    let mut to_client = Vec::new();
    let server::Start::AwaitProof(awaiting) =
        server::start(decoded, fresh_random().unwrap(), &mut to_client)
    else {
        panic!("an Open hello awaits a proof");
    };
    let (challenge, _) = ServerMessage::decode(&to_client).unwrap().unwrap();
    to_server.clear();
    let accepting = hello.handle(challenge, &mut to_server).unwrap();
    let proof: [u8; 32] = to_server[..32].try_into().unwrap();
    let server::ProofReceived::Open(open) = awaiting.receive_proof(proof) else {
        panic!("an Open proof");
    };
    to_client.clear();
    let session = SessionId::generate().unwrap();
    let server_side = open
        .complete(&secret, session, ConnectionId(1), &mut to_client)
        .unwrap();
    let (accept, _) = ServerMessage::decode(&to_client).unwrap().unwrap();
    let client_side = accepting.handle(accept).unwrap();
    (client_side.connection.sealer, server_side.connection.opener)
}
