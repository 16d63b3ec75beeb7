//! An in-memory launcher / tunnel server / broker trio: the handshakes run through the
//! sans-io state machines, and after each handshake both sides drive a
//! [`Connection`] per connection id, with a hook that sees (and may alter) every flight of
//! bytes.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::time::Instant;

use portcullis_proto::tunnel::{
    ClientHello, Connection, ConnectionConfig, Control, ErrorCode, Event, MAC_LEN, OVERHEAD,
    PAYLOAD_OFFSET, ServerMessage, SessionCredentials, SessionKey, client, server,
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

/// What one side keeps about one connection id across resumes: the `Connection` and what
/// its application wrote and was given.
#[derive(Debug)]
pub struct Stream {
    pub connection: Connection,
    /// Everything the application wrote (accepted by `seal_data`).
    pub written: Vec<u8>,
    /// Everything delivered to the application (`Event::Data`).
    pub delivered: Vec<u8>,
    /// The other events, as the control records that caused them: `Close` for
    /// `PeerClosed`, `EndSession`, `Pong`, `Error`.
    pub controls: Vec<Control>,
    /// Authenticated records received (activity).
    pub records: u64,
}

impl Stream {
    fn new(connection: Connection) -> Self {
        Self {
            connection,
            written: Vec::new(),
            delivered: Vec::new(),
            controls: Vec::new(),
            records: 0,
        }
    }

    /// Whether the peer acknowledged every byte written.
    pub fn all_acknowledged(&self) -> bool {
        self.connection.acknowledged() == self.connection.sent()
    }

    /// How often the peer's `control` was reported.
    pub fn count(&self, control: &Control) -> usize {
        self.controls.iter().filter(|c| *c == control).count()
    }

    /// Opens every complete record in `inbox`, then appends what the connection has to
    /// send to `reply`.
    fn process(&mut self, inbox: &mut Vec<u8>, reply: &mut Vec<u8>) -> Result<(), Error> {
        let mut offset = 0;
        let result = loop {
            match self
                .connection
                .handle_input(&mut inbox[offset..], Instant::now())
            {
                Ok(Some((event, used))) => {
                    offset += used;
                    self.records += 1;
                    match event {
                        Event::Data(data) => {
                            self.delivered.extend_from_slice(data);
                            self.connection.delivered(data.len());
                        }
                        Event::PeerClosed => self.controls.push(Control::Close),
                        Event::EndSession => self.controls.push(Control::EndSession),
                        Event::PeerError { code, message } => {
                            self.controls.push(Control::Error { code, message });
                        }
                        Event::Pong(value) => self.controls.push(Control::Pong(value)),
                        Event::Nothing => {}
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        inbox.drain(..offset);
        result?;
        self.connection.poll_transmit(reply)
    }
}

/// One TCP connection: the bytes in flight and the bytes each side received but has not
/// processed yet (a partial record).
#[derive(Debug)]
pub struct Link {
    pub id: ConnectionId,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    pub server_inbox: Vec<u8>,
    pub client_inbox: Vec<u8>,
}

impl Link {
    /// The connection breaks: only the first `to_server` / `to_client` bytes in flight
    /// arrive (possibly cutting a record), the rest is lost; both sides then see the link
    /// drop (`link_lost`).
    pub fn cut(&mut self, world: &mut World, to_server: usize, to_client: usize) {
        self.to_server.truncate(to_server.min(self.to_server.len()));
        self.to_client.truncate(to_client.min(self.to_client.len()));
        self.server_inbox.append(&mut self.to_server);
        self.client_inbox.append(&mut self.to_client);
        // Whatever arrives is processed; replies go nowhere.
        let server = world.server.streams.get_mut(&self.id).unwrap();
        let _ = server.process(&mut self.server_inbox, &mut Vec::new());
        server.connection.link_lost();
        let client = world.client.streams.get_mut(&self.id).unwrap();
        let _ = client.process(&mut self.client_inbox, &mut Vec::new());
        client.connection.link_lost();
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
    pub config: ConnectionConfig,
    randoms: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl World {
    pub fn new(replay_capacity: usize) -> Self {
        Self::with_config(ConnectionConfig {
            replay_capacity,
            ..ConnectionConfig::default()
        })
    }

    pub fn with_config(config: ConnectionConfig) -> Self {
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
            config,
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
        let (opened, server) =
            self.handshake(tamper, |cr, out| client::open(&ticket, &secret, cr, out))?;
        self.client.credentials = Some(opened.credentials);
        self.finish(opened.connection, server)
    }

    /// Attaches a new connection.
    pub fn attach(&mut self, tamper: Tamper<'_>) -> Result<Link, Error> {
        let credentials = self.client.credentials.take().expect("no session");
        let result = self.handshake(tamper, |cr, out| client::attach(&credentials, cr, out));
        self.client.credentials = Some(credentials);
        let (client, server) = result?;
        self.finish(client, server)
    }

    /// Resumes connection `id`; both sides retransmit what the other did not receive.
    pub fn resume(&mut self, id: ConnectionId, tamper: Tamper<'_>) -> Result<Link, Error> {
        let received = self.client.streams[&id].connection.received();
        self.resume_claiming(id, received, tamper)
    }

    /// Resumes connection `id` with the client stating `received` (which may be a lie).
    pub fn resume_claiming(
        &mut self,
        id: ConnectionId,
        received: u64,
        tamper: Tamper<'_>,
    ) -> Result<Link, Error> {
        let credentials = self.client.credentials.take().expect("no session");
        let result = self.handshake(tamper, |cr, out| {
            client::resume(&credentials, id, received, cr, out)
        });
        self.client.credentials = Some(credentials);
        let (client, server) = result?;
        self.finish(client, server)
    }

    /// Runs one handshake through the state machines, flight by flight: what the client's
    /// handshake ended in and the server's connection.
    fn handshake<T: client::Outcome>(
        &mut self,
        tamper: Tamper<'_>,
        start: impl FnOnce([u8; 32], &mut Vec<u8>) -> client::AwaitChallenge<T>,
    ) -> Result<(T, server::Established), Error> {
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
        let proof: [u8; MAC_LEN] =
            flight
                .as_slice()
                .try_into()
                .map_err(|_| Error::WrongLength {
                    what: "handshake proof",
                    expected: MAC_LEN,
                    got: flight.len(),
                })?;
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
        Ok((client, established))
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

    /// Server: proof → broker, or session lookup and proof → connection checks → accept.
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
                let opened = open.complete(&secret, session_id, id, out)?;
                // The server keeps the session once it sends the Accept.
                self.server.session = Some((session_id, opened.session_key));
                Ok(opened.connection)
            }
            server::ProofReceived::Attach(attach) => {
                let (_, key) = self.session(attach.session_id())?;
                let verified = attach.verify(key)?;
                let id = ConnectionId(self.server.next_connection);
                let established = verified.accept(key, id, out)?;
                self.server.next_connection += 1;
                Ok(established)
            }
            server::ProofReceived::Resume(resume) => {
                let (_, key) = self.session(resume.session_id())?;
                // `received` is acted on only once the proof verified.
                let verified = resume.verify(key)?;
                let stream = self
                    .server
                    .streams
                    .get(&verified.connection_id())
                    .ok_or(Error::Refused(ErrorCode::ResumeImpossible))?;
                stream.connection.check_resume(verified.client_received())?;
                let server_received = stream.connection.received();
                verified.accept(key, server_received, out)
            }
            server::ProofReceived::Hold(hold) => {
                let (_, key) = self.session(hold.session_id())?;
                hold.verify(key)?.accept(key, out)
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

    /// Both sides established: keep the session, attach the links, queue retransmissions.
    fn finish(
        &mut self,
        client: client::Established,
        server: server::Established,
    ) -> Result<Link, Error> {
        assert_eq!(client.connection_id, server.connection_id);
        assert_eq!(client.session_id, server.session_id);
        let id = client.connection_id;
        let config = self.config.clone();
        let mut link = Link {
            id,
            to_server: Vec::new(),
            to_client: Vec::new(),
            server_inbox: Vec::new(),
            client_inbox: Vec::new(),
        };
        let server_stream = self
            .server
            .streams
            .entry(id)
            .or_insert_with(|| Stream::new(Connection::new(id, &config)));
        server_stream.connection.attach_link(
            server.sealer,
            server.opener,
            server.client_received,
        )?;
        server_stream
            .connection
            .poll_transmit(&mut link.to_client)?;
        let client_stream = self
            .client
            .streams
            .entry(id)
            .or_insert_with(|| Stream::new(Connection::new_client(id, &config)));
        client_stream.connection.attach_link(
            client.sealer,
            client.opener,
            client.server_received,
        )?;
        client_stream
            .connection
            .poll_transmit(&mut link.to_server)?;
        Ok(link)
    }

    /// The `Connection` of `side` for `id`.
    pub fn connection(&mut self, side: Side, id: ConnectionId) -> &mut Connection {
        &mut self.stream(side, id).connection
    }

    pub fn stream(&mut self, side: Side, id: ConnectionId) -> &mut Stream {
        match side {
            Side::Client => self.client.streams.get_mut(&id).unwrap(),
            Side::Server => self.server.streams.get_mut(&id).unwrap(),
        }
    }

    /// The application on `side` writes `data`, in `send_window` pieces while the window
    /// is open; returns how much was taken.
    pub fn write(&mut self, link: &mut Link, side: Side, data: &[u8]) -> Result<usize, Error> {
        let out = match side {
            Side::Client => &mut link.to_server,
            Side::Server => &mut link.to_client,
        };
        let stream = self.stream(side, link.id);
        let mut taken = 0;
        let mut frame = Vec::new();
        loop {
            let len = (data.len() - taken).min(stream.connection.send_window());
            if len == 0 {
                return Ok(taken);
            }
            frame.resize(OVERHEAD + len, 0);
            frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len].copy_from_slice(&data[taken..taken + len]);
            let sealed = stream.connection.seal_data(&mut frame, len, Instant::now());
            if !matches!(sealed, Err(Error::Misuse(_))) {
                // In the replay buffer even if sealing failed: sent after the resume.
                stream.written.extend_from_slice(&data[taken..taken + len]);
            }
            out.extend_from_slice(&frame[..sealed?]);
            taken += len;
        }
    }

    /// `side` sends a control record through its `Connection`: `Ping`, `Close` (a
    /// half-close, sent once everything is acknowledged), `EndSession` or `Error`.
    pub fn control(&mut self, link: &mut Link, side: Side, control: &Control) -> Result<(), Error> {
        let out = match side {
            Side::Client => &mut link.to_server,
            Side::Server => &mut link.to_client,
        };
        let connection = &mut self.stream(side, link.id).connection;
        match control {
            Control::Ping(value) => connection.ping(*value, out),
            Control::Close => {
                connection.close();
                connection.poll_transmit(out)
            }
            Control::EndSession => connection.end_session(out),
            Control::Error { code, message } => connection.send_error(*code, message, out),
            other => panic!("{other:?} is sent by the Connection itself"),
        }
    }

    /// Delivers bytes both ways (through `tamper`) until nothing is in flight.
    pub fn transfer(&mut self, link: &mut Link, tamper: Tamper<'_>) -> Result<(), Error> {
        while !(link.to_server.is_empty() && link.to_client.is_empty()) {
            let mut bytes = std::mem::take(&mut link.to_server);
            tamper(Dir::ToServer, &mut bytes);
            link.server_inbox.extend_from_slice(&bytes);
            let mut bytes = std::mem::take(&mut link.to_client);
            tamper(Dir::ToClient, &mut bytes);
            link.client_inbox.extend_from_slice(&bytes);
            let server = self.server.streams.get_mut(&link.id).unwrap();
            server.process(&mut link.server_inbox, &mut link.to_client)?;
            let client = self.client.streams.get_mut(&link.id).unwrap();
            client.process(&mut link.client_inbox, &mut link.to_server)?;
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
fn client_refused<T: client::Outcome>(
    state: client::AwaitChallenge<T>,
    answer: &[u8],
) -> Option<Error> {
    state
        .handle(decode_server(answer).ok()?, &mut Vec::new())
        .err()
}
