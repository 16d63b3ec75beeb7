//! A connected tunnel pair with fixed secrets and randoms, made through the real handshake.

use portcullis_proto::tunnel::{ClientHello, ServerMessage, client, server};
use portcullis_proto::{ConnectionId, SessionId, SharedSecret, TicketId};

pub struct Pair {
    pub client: client::Established,
    pub server: server::Established,
}

/// Runs Open between an in-memory client and server; panics only if the protocol itself
/// is broken (which is a finding too).
pub fn pair() -> Pair {
    let ticket = TicketId::parse("FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzz").unwrap();
    let secret = SharedSecret::from_bytes([7; 32]);
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();

    let await_challenge = client::open(&ticket, &secret, [1; 32], &mut to_server);
    let (hello, used) = ClientHello::decode(&to_server).unwrap().unwrap();
    to_server.drain(..used);
    let server::Start::AwaitProof(await_proof) = server::start(hello, [2; 32], &mut to_client)
    else {
        panic!("Open must await a proof");
    };
    let (challenge, used) = ServerMessage::decode(&to_client).unwrap().unwrap();
    to_client.drain(..used);
    let await_accept = await_challenge.handle(challenge, &mut to_server).unwrap();
    let proof: [u8; 32] = to_server[..32].try_into().unwrap();
    let server::ProofReceived::Open(open) = await_proof.receive_proof(proof) else {
        panic!("Open proof expected");
    };
    let server = open
        .complete(&secret, SessionId::from_bytes([3; 16]), ConnectionId(1), &mut to_client)
        .unwrap();
    let (accept, _) = ServerMessage::decode(&to_client).unwrap().unwrap();
    let client = await_accept.handle(accept).unwrap();
    Pair {
        client: client.connection,
        server: server.connection,
    }
}
