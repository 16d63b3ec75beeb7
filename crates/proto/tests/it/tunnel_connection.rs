//! `Connection` semantics through the in-memory launcher / tunnel server pair: the close
//! handshake (a half-close), Close across link drops, the counter limit, backpressure,
//! memory of idle connections, and recovery from a tampered record.

use std::time::Instant;

use crate::tunnel_support::{Dir, Link, Side, World, honest};
use portcullis_proto::tunnel::{
    ConnectionConfig, Control, DEFAULT_PLAINTEXT, DEFAULT_REPLAY_CAPACITY, ErrorCode,
};
use portcullis_proto::{ConnectionId, Error};
use proptest::prelude::*;

const ID: ConnectionId = ConnectionId(1);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn open(config: ConnectionConfig) -> (World, Link) {
    let mut world = World::with_config(config);
    let link = world.open(&mut honest).unwrap();
    (world, link)
}

fn closes_seen(world: &World, side: Side) -> usize {
    let streams = match side {
        Side::Client => &world.client.streams,
        Side::Server => &world.server.streams,
    };
    streams[&ID].count(&Control::Close)
}

fn assert_streams_complete(world: &World) {
    let (client, server) = (&world.client.streams[&ID], &world.server.streams[&ID]);
    assert_eq!(server.delivered, client.written, "client → server");
    assert_eq!(client.delivered, server.written, "server → client");
}

