//! A client and a server `Connection` joined by in-memory links with test keys.

use std::time::Instant;

use super::*;
use crate::tunnel::record::{IV_LEN, KEY_LEN};
use crate::tunnel::{Control, OVERHEAD, PAYLOAD_OFFSET};

/// What an event carried, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Data(Vec<u8>),
    PeerClosed,
    EndSession,
    PeerError(ErrorCode, String),
    Pong(u64),
    Nothing,
}

impl From<Event<'_>> for Got {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Data(data) => Self::Data(data.to_vec()),
            Event::PeerClosed => Self::PeerClosed,
            Event::EndSession => Self::EndSession,
            Event::PeerError { code, message } => Self::PeerError(code, message),
            Event::Pong(value) => Self::Pong(value),
            Event::Nothing => Self::Nothing,
        }
    }
}

/// The keys of one direction of link number `link`.
fn direction(link: u8, to_server: bool) -> ([u8; KEY_LEN], [u8; IV_LEN]) {
    let tag = link.wrapping_mul(2).wrapping_add(u8::from(to_server));
    ([tag; KEY_LEN], [tag ^ 0x5a; IV_LEN])
}

fn sealer(link: u8, to_server: bool) -> RecordSealer {
    let (key, iv) = direction(link, to_server);
    RecordSealer::new(&key, &iv).unwrap()
}

fn opener(link: u8, to_server: bool) -> RecordOpener {
    let (key, iv) = direction(link, to_server);
    RecordOpener::new(&key, &iv).unwrap()
}

struct Pair {
    client: Connection,
    server: Connection,
    /// The time both sides are given; it moves only when a test moves it.
    now: Instant,
    link: u8,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

impl Pair {
    fn new(config: &ConnectionConfig) -> Self {
        let mut pair = Self {
            client: Connection::new_client(ConnectionId(1), config),
            server: Connection::new(ConnectionId(1), config),
            now: Instant::now(),
            link: 0,
            to_server: Vec::new(),
            to_client: Vec::new(),
        };
        pair.resume().unwrap();
        pair
    }

    /// A new link (what `Open` or `Resume` installs): both state what they received.
    fn resume(&mut self) -> Result<(), Error> {
        self.link += 1;
        self.to_server.clear();
        self.to_client.clear();
        let (link, client_received) = (self.link, self.client.received());
        self.server
            .attach_link(sealer(link, false), opener(link, true), client_received)?;
        let server_received = self.server.received();
        self.client
            .attach_link(sealer(link, true), opener(link, false), server_received)?;
        self.poll()
    }

    fn drop_link(&mut self) {
        self.client.link_lost();
        self.server.link_lost();
        self.to_server.clear();
        self.to_client.clear();
    }

    fn poll(&mut self) -> Result<(), Error> {
        self.client.poll_transmit(&mut self.to_server)?;
        self.server.poll_transmit(&mut self.to_client)
    }

    fn write(&mut self, client: bool, data: &[u8]) -> Result<usize, Error> {
        let (connection, wire) = if client {
            (&mut self.client, &mut self.to_server)
        } else {
            (&mut self.server, &mut self.to_client)
        };
        let len = data.len().min(connection.send_window());
        let mut frame = vec![0u8; OVERHEAD + len];
        frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len].copy_from_slice(&data[..len]);
        let frame_len = connection.seal_data(&mut frame, len, self.now)?;
        wire.extend_from_slice(&frame[..frame_len]);
        Ok(len)
    }

    /// Delivers what is in flight once each way (server first); returns what each side
    /// saw: (client's events, server's events).
    fn step(&mut self) -> Result<(Vec<Got>, Vec<Got>), Error> {
        let now = self.now;
        let server = deliver_at(
            &mut self.server,
            &mut self.to_server,
            &mut self.to_client,
            now,
        )?;
        let client = deliver_at(
            &mut self.client,
            &mut self.to_client,
            &mut self.to_server,
            now,
        )?;
        Ok((client, server))
    }

    /// Steps until nothing is in flight; returns every event seen.
    fn settle(&mut self) -> Result<(Vec<Got>, Vec<Got>), Error> {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        while !(self.to_server.is_empty() && self.to_client.is_empty()) {
            let (c, s) = self.step()?;
            client.extend(c);
            server.extend(s);
        }
        Ok((client, server))
    }
}

