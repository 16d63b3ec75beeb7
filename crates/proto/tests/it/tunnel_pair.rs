//! End-to-end: launcher and tunnel server as an in-memory pair, through Open, Attach and
//! Resume, with a hook that tampers with bytes in flight.

use std::time::Instant;

use crate::tunnel_support::{Dir, Side, World, honest};
use portcullis_proto::tunnel::{Control, ErrorCode};
use portcullis_proto::{ConnectionId, Error};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn open_attach_resume_end_to_end() {
    let mut world = World::new(256 * 1024);
    let mut first = world.open(&mut honest).unwrap();
    assert_eq!(first.id, ConnectionId(1));
    assert!(world.broker.redeemed);
    world
        .write(&mut first, Side::Client, b"hello, target")
        .unwrap();
    world
        .write(&mut first, Side::Server, &pattern(40_000, 1))
        .unwrap();
    world.transfer(&mut first, &mut honest).unwrap();

    let mut second = world.attach(&mut honest).unwrap();
    assert_eq!(second.id, ConnectionId(2));
    world
        .write(&mut second, Side::Client, &pattern(70_000, 2))
        .unwrap();
    world.write(&mut second, Side::Server, b"second").unwrap();
    world
        .control(&mut second, Side::Client, &Control::Ping(7))
        .unwrap();
    world.transfer(&mut second, &mut honest).unwrap();
    assert!(world.server.streams[&second.id].records > 0);
    assert!(
        world.client.streams[&second.id]
            .controls
            .contains(&Control::Pong(7))
    );

    // Both sides write, then the connection breaks with records half delivered.
    world
        .write(&mut first, Side::Client, &pattern(50_000, 3))
        .unwrap();
    world
        .write(&mut first, Side::Server, &pattern(30_000, 4))
        .unwrap();
    let (half_s, half_c) = (first.to_server.len() / 2, first.to_client.len() / 3);
    first.cut(&mut world, half_s, half_c);
    let id = ConnectionId(1);
    assert!(world.server.streams[&id].delivered.len() < world.client.streams[&id].written.len());

    let mut first = world.resume(id, &mut honest).unwrap();
    assert_eq!(first.id, id);
    world
        .write(&mut first, Side::Client, b"after resume")
        .unwrap();
    world.transfer(&mut first, &mut honest).unwrap();

    world
        .control(&mut second, Side::Client, &Control::Close)
        .unwrap();
    world
        .control(&mut first, Side::Client, &Control::EndSession)
        .unwrap();
    world.transfer(&mut second, &mut honest).unwrap();
    world.transfer(&mut first, &mut honest).unwrap();
    assert!(
        world.server.streams[&second.id]
            .controls
            .contains(&Control::Close)
    );
    assert!(
        world.server.streams[&id]
            .controls
            .contains(&Control::EndSession)
    );

    for id in [ConnectionId(1), ConnectionId(2)] {
        let (client, server) = (&world.client.streams[&id], &world.server.streams[&id]);
        assert_eq!(server.delivered, client.written, "client → server on {id}");
        assert_eq!(client.delivered, server.written, "server → client on {id}");
        assert!(
            client.all_acknowledged() && server.all_acknowledged(),
            "everything acknowledged"
        );
    }
}

#[test]
fn a_tampered_record_kills_the_connection_and_resume_recovers() {
    let mut world = World::new(64 * 1024);
    let mut link = world.open(&mut honest).unwrap();
    world
        .write(&mut link, Side::Client, &pattern(20_000, 5))
        .unwrap();
    let mut flip = |dir: Dir, bytes: &mut Vec<u8>| {
        if dir == Dir::ToServer && bytes.len() > 100 {
            bytes[100] ^= 0x01;
        }
    };
    assert_eq!(
        world.transfer(&mut link, &mut flip),
        Err(Error::DecryptFailed)
    );
    // The failed opener stays failed, even for honest bytes.
    world.write(&mut link, Side::Client, b"more").unwrap();
    assert_eq!(
        world.transfer(&mut link, &mut honest),
        Err(Error::DecryptFailed)
    );
    drop(link);

    let mut link = world.resume(ConnectionId(1), &mut honest).unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    let id = ConnectionId(1);
    assert_eq!(
        world.server.streams[&id].delivered,
        world.client.streams[&id].written
    );
}