#[test]
fn close_handshake_in_both_orders() {
    for first in [Side::Client, Side::Server] {
        let second = match first {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let (mut world, mut link) = open(ConnectionConfig::default());
        world.write(&mut link, first, b"bye").unwrap();
        world.control(&mut link, first, &Control::Close).unwrap();
        world.transfer(&mut link, &mut honest).unwrap();
        assert_eq!(closes_seen(&world, second), 1, "{first:?} closed first");
        assert!(!world.connection(first, ID).is_finished());
        assert!(!world.connection(second, ID).is_finished());
        world.control(&mut link, second, &Control::Close).unwrap();
        assert!(world.connection(second, ID).is_finished());
        world.transfer(&mut link, &mut honest).unwrap();
        assert_eq!(closes_seen(&world, first), 1);
        assert!(world.connection(first, ID).is_finished());
        assert_streams_complete(&world);
    }
}

#[test]
fn half_close_with_data_still_flowing_the_other_way() {
    let (mut world, mut link) = open(ConnectionConfig::default());
    world
        .control(&mut link, Side::Client, &Control::Close)
        .unwrap();
    assert_eq!(world.connection(Side::Client, ID).send_window(), 0);
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(closes_seen(&world, Side::Server), 1);
    // The target keeps answering after the launcher's EOF.
    let reply = pattern(100_000, 1);
    let mut offset = 0;
    while offset < reply.len() {
        offset += world
            .write(&mut link, Side::Server, &reply[offset..])
            .unwrap();
        world.transfer(&mut link, &mut honest).unwrap();
    }
    assert_eq!(world.client.streams[&ID].delivered, reply);
    assert!(world.server.streams[&ID].all_acknowledged());
    world
        .control(&mut link, Side::Server, &Control::Close)
        .unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert!(world.connection(Side::Client, ID).is_finished());
    assert!(world.connection(Side::Server, ID).is_finished());
}

#[test]
fn close_lost_on_a_link_drop_is_resumed_and_delivered_once() {
    let (mut world, mut link) = open(ConnectionConfig::default());
    let data = pattern(40_000, 2);
    world.write(&mut link, Side::Client, &data).unwrap();
    world
        .control(&mut link, Side::Client, &Control::Close)
        .unwrap();
    // The Data goes out, but the link drops before the Ack comes back.
    link.cut(&mut world, usize::MAX, 0);
    let mut link = world.resume(ID, &mut honest).unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(
        closes_seen(&world, Side::Server),
        1,
        "Close after the resume"
    );
    // The Close arrives but the server's Close is lost with the next link.
    world
        .control(&mut link, Side::Server, &Control::Close)
        .unwrap();
    assert!(world.connection(Side::Server, ID).is_finished());
    link.cut(&mut world, 0, 0);
    assert!(world.connection(Side::Client, ID).awaiting_peer_close());
    // The server finished the connection: the client's resume is refused, and nothing
    // was lost.
    let result = world.resume(ID, &mut honest);
    assert_eq!(
        result.unwrap_err(),
        Error::Refused(ErrorCode::ResumeImpossible)
    );
    assert_eq!(world.server.streams[&ID].delivered, data);
    assert_eq!(closes_seen(&world, Side::Server), 1);
}

#[test]
fn duplicate_close_after_a_resume_is_ignored() {
    let (mut world, mut link) = open(ConnectionConfig::default());
    world
        .control(&mut link, Side::Client, &Control::Close)
        .unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(closes_seen(&world, Side::Server), 1);
    // The client never saw the server's answer, so it sends Close again on each link.
    for _ in 0..2 {
        link.cut(&mut world, 0, 0);
        link = world.resume(ID, &mut honest).unwrap();
        assert!(!link.to_server.is_empty(), "Close queued again");
        world.transfer(&mut link, &mut honest).unwrap();
    }
    assert_eq!(closes_seen(&world, Side::Server), 1, "delivered once");
    assert!(world.server.streams[&ID].records >= 3);
    world
        .control(&mut link, Side::Server, &Control::Close)
        .unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert!(world.connection(Side::Client, ID).is_finished());
}

#[test]
fn counter_limit_at_the_exact_boundary_then_resume() {
    let config = ConnectionConfig {
        record_limit: 3,
        data_record_size: 4,
        ..ConnectionConfig::default()
    };
    let (mut world, mut link) = open(config);
    // Three records seal; the fourth is refused, its bytes stay in the replay buffer.
    assert_eq!(
        world
            .write(&mut link, Side::Client, b"aaaabbbbcccc")
            .unwrap(),
        12
    );
    assert_eq!(
        world.write(&mut link, Side::Client, b"dddd"),
        Err(Error::CounterExhausted)
    );
    assert!(!world.connection(Side::Client, ID).has_link());
    assert_eq!(world.connection(Side::Client, ID).sent(), 16);
    // The sender closes TCP without a record; what was written arrives.
    link.cut(&mut world, usize::MAX, usize::MAX);
    assert_eq!(world.server.streams[&ID].delivered, b"aaaabbbbcccc");
    let mut link = world.resume(ID, &mut honest).unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(world.server.streams[&ID].delivered, b"aaaabbbbccccdddd");
    assert_eq!(world.connection(Side::Client, ID).acknowledged(), 16);
}

#[test]
fn send_window_is_zero_while_the_replay_buffer_is_full_and_reopens_after_ack() {
    let config = ConnectionConfig {
        replay_capacity: 20_000,
        ..ConnectionConfig::default()
    };
    let (mut world, mut link) = open(config);
    assert_eq!(
        world
            .write(&mut link, Side::Server, &pattern(50_000, 3))
            .unwrap(),
        20_000
    );
    assert_eq!(world.connection(Side::Server, ID).send_window(), 0);
    assert_eq!(world.write(&mut link, Side::Server, b"more").unwrap(), 0);
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(
        world.connection(Side::Server, ID).send_window(),
        DEFAULT_PLAINTEXT
    );
}

#[test]
fn shrink_releases_the_replay_buffer_of_an_idle_connection() {
    let (mut world, mut link) = open(ConnectionConfig::default());
    world
        .write(&mut link, Side::Client, &pattern(5000, 4))
        .unwrap();
    assert!(world.connection(Side::Client, ID).buffered_memory() >= DEFAULT_REPLAY_CAPACITY);
    world.transfer(&mut link, &mut honest).unwrap();
    for side in [Side::Client, Side::Server] {
        world.connection(side, ID).shrink();
        assert_eq!(world.connection(side, ID).buffered_memory(), 0, "{side:?}");
    }
    // 10,000 idle connections with a link each stay far below 64 KiB apiece.
    assert!(size_of::<portcullis_proto::tunnel::Connection>() < 4096);
}

#[test]
fn tampered_byte_failure_sticks_then_link_lost_and_resume_recovers() {
    let (mut world, mut link) = open(ConnectionConfig::default());
    let data = pattern(30_000, 5);
    world.write(&mut link, Side::Client, &data).unwrap();
    let mut flip = |dir: Dir, bytes: &mut Vec<u8>| {
        if dir == Dir::ToServer && bytes.len() > 20_000 {
            bytes[20_000] ^= 0x80;
        }
    };
    assert_eq!(
        world.transfer(&mut link, &mut flip),
        Err(Error::DecryptFailed)
    );
    let server = world.connection(Side::Server, ID);
    assert!(!server.has_link());
    assert_eq!(
        server.handle_input(&mut [], Instant::now()),
        Err(Error::DecryptFailed)
    );
    let mut out = Vec::new();
    assert_eq!(server.poll_transmit(&mut out), Err(Error::DecryptFailed));
    assert!(out.is_empty(), "a record failure sends nothing");
    assert_eq!(server.received(), 16_384, "the record before the flip");
    link.cut(&mut world, 0, 0);
    let mut link = world.resume(ID, &mut honest).unwrap();
    world.transfer(&mut link, &mut honest).unwrap();
    assert_eq!(world.server.streams[&ID].delivered, data);
}

#[derive(Debug, Clone)]
enum Op {
    Write(Side, usize),
    Transfer,
    Close(Side),
    /// Cut the link, keeping these fractions (per mille) of the bytes in flight.
    Cut(u16, u16),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), 1usize..30_000).prop_map(|(side, len)| Op::Write(side, len)),
        3 => Just(Op::Transfer),
        1 => side().prop_map(Op::Close),
        2 => (0u16..=1000, 0u16..=1000).prop_map(|(s, c)| Op::Cut(s, c)),
    ]
}