/// Feeds `wire` to `connection`, then polls its answers into `reply`.
fn deliver(
    connection: &mut Connection,
    wire: &mut Vec<u8>,
    reply: &mut Vec<u8>,
) -> Result<Vec<Got>, Error> {
    deliver_at(connection, wire, reply, Instant::now())
}

/// [`deliver`] at `now`.
fn deliver_at(
    connection: &mut Connection,
    wire: &mut Vec<u8>,
    reply: &mut Vec<u8>,
    now: Instant,
) -> Result<Vec<Got>, Error> {
    let mut events = Vec::new();
    let mut offset = 0;
    while let Some((event, used)) = connection.handle_input(&mut wire[offset..], now)? {
        if let Event::Data(data) = &event {
            connection.delivered(data.len());
        }
        events.push(event.into());
        offset += used;
    }
    wire.drain(..offset);
    connection.poll_transmit(reply)?;
    Ok(events)
}

fn meaningful(events: Vec<Got>) -> Vec<Got> {
    events.into_iter().filter(|e| *e != Got::Nothing).collect()
}

fn data(events: &[Got]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| match e {
            Got::Data(bytes) => bytes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn data_flows_and_is_acknowledged() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    assert_eq!(pair.client.send_window(), DEFAULT_PLAINTEXT);
    pair.write(true, b"hello").unwrap();
    pair.write(false, b"world").unwrap();
    let (client, server) = pair.settle().unwrap();
    assert_eq!(meaningful(client), [Got::Data(b"world".to_vec())]);
    assert_eq!(meaningful(server), [Got::Data(b"hello".to_vec())]);
    for side in [&pair.client, &pair.server] {
        assert_eq!(
            (side.sent(), side.received(), side.acknowledged()),
            (5, 5, 5)
        );
        assert!(!side.is_finished());
    }
}

#[test]
fn close_handshake_client_first() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.client.close();
    assert_eq!(pair.client.send_window(), 0);
    pair.poll().unwrap();
    let (_, server) = pair.settle().unwrap();
    assert_eq!(meaningful(server), [Got::PeerClosed]);
    assert!(!pair.client.is_finished() && !pair.server.is_finished());
    pair.server.close();
    pair.poll().unwrap();
    assert!(pair.server.is_finished(), "sent and received Close");
    let (client, _) = pair.settle().unwrap();
    assert_eq!(meaningful(client), [Got::PeerClosed]);
    assert!(pair.client.is_finished());
}

#[test]
fn close_handshake_server_first_and_simultaneous() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.server.close();
    pair.poll().unwrap();
    let (client, _) = pair.settle().unwrap();
    assert_eq!(meaningful(client), [Got::PeerClosed]);
    pair.client.close();
    pair.poll().unwrap();
    pair.settle().unwrap();
    assert!(pair.client.is_finished() && pair.server.is_finished());

    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.client.close();
    pair.server.close();
    pair.poll().unwrap();
    let (client, server) = pair.settle().unwrap();
    assert_eq!(
        (meaningful(client), meaningful(server)),
        (vec![Got::PeerClosed], vec![Got::PeerClosed])
    );
    assert!(pair.client.is_finished() && pair.server.is_finished());
}

#[test]
fn close_waits_until_every_byte_is_acknowledged() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"last words").unwrap();
    pair.client.close();
    let before = pair.to_server.len();
    pair.poll().unwrap();
    assert_eq!(pair.to_server.len(), before, "no Close before the Ack");
    let (_, server) = pair.step().unwrap();
    assert_eq!(meaningful(server), [Got::Data(b"last words".to_vec())]);
    let (_, server) = pair.settle().unwrap();
    assert_eq!(meaningful(server), [Got::PeerClosed], "Close after the Ack");
}

