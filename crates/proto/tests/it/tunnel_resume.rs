//! Resume never loses or duplicates a byte: random writes both ways, connections cut at
//! random points (records half delivered), resumed with fresh keys; at the end each side
//! received exactly what the other wrote.

use crate::tunnel_support::{Side, World, honest};
use portcullis_proto::ConnectionId;
use portcullis_proto::tunnel::Control;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write(Side, Vec<u8>),
    Transfer,
    Ping(u64),
    /// Cut the connection, keeping these fractions (per mille) of the bytes in flight.
    Cut(u16, u16),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (side(), proptest::collection::vec(any::<u8>(), 1..20_000))
            .prop_map(|(side, data)| Op::Write(side, data)),
        3 => Just(Op::Transfer),
        1 => any::<u64>().prop_map(Op::Ping),
        2 => (0u16..=1000, 0u16..=1000).prop_map(|(s, c)| Op::Cut(s, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_byte_lost_or_duplicated(ops in proptest::collection::vec(op(), 1..40), capacity in 4096usize..65536) {
        let mut world = World::new(capacity);
        let mut link = world.open(&mut honest).unwrap();
        let id = ConnectionId(1);
        let mut pending = [Vec::new(), Vec::new()];
        let mut resumes = 0;
        for op in ops {
            match op {
                Op::Write(side, data) => {
                    let queue = &mut pending[side as usize];
                    queue.extend_from_slice(&data);
                    let taken = world.write(&mut link, side, queue).unwrap();
                    queue.drain(..taken);
                }
                Op::Transfer => world.transfer(&mut link, &mut honest).unwrap(),
                Op::Ping(value) => world.control(&mut link, Side::Client, &Control::Ping(value)).unwrap(),
                Op::Cut(s, c) => {
                    let keep_s = link.to_server.len() * usize::from(s) / 1000;
                    let keep_c = link.to_client.len() * usize::from(c) / 1000;
                    link.cut(&mut world, keep_s, keep_c);
                    link = world.resume(id, &mut honest).unwrap();
                    resumes += 1;
                }
            }
        }
        // Drain: keep writing what backpressure held back until everything is through.
        for _ in 0..10_000 {
            for side in [Side::Client, Side::Server] {
                let queue = &mut pending[side as usize];
                let taken = world.write(&mut link, side, queue).unwrap();
                queue.drain(..taken);
            }
            world.transfer(&mut link, &mut honest).unwrap();
            if pending.iter().all(Vec::is_empty) {
                break;
            }
        }
        prop_assert!(pending.iter().all(Vec::is_empty));
        let (client, server) = (&world.client.streams[&id], &world.server.streams[&id]);
        prop_assert_eq!(&server.delivered, &client.written, "client → server after {} resumes", resumes);
        prop_assert_eq!(&client.delivered, &server.written, "server → client after {} resumes", resumes);
        prop_assert!(client.all_acknowledged() && server.all_acknowledged());
    }
}
