//! An in-memory launcher / tunnel server / broker trio driven through the sans-io tunnel
//! state machines, with a hook that sees (and may alter) every flight of bytes.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use portcullis_proto::tunnel::{
    ClientHello, Control, DEFAULT_PLAINTEXT, ErrorCode, MAC_LEN, Record, RecordOpener,
    RecordSealer, ReplayBuffer, ServerMessage, SessionCredentials, SessionKey, client, server,
    verify_open_proof,
};
use portcullis_proto::{ConnectionId, Error, SessionId, SharedSecret, TicketId};

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// Sees every flight of bytes before delivery; may change it.
pub type Tamper<'a> = &'a mut dyn FnMut(Dir, &mut Vec<u8>);

/// A hook that changes nothing.
pub fn honest(_: Dir, _: &mut Vec<u8>) {}

/// What one side keeps about one logical connection across resumes.
#[derive(Debug)]
pub struct Stream {
    pub replay: ReplayBuffer,
    pub received: u64,
    /// Everything the application wrote (accepted by the replay buffer).
    pub written: Vec<u8>,
    /// Everything delivered to the application.
    pub delivered: Vec<u8>,
    pub controls: Vec<Control>,
}

impl Stream {
    fn new(capacity: usize) -> Self {
        Self {
            replay: ReplayBuffer::new(capacity),
            received: 0,
            written: Vec::new(),
            delivered: Vec::new(),
            controls: Vec::new(),
        }
    }
}

/// One side of one TCP connection after the handshake.
#[derive(Debug)]
pub struct Endpoint {
    pub sealer: RecordSealer,
    pub opener: RecordOpener,
    pub inbox: Vec<u8>,
}

/// One TCP connection: both endpoints and the bytes in flight.
#[derive(Debug)]
pub struct Link {
    pub id: ConnectionId,
    pub client: Endpoint,
    pub server: Endpoint,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
}

impl Link {
    /// The connection breaks: only the first `to_server` / `to_client` bytes in flight
    /// arrive (possibly cutting a record), the rest is lost.
    pub fn cut(mut self, world: &mut World, to_server: usize, to_client: usize) {
        let keep_s = to_server.min(self.to_server.len());
        let keep_c = to_client.min(self.to_client.len());
        self.to_server.truncate(keep_s);
        self.to_client.truncate(keep_c);
        let (s, c) = (
            std::mem::take(&mut self.to_server),
            std::mem::take(&mut self.to_client),
        );
        self.server.inbox.extend_from_slice(&s);
        self.client.inbox.extend_from_slice(&c);
        // Whatever arrives is processed; replies go nowhere.
        let _ = process(
            &mut self.server,
            world.server.streams.get_mut(&self.id).unwrap(),
            &mut Vec::new(),
        );
        let _ = process(
            &mut self.client,
            world.client.streams.get_mut(&self.id).unwrap(),
            &mut Vec::new(),
        );
    }
}

/// The broker: redeems the one tunnel ticket once, checking the proof first.
pub struct Broker {
    pub ticket: TicketId,
    pub secret: SharedSecret,
    pub redeemed: bool,
}

impl Broker {
    fn redeem(&mut self, proof: &server::OpenProof) -> Result<SharedSecret, Error> {
        if proof.ticket() != &self.ticket || self.redeemed {
            return Err(Error::Refused(ErrorCode::AccessDenied));
        }
        verify_open_proof(
            &self.secret,
            proof.ticket(),
            proof.client_random(),
            proof.server_random(),
            proof.proof(),
        )?;
        self.redeemed = true;
        Ok(self.secret.duplicate())
    }
}

pub struct ServerSide {
    pub session: Option<(SessionId, SessionKey)>,
    pub streams: HashMap<ConnectionId, Stream>,
    next_connection: u32,
}

pub struct ClientSide {
    pub credentials: Option<SessionCredentials>,
    pub streams: HashMap<ConnectionId, Stream>,
}