#[test]
fn half_close_keeps_data_flowing_the_other_way() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.client.close();
    pair.poll().unwrap();
    pair.settle().unwrap();
    assert_eq!(pair.server.send_window(), DEFAULT_PLAINTEXT);
    pair.write(false, b"still talking").unwrap();
    let (client, _) = pair.settle().unwrap();
    assert_eq!(data(&client), b"still talking");
    assert_eq!(
        pair.server.acknowledged(),
        13,
        "the closed side still acknowledges"
    );
    assert!(!pair.client.is_finished());
    // Data from the side that closed is a protocol violation.
    let mut forged = Vec::new();
    let mut raw = sealer(pair.link, true);
    for _ in 0..pair.client_records_sealed() {
        raw.seal_control(&Control::Ping(0), &mut Vec::new())
            .unwrap();
    }
    raw.seal_data(b"late", &mut forged).unwrap();
    let error = pair
        .server
        .handle_input(&mut forged, Instant::now())
        .unwrap_err();
    assert_eq!(ErrorCode::for_error(&error), ErrorCode::Malformed);
}

impl Pair {
    /// How many records the client sealed on the current link (to forge the next one).
    fn client_records_sealed(&self) -> u64 {
        match &self.client.link {
            Link::Up { sealer, .. } => sealer.records_sealed(),
            _ => 0,
        }
    }
}

#[test]
fn close_lost_on_a_link_drop_is_sent_again_and_delivered_once() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"before close").unwrap();
    pair.settle().unwrap();
    pair.client.close();
    pair.poll().unwrap();
    assert!(!pair.to_server.is_empty());
    pair.drop_link(); // the Close is lost
    pair.resume().unwrap();
    let (_, server) = pair.settle().unwrap();
    assert_eq!(meaningful(server), [Got::PeerClosed]);
    assert_eq!(pair.server.received(), 12);

    // Delivered but unanswered: the client sends it again, the server ignores it.
    pair.drop_link();
    pair.resume().unwrap();
    let (_, server) = pair.settle().unwrap();
    assert_eq!(server, [Got::Nothing], "duplicate Close ignored");
    pair.server.close();
    pair.poll().unwrap();
    let (client, _) = pair.settle().unwrap();
    assert_eq!(meaningful(client), [Got::PeerClosed]);
    assert!(pair.client.is_finished() && pair.server.is_finished());
    assert!(matches!(pair.server.check_resume(0), Err(Error::Resume(_))));
}

#[test]
fn acks_beyond_sent_or_decreasing_are_malformed() {
    for (first, second) in [(9, None), (3, Some(2))] {
        let mut pair = Pair::new(&ConnectionConfig::default());
        pair.write(false, b"abcdefgh").unwrap();
        let mut forged = Vec::new();
        let mut raw = sealer(pair.link, true);
        raw.seal_control(&Control::Ack { received: first }, &mut forged)
            .unwrap();
        if let Some(second) = second {
            raw.seal_control(&Control::Ack { received: second }, &mut forged)
                .unwrap();
        }
        let mut offset = 0;
        let error = loop {
            match pair
                .server
                .handle_input(&mut forged[offset..], Instant::now())
            {
                Ok(Some((_, used))) => offset += used,
                Ok(None) => panic!("every Ack accepted"),
                Err(error) => break error,
            }
        };
        assert_eq!(
            ErrorCode::for_error(&error),
            ErrorCode::Malformed,
            "{first} {second:?}"
        );
        assert!(!pair.server.has_link());
        assert_eq!(
            pair.server.handle_input(&mut [], Instant::now()),
            Err(error),
            "the failure sticks"
        );
    }
}

#[test]
fn counter_limit_is_exact_and_data_survives_it() {
    let config = ConnectionConfig {
        record_limit: 3,
        ..ConnectionConfig::default()
    };
    let mut pair = Pair::new(&config);
    for chunk in [b"one", b"two", b"thr"] {
        pair.write(true, chunk).unwrap();
    }
    let mut frame = [0u8; OVERHEAD + 4];
    frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(b"four");
    assert_eq!(
        pair.client.seal_data(&mut frame, 4, Instant::now()),
        Err(Error::CounterExhausted)
    );
    assert!(!pair.client.has_link());
    assert_eq!(pair.client.sent(), 13, "the bytes are kept");
    let server = deliver(&mut pair.server, &mut pair.to_server, &mut pair.to_client).unwrap();
    assert_eq!(data(&server), b"onetwothr", "3 records open at the limit");
    pair.drop_link();
    pair.resume().unwrap();
    let (_, server) = pair.settle().unwrap();
    assert_eq!(data(&server), b"four", "retransmitted under fresh keys");
    assert_eq!(pair.client.acknowledged(), 13);
}