/// Sealed its `Close` (so every Data byte it wrote was acknowledged).
fn sealed_close(world: &mut World, side: Side) -> bool {
    let connection = world.connection(side, ID);
    connection.is_finished() || connection.awaiting_peer_close()
}

/// Both applications write what they have; a side that wants to close does so once its
/// queue is empty.
fn step(world: &mut World, link: &mut Link, pending: &mut [Vec<u8>; 2], wants_close: [bool; 2]) {
    for side in [Side::Client, Side::Server] {
        let i = side as usize;
        let taken = world.write(link, side, &pending[i]).unwrap();
        pending[i].drain(..taken);
        if wants_close[i] && pending[i].is_empty() {
            world.control(link, side, &Control::Close).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Writes, half-closes and link drops in any order: no byte is lost or duplicated,
    /// each side sees the other's Close at most once, a side that sent Close had all its
    /// bytes delivered, and both finish (unless the client learns from a refused resume
    /// that only the server's last Close was lost).
    #[test]
    fn closes_and_drops_never_lose_data(ops in proptest::collection::vec(op(), 1..30), capacity in 8192usize..65536) {
        let (mut world, mut link) = open(ConnectionConfig { replay_capacity: capacity, ..ConnectionConfig::default() });
        let mut pending = [Vec::new(), Vec::new()];
        let mut wants_close = [false, false];
        let mut seed = 0u8;
        let mut link_gone = false;
        for op in ops {
            match op {
                Op::Write(side, len) if !wants_close[side as usize] => {
                    seed = seed.wrapping_add(1);
                    pending[side as usize].extend(pattern(len, seed));
                }
                Op::Write(..) => {}
                Op::Close(side) => wants_close[side as usize] = true,
                Op::Transfer => world.transfer(&mut link, &mut honest).unwrap(),
                Op::Cut(s, c) => {
                    let keep_s = link.to_server.len() * usize::from(s) / 1000;
                    let keep_c = link.to_client.len() * usize::from(c) / 1000;
                    link.cut(&mut world, keep_s, keep_c);
                    if world.connection(Side::Client, ID).is_finished() {
                        link_gone = true;
                        break;
                    }
                    match world.resume(ID, &mut honest) {
                        Ok(new) => link = new,
                        Err(error) => {
                            prop_assert_eq!(error, Error::Refused(ErrorCode::ResumeImpossible));
                            prop_assert!(world.connection(Side::Server, ID).is_finished());
                            prop_assert!(world.connection(Side::Client, ID).awaiting_peer_close());
                            link_gone = true;
                            break;
                        }
                    }
                }
            }
            step(&mut world, &mut link, &mut pending, wants_close);
        }
        if !link_gone {
            for _ in 0..10_000 {
                step(&mut world, &mut link, &mut pending, [true, true]);
                world.transfer(&mut link, &mut honest).unwrap();
                if world.connection(Side::Client, ID).is_finished()
                    && world.connection(Side::Server, ID).is_finished()
                {
                    break;
                }
            }
            prop_assert!(world.connection(Side::Client, ID).is_finished());
            prop_assert!(world.connection(Side::Server, ID).is_finished());
            prop_assert_eq!(closes_seen(&world, Side::Client), 1);
            prop_assert_eq!(closes_seen(&world, Side::Server), 1);
        }
        prop_assert!(closes_seen(&world, Side::Client) <= 1);
        prop_assert!(closes_seen(&world, Side::Server) <= 1);
        let (client_closed, server_closed) =
            (sealed_close(&mut world, Side::Client), sealed_close(&mut world, Side::Server));
        let (client, server) = (&world.client.streams[&ID], &world.server.streams[&ID]);
        prop_assert!(client.written.starts_with(&server.delivered));
        prop_assert!(server.written.starts_with(&client.delivered));
        if client_closed {
            prop_assert_eq!(&server.delivered, &client.written);
        }
        if server_closed {
            prop_assert_eq!(&client.delivered, &server.written);
        }
    }
}