/// Flips one bit in the `index`-th flight of a handshake (0 hello, 1 challenge, 2 proof,
/// 3 accept) at byte `at`.
fn flip_flight(index: usize, at: usize) -> impl FnMut(Dir, &mut Vec<u8>) {
    let mut seen = 0;
    move |_, bytes: &mut Vec<u8>| {
        if seen == index {
            bytes[at] ^= 0x04;
        }
        seen += 1;
    }
}

#[test]
fn tampered_handshakes_fail_and_wrong_proofs_consume_nothing() {
    let mut world = World::new(1024);
    let cases = [
        (0, 0, Error::Refused(ErrorCode::Malformed)),
        (0, 4, Error::Refused(ErrorCode::UnsupportedVersion)),
        (0, 60, Error::Refused(ErrorCode::AccessDenied)),
        (1, 5, Error::Refused(ErrorCode::AccessDenied)),
        (2, 0, Error::Refused(ErrorCode::AccessDenied)),
    ];
    for (flight, at, expected) in cases {
        let result = world.open(&mut flip_flight(flight, at));
        assert_eq!(result.unwrap_err(), expected, "flight {flight} byte {at}");
        assert!(!world.broker.redeemed, "a wrong proof consumes nothing");
    }
    assert!(matches!(
        world.open(&mut flip_flight(3, 40)),
        Err(Error::BadProof("confirm"))
    ));
    assert!(world.broker.redeemed);
    assert_eq!(
        world.open(&mut honest).unwrap_err(),
        Error::Refused(ErrorCode::AccessDenied)
    );
}

#[test]
fn tampered_attach_and_resume_are_refused() {
    let mut world = World::new(1024);
    let link = world.open(&mut honest).unwrap();
    for flight in [0, 1, 2] {
        let at = if flight == 0 { 40 } else { 10 };
        let result = world.attach(&mut flip_flight(flight, at));
        assert!(
            matches!(result, Err(Error::Refused(ErrorCode::AccessDenied))),
            "{result:?}"
        );
        let result = world.resume(link.id, &mut flip_flight(flight, at));
        assert!(
            matches!(result, Err(Error::Refused(ErrorCode::AccessDenied))),
            "{result:?}"
        );
    }
    // The session id in the hello: unknown session.
    let result = world.attach(&mut flip_flight(0, 8));
    assert_eq!(
        result.unwrap_err(),
        Error::Refused(ErrorCode::SessionUnknown)
    );
}

#[test]
fn resume_refuses_bytes_no_longer_buffered() {
    let mut world = World::new(1024);
    let mut link = world.open(&mut honest).unwrap();
    world
        .write(&mut link, Side::Server, &pattern(500, 6))
        .unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    let id = link.id;
    drop(link);
    // A client that lost track of what it received asks for acknowledged bytes.
    let result = world.resume_claiming(id, 10, &mut honest);
    assert_eq!(
        result.unwrap_err(),
        Error::Refused(ErrorCode::ResumeImpossible)
    );
}

#[test]
fn connections_of_one_session_never_share_keys() {
    let mut world = World::new(1024);
    let mut first = world.open(&mut honest).unwrap();
    let mut second = world.attach(&mut honest).unwrap();
    world
        .write(&mut first, Side::Client, b"same bytes")
        .unwrap();
    world
        .write(&mut second, Side::Client, b"same bytes")
        .unwrap();
    let (a, b) = (first.to_server.clone(), second.to_server.clone());
    assert_ne!(a, b, "same plaintext, same counter, different keys");
    assert_eq!(
        world
            .connection(Side::Server, second.id)
            .handle_input(&mut a.clone(), Instant::now()),
        Err(Error::DecryptFailed)
    );
    assert!(
        world
            .connection(Side::Server, first.id)
            .handle_input(&mut b.clone(), Instant::now())
            .is_err()
    );
    // The resumed connection retransmits the same record (counter 0) under fresh keys.
    let third = world.resume(first.id, &mut honest).unwrap();
    assert_eq!(third.to_server.len(), a.len());
    assert_ne!(third.to_server, a);
    assert_ne!(third.to_server, b);
}