#[test]
fn receiver_fails_the_record_beyond_its_limit() {
    let config = ConnectionConfig {
        record_limit: 2,
        ..ConnectionConfig::default()
    };
    let mut server = Connection::new(ConnectionId(3), &config);
    server
        .attach_link(sealer(1, false), opener(1, true), 0)
        .unwrap();
    let mut raw = sealer(1, true);
    let mut wire = Vec::new();
    for _ in 0..3 {
        raw.seal_control(&Control::Ping(1), &mut wire).unwrap();
    }
    let mut offset = 0;
    for _ in 0..2 {
        offset += server
            .handle_input(&mut wire[offset..], Instant::now())
            .unwrap()
            .unwrap()
            .1;
    }
    assert_eq!(
        server.handle_input(&mut wire[offset..], Instant::now()),
        Err(Error::CounterExhausted)
    );
}

#[test]
fn end_session_is_delivered_after_the_data_before_it() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"final bytes").unwrap();
    assert!(
        pair.server.end_session(&mut Vec::new()).is_err(),
        "launcher only"
    );
    pair.client.end_session(&mut pair.to_server).unwrap();
    assert!(pair.client.is_finished());
    let (_, server) = pair.step().unwrap();
    assert_eq!(
        meaningful(server),
        [Got::Data(b"final bytes".to_vec()), Got::EndSession]
    );
    assert!(pair.server.is_finished());
}

#[test]
fn end_session_received_by_a_client_is_malformed() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    let mut forged = Vec::new();
    sealer(pair.link, false)
        .seal_control(&Control::EndSession, &mut forged)
        .unwrap();
    let error = pair
        .client
        .handle_input(&mut forged, Instant::now())
        .unwrap_err();
    assert_eq!(ErrorCode::for_error(&error), ErrorCode::Malformed);
    assert!(!pair.client.has_link() && !pair.client.is_finished());
}

#[test]
fn an_error_record_ends_the_connection_for_good() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.server
        .send_error(ErrorCode::TargetUnreachable, "refused", &mut pair.to_client)
        .unwrap();
    assert!(pair.server.is_finished());
    let (client, _) = pair.settle().unwrap();
    assert_eq!(
        client,
        [Got::PeerError(
            ErrorCode::TargetUnreachable,
            "refused".into()
        )]
    );
    assert!(pair.client.is_finished());
    assert_eq!(pair.client.send_window(), 0);
    pair.drop_link();
    assert!(matches!(pair.resume(), Err(Error::Resume(_))));
    let error = pair.server.check_resume(0).unwrap_err();
    assert_eq!(ErrorCode::for_error(&error), ErrorCode::ResumeImpossible);
}

#[test]
fn pings_are_answered_on_their_link_and_pongs_are_opaque() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.client.ping(7, &mut pair.to_server).unwrap();
    pair.client.ping(8, &mut pair.to_server).unwrap();
    let (client, server) = pair.settle().unwrap();
    assert_eq!(
        server,
        [Got::Nothing, Got::Nothing],
        "every record is activity"
    );
    assert_eq!(client, [Got::Pong(8)], "the latest unanswered Ping");
    // An unsolicited Pong is reported; the caller ignores it.
    let mut forged = Vec::new();
    let mut raw = sealer(pair.link, true);
    raw.seal_control(&Control::Ping(0), &mut Vec::new())
        .unwrap();
    raw.seal_control(&Control::Ping(0), &mut Vec::new())
        .unwrap();
    raw.seal_control(&Control::Pong(99), &mut forged).unwrap();
    assert_eq!(
        pair.server
            .handle_input(&mut forged, Instant::now())
            .unwrap()
            .unwrap()
            .0,
        Event::Pong(99)
    );
    // A Ping whose link drops is not answered on the next one.
    pair.drop_link();
    pair.resume().unwrap();
    pair.client.ping(9, &mut pair.to_server).unwrap();
    deliver(&mut pair.server, &mut pair.to_server, &mut Vec::new()).unwrap();
    pair.drop_link();
    pair.resume().unwrap();
    let (client, _) = pair.settle().unwrap();
    assert!(client.is_empty());
}