/// Launcher, tunnel server and broker of one session.
pub struct World {
    pub broker: Broker,
    pub server: ServerSide,
    pub client: ClientSide,
    pub replay_capacity: usize,
    randoms: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl World {
    pub fn new(replay_capacity: usize) -> Self {
        Self {
            broker: Broker {
                ticket: TicketId::generate().unwrap(),
                secret: SharedSecret::generate().unwrap(),
                redeemed: false,
            },
            server: ServerSide {
                session: None,
                streams: HashMap::new(),
                next_connection: 1,
            },
            client: ClientSide {
                credentials: None,
                streams: HashMap::new(),
            },
            replay_capacity,
            randoms: 0,
        }
    }

    fn randoms(&mut self) -> ([u8; 32], [u8; 32]) {
        self.randoms = self.randoms.wrapping_add(1);
        ([self.randoms; 32], [self.randoms ^ 0x80; 32])
    }

    /// Opens the session with the broker's ticket and secret.
    pub fn open(&mut self, tamper: Tamper<'_>) -> Result<Link, Error> {
        let ticket = self.broker.ticket.clone();
        let secret = self.broker.secret.duplicate();
        self.handshake(tamper, |cr, out| client::open(&ticket, &secret, cr, out))
    }

    /// Attaches a new connection.
    pub fn attach(&mut self, tamper: Tamper<'_>) -> Result<Link, Error> {
        let credentials = self.client.credentials.take().expect("no session");
        let result = self.handshake(tamper, |cr, out| client::attach(&credentials, cr, out));
        self.client.credentials = Some(credentials);
        result
    }

    /// Resumes connection `id`; both sides retransmit what the other did not receive.
    pub fn resume(&mut self, id: ConnectionId, tamper: Tamper<'_>) -> Result<Link, Error> {
        let credentials = self.client.credentials.take().expect("no session");
        let received = self.client.streams[&id].received;
        let result = self.handshake(tamper, |cr, out| {
            client::resume(&credentials, id, received, cr, out)
        });
        self.client.credentials = Some(credentials);
        result
    }

    /// Runs one handshake through the state machines, flight by flight.
    fn handshake(
        &mut self,
        tamper: Tamper<'_>,
        start: impl FnOnce([u8; 32], &mut Vec<u8>) -> client::AwaitChallenge,
    ) -> Result<Link, Error> {
        let (cr, sr) = self.randoms();
        let mut flight = Vec::new();
        let client_state = start(cr, &mut flight);
        tamper(Dir::ToServer, &mut flight);

        let mut answer = Vec::new();
        let await_proof = match self.server_hello(&flight, sr, &mut answer) {
            Ok(state) => state,
            Err(error) => {
                tamper(Dir::ToClient, &mut answer);
                return Err(client_refused(client_state, &answer).unwrap_or(error));
            }
        };
        tamper(Dir::ToClient, &mut answer);
        let mut flight = Vec::new();
        let client_state = client_state.handle(decode_server(&answer)?, &mut flight)?;
        tamper(Dir::ToServer, &mut flight);

        let mut answer = Vec::new();
        let proof: [u8; MAC_LEN] = flight
            .as_slice()
            .try_into()
            .map_err(|_| Error::Misuse("proof"))?;
        let established = match self.server_complete(await_proof.receive_proof(proof), &mut answer)
        {
            Ok(established) => established,
            Err(error) => {
                answer.clear();
                server::refuse(ErrorCode::for_error(&error), &mut answer);
                tamper(Dir::ToClient, &mut answer);
                return Err(client_state
                    .handle(decode_server(&answer)?)
                    .err()
                    .unwrap_or(error));
            }
        };
        tamper(Dir::ToClient, &mut answer);
        let client = client_state.handle(decode_server(&answer)?)?;
        self.finish(client, established)
    }

    /// Server: hello → challenge, refusing what it cannot parse.
    fn server_hello(
        &mut self,
        bytes: &[u8],
        sr: [u8; 32],
        out: &mut Vec<u8>,
    ) -> Result<server::AwaitProof, Error> {
        let hello = match ClientHello::decode(bytes) {
            Ok(Some((hello, used))) if used == bytes.len() => hello,
            Ok(_) => return Err(refuse(Error::Unexpected("partial or oversized hello"), out)),
            Err(error) => return Err(refuse(error, out)),
        };
        match server::start(hello, sr, out) {
            server::Start::AwaitProof(state) => Ok(state),
            server::Start::Tested => Err(Error::Unexpected("test")),
        }
    }

    /// Server: proof → broker or session lookup → accept.
    fn server_complete(
        &mut self,
        proof: server::ProofReceived,
        out: &mut Vec<u8>,
    ) -> Result<server::Established, Error> {
        match proof {
            server::ProofReceived::Open(open) => {
                let secret = self.broker.redeem(&open)?;
                let session_id = SessionId::from_bytes([0x5e; 16]);
                let id = self.next_connection();
                open.complete(&secret, session_id, id, out)
            }
            server::ProofReceived::Attach(attach) => {
                let id = self.next_connection();
                let (_, key) = self.session(attach.session_id())?;
                attach.complete(key, id, out)
            }
            server::ProofReceived::Resume(resume) => {
                let stream = self
                    .server
                    .streams
                    .get_mut(&resume.connection_id())
                    .ok_or(Error::Refused(ErrorCode::ResumeImpossible))?;
                // Checked (not acted on) before the proof is verified.
                stream.replay.check_retransmit(resume.client_received())?;
                let server_received = stream.received;
                let (_, key) = self.session(resume.session_id())?;
                resume.complete(key, server_received, out)
            }
        }
    }

    fn session(&self, id: SessionId) -> Result<&(SessionId, SessionKey), Error> {
        self.server
            .session
            .as_ref()
            .filter(|(session_id, _)| *session_id == id)
            .ok_or(Error::Refused(ErrorCode::SessionUnknown))
    }

    fn next_connection(&mut self) -> ConnectionId {
        let id = ConnectionId(self.server.next_connection);
        self.server.next_connection += 1;
        id
    }

    /// Both sides established: keep the session, set up streams, retransmit.
    fn finish(
        &mut self,
        client: client::Established,
        server: server::Established,
    ) -> Result<Link, Error> {
        assert_eq!(client.connection_id, server.connection_id);
        assert_eq!(client.session_id, server.session_id);
        if let Some(key) = server.session_key {
            self.server.session = Some((server.session_id, key));
        }
        if let Some(credentials) = client.credentials {
            self.client.credentials = Some(credentials);
        }
        let id = client.connection_id;
        let capacity = self.replay_capacity;
        let mut link = Link {
            id,
            client: Endpoint {
                sealer: client.sealer,
                opener: client.opener,
                inbox: Vec::new(),
            },
            server: Endpoint {
                sealer: server.sealer,
                opener: server.opener,
                inbox: Vec::new(),
            },
            to_server: Vec::new(),
            to_client: Vec::new(),
        };
        let client_stream = self
            .client
            .streams
            .entry(id)
            .or_insert_with(|| Stream::new(capacity));
        let (a, b) = client_stream
            .replay
            .retransmit_from(client.server_received)?;
        seal_all(&mut link.client.sealer, &[a, b], &mut link.to_server)?;
        let server_stream = self
            .server
            .streams
            .entry(id)
            .or_insert_with(|| Stream::new(capacity));
        let (a, b) = server_stream
            .replay
            .retransmit_from(server.client_received)?;
        seal_all(&mut link.server.sealer, &[a, b], &mut link.to_client)?;
        Ok(link)
    }

    fn stream(&mut self, side: Side, id: ConnectionId) -> &mut Stream {
        match side {
            Side::Client => self.client.streams.get_mut(&id).unwrap(),
            Side::Server => self.server.streams.get_mut(&id).unwrap(),
        }
    }

    /// The application on `side` writes `data`; returns how much the replay buffer took.
    pub fn write(&mut self, link: &mut Link, side: Side, data: &[u8]) -> Result<usize, Error> {
        let stream = self.stream(side, link.id);
        let take = data.len().min(stream.replay.available());
        let data = &data[..take];
        stream.replay.push(data)?;
        stream.written.extend_from_slice(data);
        let (sealer, out) = match side {
            Side::Client => (&mut link.client.sealer, &mut link.to_server),
            Side::Server => (&mut link.server.sealer, &mut link.to_client),
        };
        seal_all(sealer, &[data], out)?;
        Ok(take)
    }

    /// Sends a control record from `side`.
    pub fn control(&mut self, link: &mut Link, side: Side, control: &Control) -> Result<(), Error> {
        match side {
            Side::Client => link
                .client
                .sealer
                .seal_control(control, &mut link.to_server),
            Side::Server => link
                .server
                .sealer
                .seal_control(control, &mut link.to_client),
        }
    }

    /// Delivers bytes both ways (through `tamper`) until nothing is in flight.
    pub fn transfer(&mut self, link: &mut Link, tamper: Tamper<'_>) -> Result<(), Error> {
        while !(link.to_server.is_empty() && link.to_client.is_empty()) {
            let mut bytes = std::mem::take(&mut link.to_server);
            tamper(Dir::ToServer, &mut bytes);
            link.server.inbox.extend_from_slice(&bytes);
            let mut bytes = std::mem::take(&mut link.to_client);
            tamper(Dir::ToClient, &mut bytes);
            link.client.inbox.extend_from_slice(&bytes);
            let server_stream = self.server.streams.get_mut(&link.id).unwrap();
            process(&mut link.server, server_stream, &mut link.to_client)?;
            let client_stream = self.client.streams.get_mut(&link.id).unwrap();
            process(&mut link.client, client_stream, &mut link.to_server)?;
        }
        Ok(())
    }
}

fn refuse(error: Error, out: &mut Vec<u8>) -> Error {
    server::refuse(ErrorCode::for_error(&error), out);
    error
}

fn decode_server(bytes: &[u8]) -> Result<ServerMessage, Error> {
    match ServerMessage::decode(bytes)? {
        Some((message, used)) if used == bytes.len() => Ok(message),
        _ => Err(Error::Unexpected("partial or oversized server message")),
    }
}

/// The client's view of a refusal sent in answer to its hello.
fn client_refused(state: client::AwaitChallenge, answer: &[u8]) -> Option<Error> {
    state
        .handle(decode_server(answer).ok()?, &mut Vec::new())
        .err()
}

/// Seals `parts` as Data records of at most DEFAULT_PLAINTEXT bytes.
fn seal_all(sealer: &mut RecordSealer, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Error> {
    for part in parts {
        for chunk in part.chunks(DEFAULT_PLAINTEXT) {
            sealer.seal_data(chunk, out)?;
        }
    }
    Ok(())
}

/// Opens every complete record in the inbox; acknowledges Data, answers Pings.
fn process(endpoint: &mut Endpoint, stream: &mut Stream, reply: &mut Vec<u8>) -> Result<(), Error> {
    let before = stream.received;
    let mut offset = 0;
    while let Some((record, used)) = endpoint
        .opener
        .open_in_place(&mut endpoint.inbox[offset..])?
    {
        match record {
            Record::Data(data) => {
                stream.delivered.extend_from_slice(data);
                stream.received += data.len() as u64;
            }
            Record::Control(Control::Ack { received }) => stream.replay.acknowledge(received)?,
            Record::Control(Control::Ping(value)) => {
                endpoint.sealer.seal_control(&Control::Pong(value), reply)?;
                stream.controls.push(Control::Ping(value));
            }
            Record::Control(other) => stream.controls.push(other),
        }
        offset += used;
    }
    endpoint.inbox.drain(..offset);
    if stream.received != before {
        endpoint.sealer.seal_control(
            &Control::Ack {
                received: stream.received,
            },
            reply,
        )?;
    }
    Ok(())
}
