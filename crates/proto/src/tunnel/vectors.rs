//! Known-answer vectors of tunnel protocol v1, checked in at
//! `crates/proto/tests/vectors/tunnel-v1.json`.
//!
//! The generator drives the real client and server state machines with fixed inputs and
//! records every intermediate value. The test compares the result with the file;
//! `PORTCULLIS_REGENERATE_VECTORS=1 cargo test -p portcullis-proto vectors` rewrites it.

use serde_json::{Value, json};

use super::*;
use crate::hex::encode as hex;
use crate::{ConnectionId, SessionId, SharedSecret, TicketId};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tunnel-v1.json");
const TICKET: &str = "PortcullisTunnelV1KnownAnswerTicket0123456789abc";
const SESSION: SessionId = SessionId::from_bytes(counting(0x60));

/// `[start, start + 1, …]`.
const fn counting<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = start.wrapping_add(i as u8);
        i += 1;
    }
    out
}

fn secret() -> SharedSecret {
    SharedSecret::from_bytes(counting(0x00))
}

fn ticket() -> TicketId {
    TicketId::parse(TICKET).unwrap()
}

/// Splits `bytes` at the end of the first server message.
fn server_message(bytes: &[u8]) -> ServerMessage {
    let (message, used) = ServerMessage::decode(bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    message
}

/// One record of a vector, in the order sent.
enum Item {
    Data(&'static [u8]),
    Control(Control),
}

/// Seals `items` with `sealer`, opens them with `opener`, and returns the JSON list of
/// records.
fn records(sealer: &mut RecordSealer, opener: &mut RecordOpener, items: &[Item]) -> Value {
    let mut list = Vec::new();
    for (counter, item) in items.iter().enumerate() {
        let mut frame = Vec::new();
        match item {
            Item::Data(plaintext) => {
                sealer.seal_data(plaintext, &mut frame).unwrap();
                list.push(json!({
                    "counter": counter,
                    "content_type": "data",
                    "body": hex(plaintext),
                    "frame": hex(&frame),
                }));
                let frame_len = frame.len();
                let (record, used) = opener.open_in_place(&mut frame).unwrap().unwrap();
                assert_eq!((record, used), (Record::Data(plaintext), frame_len));
            }
            Item::Control(control) => {
                sealer.seal_control(control, &mut frame).unwrap();
                let mut body = Vec::new();
                control.encode_body(&mut body).unwrap();
                list.push(json!({
                    "counter": counter,
                    "content_type": format!("{:#04x}", control.content_type()),
                    "body": hex(&body),
                    "frame": hex(&frame),
                }));
                let (record, _) = opener.open_in_place(&mut frame).unwrap().unwrap();
                assert_eq!(record, Record::Control(control.clone()));
            }
        }
    }
    Value::Array(list)
}

/// One handshake and its records.
struct Connection {
    name: &'static str,
    client_random: Random,
    server_random: Random,
    connection_id: ConnectionId,
    client_received: u64,
    server_received: u64,
    client_to_server: Vec<Item>,
    server_to_client: Vec<Item>,
}

/// A client handshake in either state type: opening a session or joining the open one.
enum Start<O, J> {
    Open(O),
    Join(J),
}

fn run(connection: Connection, credentials: &mut Option<SessionCredentials>) -> Value {
    let Connection {
        client_random: cr,
        server_random: sr,
        connection_id,
        ..
    } = connection;
    let key = SessionKey::derive(&secret(), &ticket());
    let mut to_server = Vec::new();
    let client = match credentials.as_ref() {
        None => Start::Open(client::open(&ticket(), &secret(), cr, &mut to_server)),
        Some(c) if connection.name == "attach" => {
            Start::Join(client::attach(c, cr, &mut to_server))
        }
        Some(c) if connection.name == "hold" => Start::Join(client::hold(c, cr, &mut to_server)),
        Some(c) => Start::Join(client::resume(
            c,
            connection_id,
            connection.client_received,
            cr,
            &mut to_server,
        )),
    };
    let hello = to_server.clone();
    let (decoded, _) = ClientHello::decode(&hello).unwrap().unwrap();
    let mut challenge = Vec::new();
    let server::Start::AwaitProof(server) = server::start(decoded, sr, &mut challenge) else {
        panic!("no challenge")
    };
    let mut proof = Vec::new();
    let message = server_message(&challenge);
    let client = match client {
        Start::Open(c) => Start::Open(c.handle(message, &mut proof).unwrap()),
        Start::Join(c) => Start::Join(c.handle(message, &mut proof).unwrap()),
    };
    let mut accept = Vec::new();
    let mut server = match server.receive_proof(proof.as_slice().try_into().unwrap()) {
        server::ProofReceived::Open(s) => {
            s.complete(&secret(), SESSION, connection_id, &mut accept)
                .unwrap()
                .connection
        }
        server::ProofReceived::Attach(s) => s.complete(&key, connection_id, &mut accept).unwrap(),
        server::ProofReceived::Resume(s) => {
            assert_eq!(s.client_received(), connection.client_received);
            s.complete(&key, connection.server_received, &mut accept)
                .unwrap()
        }
        server::ProofReceived::Hold(s) => {
            s.verify(&key).unwrap().accept(&key, &mut accept).unwrap()
        }
    };
    let mut client = match client {
        Start::Open(c) => {
            let opened = c.handle(server_message(&accept)).unwrap();
            *credentials = Some(opened.credentials);
            opened.connection
        }
        Start::Join(c) => c.handle(server_message(&accept)).unwrap(),
    };
    assert_eq!(client.server_received, connection.server_received);
    let keys = key.connection_keys(&cr, &sr).unwrap();
    let [c2s_key, c2s_iv, s2c_key, s2c_iv] = keys.expose_for_test();
    json!({
        "name": connection.name,
        "client_random": hex(&cr),
        "server_random": hex(&sr),
        "connection_id": connection_id.0,
        "client_received": connection.client_received,
        "server_received": connection.server_received,
        "client_hello": hex(&hello),
        "challenge": hex(&challenge),
        "proof": hex(&proof),
        "accept": hex(&accept),
        "confirm": hex(&accept[accept.len() - MAC_LEN..]),
        "client_to_server_key": hex(c2s_key),
        "client_to_server_iv": hex(c2s_iv),
        "server_to_client_key": hex(s2c_key),
        "server_to_client_iv": hex(s2c_iv),
        "client_to_server_records": records(
            &mut client.sealer,
            &mut server.opener,
            &connection.client_to_server,
        ),
        "server_to_client_records": records(
            &mut server.sealer,
            &mut client.opener,
            &connection.server_to_client,
        ),
    })
}

fn generate() -> Value {
    let key = SessionKey::derive(&secret(), &ticket());
    let handshake_keys = key.handshake_keys().unwrap();
    let (k_proof, k_confirm) = handshake_keys.expose_for_test();
    let mut test_hello = Vec::new();
    let test = client::test(&mut test_hello);
    let mut test_answer = Vec::new();
    let (hello, _) = ClientHello::decode(&test_hello).unwrap().unwrap();
    assert!(matches!(
        server::start(hello, [0; 32], &mut test_answer),
        server::Start::Tested
    ));
    test.handle(server_message(&test_answer)).unwrap();
    let mut refuse = Vec::new();
    server::refuse(ErrorCode::AccessDenied, &mut refuse);

    let mut credentials = None;
    let open = run(
        Connection {
            name: "open",
            client_random: counting(0x20),
            server_random: counting(0x40),
            connection_id: ConnectionId(1),
            client_received: 0,
            server_received: 0,
            client_to_server: vec![
                Item::Data(b"GET / HTTP/1.1\r\n"),
                Item::Data(b"Host: target\r\n\r\n"),
                Item::Control(Control::Ack { received: 17 }),
            ],
            server_to_client: vec![
                Item::Data(b"HTTP/1.1 200 OK\r\n"),
                Item::Data(b"Content-Length: 0\r\n\r\n"),
                Item::Control(Control::error(
                    ErrorCode::TargetUnreachable,
                    "connection refused",
                )),
            ],
        },
        &mut credentials,
    );
    let attach = run(
        Connection {
            name: "attach",
            client_random: counting(0x80),
            server_random: counting(0xa0),
            connection_id: ConnectionId(2),
            client_received: 0,
            server_received: 0,
            // The server's Close only after the client acknowledged all its Data (§8.9).
            client_to_server: vec![
                Item::Data(b"second connection"),
                Item::Control(Control::Ack { received: 13 }),
                Item::Control(Control::Ping(0x0102_0304_0506_0708)),
            ],
            server_to_client: vec![
                Item::Data(b"hello, second"),
                Item::Control(Control::Ack { received: 17 }),
                Item::Control(Control::Close),
            ],
        },
        &mut credentials,
    );
    let resume = run(
        Connection {
            name: "resume",
            client_random: counting(0xc0),
            server_random: counting(0xe0),
            connection_id: ConnectionId(1),
            client_received: 17,
            server_received: 32,
            client_to_server: vec![Item::Data(b"resumed"), Item::Control(Control::EndSession)],
            server_to_client: vec![
                Item::Data(b"Content-Length: 0\r\n\r\n"),
                Item::Control(Control::Pong(0x0102_0304_0506_0708)),
            ],
        },
        &mut credentials,
    );
    let hold = run(
        Connection {
            name: "hold",
            client_random: [0x11; 32],
            server_random: [0x22; 32],
            connection_id: ConnectionId::HOLD,
            client_received: 0,
            server_received: 0,
            client_to_server: vec![Item::Control(Control::Ping(0x0a0b_0c0d_0e0f_1011))],
            server_to_client: vec![
                Item::Control(Control::Pong(0x0a0b_0c0d_0e0f_1011)),
                Item::Control(Control::SessionEnded(EndReason::MaxDuration)),
            ],
        },
        &mut credentials,
    );
    let kem_shared_secret = SharedSecret::from_bytes(counting(0x90));
    let tunnel_secret = derive_tunnel_secret(&kem_shared_secret, &ticket()).unwrap();
    json!({
        "description": "Portcullis tunnel protocol v1 known-answer vectors (docs/protocol.md, section 8). All byte strings are lowercase hex except ticket (ASCII). shared_secret is the tunnel secret S, the IKM of the session key; tunnel_secret_derivation derives such an S from a KEM shared secret (section 6.7).",
        "tunnel_secret_derivation": {
            "kem_shared_secret": hex(kem_shared_secret.expose()),
            "ticket": TICKET,
            "info": String::from_utf8_lossy(TUNNEL_SECRET_LABEL),
            "tunnel_secret": hex(tunnel_secret.expose()),
        },
        "shared_secret": hex(secret().expose()),
        "ticket": TICKET,
        "session_id": hex(SESSION.as_bytes()),
        "session_key": hex(key.expose_for_test()),
        "k_proof": hex(k_proof),
        "k_confirm": hex(k_confirm),
        "test_hello": hex(&test_hello),
        "test_answer": hex(&test_answer),
        "refuse_access_denied": hex(&refuse),
        "connections": [open, attach, resume, hold],
    })
}

#[test]
fn known_answer_vectors() {
    let generated = generate();
    if std::env::var("PORTCULLIS_REGENERATE_VECTORS").is_ok_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(PATH).expect("tests/vectors/tunnel-v1.json is missing");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored, generated,
        "tunnel v1 vectors changed: the wire format is not stable"
    );
}

#[test]
fn stored_proofs_verify_with_the_broker_function() {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let open = &stored["connections"][0];
    let field = |name: &str| -> [u8; 32] {
        crate::hex::decode_array(open[name].as_str().unwrap(), "vector").unwrap()
    };
    let proof = field("proof");
    let (cr, sr) = (field("client_random"), field("server_random"));
    assert_eq!(
        verify_open_proof(&secret(), &ticket(), &cr, &sr, &proof),
        Ok(())
    );
    assert_eq!(
        compute_open_proof(&secret(), &ticket(), &cr, &sr).unwrap(),
        proof
    );
}