#[test]
fn send_window_closes_when_the_replay_buffer_is_full_and_reopens_on_ack() {
    let config = ConnectionConfig {
        replay_capacity: 10,
        data_record_size: 4,
        ..ConnectionConfig::default()
    };
    let mut pair = Pair::new(&config);
    assert_eq!(pair.client.send_window(), 4);
    let mut written = 0;
    while pair.client.send_window() > 0 {
        written += pair.write(true, b"xxxx").unwrap();
    }
    assert_eq!(written, 10);
    let mut frame = [0u8; OVERHEAD + 1];
    assert!(matches!(
        pair.client.seal_data(&mut frame, 1, Instant::now()),
        Err(Error::Misuse(_))
    ));
    pair.settle().unwrap();
    assert_eq!(pair.client.send_window(), 4);
}

#[test]
fn retransmission_uses_data_record_size_and_holds_new_data_back() {
    let config = ConnectionConfig {
        data_record_size: 3,
        ..ConnectionConfig::default()
    };
    let mut pair = Pair::new(&config);
    pair.write(false, b"abc").unwrap();
    pair.write(false, b"def").unwrap();
    pair.write(false, b"g").unwrap();
    pair.drop_link();
    pair.link += 1;
    let link = pair.link;
    pair.client
        .attach_link(sealer(link, true), opener(link, false), 0)
        .unwrap();
    pair.server
        .attach_link(sealer(link, false), opener(link, true), 0)
        .unwrap();
    assert_eq!(pair.server.send_window(), 0, "retransmissions first");
    pair.poll().unwrap();
    assert_eq!(pair.to_client.len(), 3 * OVERHEAD + 7);
    assert_eq!(pair.server.send_window(), 3);
    let (client, _) = pair.settle().unwrap();
    assert_eq!(data(&client), b"abcdefg");
}

#[test]
fn check_resume_bounds() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"0123456789").unwrap();
    deliver(&mut pair.server, &mut pair.to_server, &mut pair.to_client).unwrap();
    pair.drop_link();
    // The server received 10; the client's replay still holds them (no Ack arrived).
    assert_eq!(pair.client.check_resume(0), Ok(()));
    assert_eq!(pair.client.check_resume(10), Ok(()));
    let error = pair.client.check_resume(11).unwrap_err();
    assert_eq!(ErrorCode::for_error(&error), ErrorCode::ResumeImpossible);
    pair.resume().unwrap();
    assert_eq!(pair.client.acknowledged(), 10);
    assert!(matches!(pair.client.check_resume(9), Err(Error::Resume(_))));
}

#[test]
fn shrink_releases_the_replay_buffer_of_an_idle_connection() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    assert_eq!(pair.client.buffered_memory(), 0, "allocated lazily");
    pair.write(true, &[1; 1000]).unwrap();
    assert!(pair.client.buffered_memory() >= DEFAULT_REPLAY_CAPACITY);
    pair.client.shrink();
    assert!(
        pair.client.buffered_memory() > 0,
        "unacknowledged bytes are kept"
    );
    pair.settle().unwrap();
    pair.client.shrink();
    assert_eq!(pair.client.buffered_memory(), 0);
    assert!(
        core::mem::size_of::<Connection>() < 4096,
        "{}",
        core::mem::size_of::<Connection>()
    );
}

#[test]
fn the_send_window_grows_over_a_long_round_trip_to_its_cap_and_shrinks_when_idle() {
    const KIB: usize = 1024;
    let budget = WindowBudget::new(16 * 1024 * KIB);
    let config = ConnectionConfig {
        replay_capacity: 64 * KIB,
        max_window: 1024 * KIB,
        window_budget: budget.clone(),
        ..ConnectionConfig::default()
    };
    let mut pair = Pair::new(&config);
    let rtt = core::time::Duration::from_millis(50);
    let mut windows = Vec::new();
    for _ in 0..6 {
        // The client sends its whole window; the Ack for it comes back a round trip later.
        while pair.client.send_window() > 0 {
            pair.write(true, &[7; 16 * 1024]).unwrap();
        }
        assert_eq!(
            pair.client.sent() - pair.client.acknowledged(),
            pair.client.window() as u64
        );
        pair.now += rtt;
        pair.settle().unwrap();
        windows.push(pair.client.window() / KIB);
        assert!(pair.client.buffered_memory() <= pair.client.window());
    }
    assert_eq!(
        windows,
        [128, 256, 512, 1024, 1024, 1024],
        "doubling, then the cap"
    );
    assert_eq!(budget.in_use(), (1024 - 64) * KIB);
    assert_eq!(
        pair.server.window(),
        64 * KIB,
        "the other direction sent nothing"
    );
    pair.client.shrink();
    assert_eq!(pair.client.window(), 64 * KIB);
    assert_eq!(pair.client.buffered_memory(), 0);
    assert_eq!(budget.in_use(), 0, "the growth went back to the budget");
}

#[test]
fn a_window_without_a_budget_left_stays_at_its_initial_size() {
    let config = ConnectionConfig {
        replay_capacity: 4096,
        window_budget: WindowBudget::new(0),
        ..ConnectionConfig::default()
    };
    let mut pair = Pair::new(&config);
    for _ in 0..3 {
        while pair.client.send_window() > 0 {
            pair.write(true, &[1; 1024]).unwrap();
        }
        pair.now += core::time::Duration::from_millis(50);
        pair.settle().unwrap();
    }
    assert_eq!(pair.client.window(), 4096);
    assert_eq!(
        pair.client.sent(),
        3 * 4096,
        "it still sends, one window per round trip"
    );
}

#[test]
fn only_delivered_data_is_acknowledged_and_undelivered_data_comes_again_after_a_resume() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"first").unwrap();
    pair.write(true, b"second").unwrap();
    // The server opens both records, but its local side takes only the first so far.
    let mut wire = core::mem::take(&mut pair.to_server);
    let (event, used) = pair
        .server
        .handle_input(&mut wire, pair.now)
        .unwrap()
        .unwrap();
    assert_eq!(event, Event::Data(&b"first"[..]));
    pair.server.delivered(5);
    let (event, _) = pair
        .server
        .handle_input(&mut wire[used..], pair.now)
        .unwrap()
        .unwrap();
    assert_eq!(event, Event::Data(&b"second"[..]));
    pair.server.poll_transmit(&mut pair.to_client).unwrap();
    pair.settle().unwrap();
    assert_eq!(pair.server.received(), 5);
    assert_eq!(
        pair.client.acknowledged(),
        5,
        "the Ack covers delivered bytes only"
    );
    // The link drops before "second" reached the local side: it comes again, once.
    pair.drop_link();
    pair.resume().unwrap();
    let (_, server) = pair.settle().unwrap();
    assert_eq!(data(&server), b"second");
    assert_eq!(pair.server.received(), 11);
    assert_eq!(pair.client.acknowledged(), 11);
    pair.server.delivered(100);
    assert_eq!(pair.server.received(), 11, "never more than was returned");
}

#[test]
fn without_a_link_nothing_is_sent() {
    let mut connection = Connection::new(ConnectionId(5), &ConnectionConfig::default());
    assert_eq!(connection.id(), ConnectionId(5));
    assert!(!connection.has_link());
    assert_eq!(connection.send_window(), 0);
    let mut out = Vec::new();
    connection.poll_transmit(&mut out).unwrap();
    assert!(out.is_empty());
    assert!(matches!(
        connection.ping(1, &mut out),
        Err(Error::Misuse(_))
    ));
    assert!(matches!(
        connection.handle_input(&mut [], Instant::now()),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn debug_shows_no_data_or_keys() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"SECRET-PAYLOAD").unwrap();
    let text = format!("{:?}", pair.client);
    assert!(text.contains("sent: 14"), "{text}");
    assert!(
        !text.contains("83, 69, 67") && !text.contains("SECRET"),
        "{text}"
    );
}

#[test]
fn an_abandoned_connection_is_finished_without_a_link_and_cannot_be_resumed() {
    let mut pair = Pair::new(&ConnectionConfig::default());
    pair.write(true, b"0123456789").unwrap();
    pair.drop_link();
    assert!(!pair.server.is_finished());
    // A refused Resume ends the connection id although no link is up (§8.7.4).
    pair.server.abandon();
    assert!(pair.server.is_finished());
    assert!(!pair.server.has_link());
    assert_eq!(pair.server.send_window(), 0);
    let error = pair.server.check_resume(0).unwrap_err();
    assert_eq!(ErrorCode::for_error(&error), ErrorCode::ResumeImpossible);
}
