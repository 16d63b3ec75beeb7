//! One accepted tunnel connection up to its relay (docs/protocol.md §8.7): PROXY v2 header
//! and TLS when configured, the client hello, `Challenge`, the proof, then `Test`, `Open`
//! (broker `start`), `Attach`, `Resume` or `Hold`.
//!
//! Everything before the proof runs under the handshake timeout; a connection that is
//! slow, malformed or over a limit is answered with `Refuse` (or closed) and ends here,
//! with nothing kept.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use portcullis_link::TunnelStream;
use portcullis_proto::ConnectionId;
use portcullis_proto::api::StartProof;
use portcullis_proto::proxy_v2::{self, ProxyHeader};
use portcullis_proto::tunnel::{
    ClientHello, Command, Connection, ErrorCode, HoldLink, MAC_LEN, server,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::BrokerError;
use crate::driver::{self, Link};
use crate::limits::{ConnectionPermit, Refusal};
use crate::metrics::{CallLabels, ReasonLabels};
use crate::session::{EndReason, ResumeRequest, Session, SessionTable};
use crate::shared::Shared;

/// How a handshake failed before anything was kept.
#[derive(Debug)]
enum Failure {
    /// Close without an answer (timeout, I/O error, PROXY or TLS failure).
    Close(&'static str),
    /// Answer `Refuse(code)` and close.
    Refuse(ErrorCode, &'static str),
}

impl From<std::io::Error> for Failure {
    fn from(_: std::io::Error) -> Self {
        Failure::Close("io")
    }
}

/// Runs one accepted connection: handshake under its deadline, then the relay.
pub async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut permit: ConnectionPermit,
) {
    let deadline = tokio::time::Instant::now() + shared.config.timeouts.handshake();
    let mut source = peer.ip();
    let mut ends = crate::forward::Ends {
        client: peer,
        destination: tcp.local_addr().unwrap_or(peer),
    };
    // Forwarded by a member of this server's cluster: the hello follows in clear.
    let mut forwarded = false;
    // The source's handshake token was taken (before TLS).
    let mut token_taken = false;
    let start = tokio::time::timeout_at(deadline, async {
        let mut tcp = tcp;
        if shared.config.proxy_protocol {
            if let Some((header_ends, forwarded_by)) = read_proxy_header(&mut tcp).await? {
                source = header_ends.client.ip();
                ends = header_ends;
                forwarded = forwarded_by.is_some();
            }
            // A LOCAL header (the balancer's health check) keeps the balancer's address.
            if let Err(refusal) = shared.limits.attribute(&mut permit, source, Instant::now()) {
                limited(&shared, refusal);
                return Err(Failure::Close("limited"));
            }
        }
        let stream: TunnelStream = match &shared.tls {
            // A member of the cluster terminated the launcher's TLS (§8.16).
            Some(acceptor) if !forwarded => {
                // A TLS handshake costs far more than a tunnel hello: the source's token is
                // taken before it, and a source over its rate gets no TLS (§8.15).
                if let Err(refusal) = shared.limits.admit_handshake(&permit, Instant::now()) {
                    limited(&shared, refusal);
                    return Err(Failure::Close("busy"));
                }
                token_taken = true;
                Box::new(
                    acceptor
                        .accept(tcp)
                        .await
                        .map_err(|_| Failure::Close("tls"))?,
                )
            }
            _ => Box::new(tcp),
        };
        Ok::<_, Failure>(stream)
    })
    .await;
    let mut stream = match start {
        Ok(Ok(stream)) => stream,
        Ok(Err(Failure::Close(reason))) | Ok(Err(Failure::Refuse(_, reason))) => {
            shared.metrics.handshake_failed(reason);
            return;
        }
        Err(_) => {
            shared.metrics.handshake_failed("timeout");
            return;
        }
    };
    let hello = tokio::time::timeout_at(deadline, read_hello(&mut stream)).await;
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(failure)) => return refuse(&shared, stream, failure).await,
        Err(_) => {
            shared.metrics.handshake_failed("timeout");
            return;
        }
    };
    if hello.command() == Command::Test {
        let mut out = Vec::new();
        let _ = server::start(hello, [0; 32], &mut out);
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
        shared.metrics.handshake_completed(Command::Test);
        return;
    }
    // Without TLS the token is taken here, where a Busy can still be answered.
    if !token_taken {
        if let Err(refusal) = shared.limits.admit_handshake(&permit, Instant::now()) {
            limited(&shared, refusal);
            return refuse(&shared, stream, Failure::Refuse(ErrorCode::Busy, "busy")).await;
        }
    }
    // Another member's session: forward it there, once (§8.16).
    if let Some(owner) = crate::forward::owner(&shared, &hello) {
        if forwarded {
            let failure = Failure::Refuse(ErrorCode::SessionUnknown, "session_unknown");
            return refuse(&shared, stream, failure).await;
        }
        return crate::forward::forward(shared, stream, &hello, ends, owner, permit).await;
    }
    let server_random = match portcullis_proto::tunnel::fresh_random() {
        Ok(random) => random,
        Err(_) => {
            return refuse(
                &shared,
                stream,
                Failure::Refuse(ErrorCode::Internal, "random"),
            )
            .await;
        }
    };
    let mut out = Vec::new();
    let server::Start::AwaitProof(awaiting) = server::start(hello, server_random, &mut out) else {
        return;
    };
    let proof = tokio::time::timeout_at(deadline, async {
        stream.write_all(&out).await?;
        let mut proof = [0u8; MAC_LEN];
        stream.read_exact(&mut proof).await?;
        Ok::<_, std::io::Error>(proof)
    })
    .await;
    let proof = match proof {
        Ok(Ok(proof)) => proof,
        Ok(Err(_)) => return shared.metrics.handshake_failed("io"),
        Err(_) => return shared.metrics.handshake_failed("timeout"),
    };
    let handshake = Handshake {
        shared,
        stream,
        source,
        permit,
    };
    match awaiting.receive_proof(proof) {
        server::ProofReceived::Open(open) => handshake.open(open).await,
        server::ProofReceived::Attach(attach) => handshake.attach(attach).await,
        server::ProofReceived::Resume(resume) => handshake.resume(resume).await,
        server::ProofReceived::Hold(hold) => handshake.hold(hold).await,
    }
}

/// A new connection id of a session, its `Accept` ready to send.
struct NewConnection {
    session: Arc<Session>,
    established: server::Established,
    /// Where the connection's driver receives the resumes of its id.
    resumes: tokio::sync::mpsc::Receiver<ResumeRequest>,
    /// The encoded `Accept`.
    accept: Vec<u8>,
}

/// The client closed its connection before its `Accept` was written.
struct ClientGone;

/// A connection whose proof arrived.
struct Handshake {
    shared: Arc<Shared>,
    stream: TunnelStream,
    source: IpAddr,
    permit: ConnectionPermit,
}

impl Handshake {
    /// `Open`: redeem at the broker, verify locally, create the session, accept.
    async fn open(self, open: server::OpenProof) {
        let shared = Arc::clone(&self.shared);
        let pending = match shared.limits.admit_open(&self.permit) {
            Ok(permit) => permit,
            Err(refusal) => {
                limited(&shared, refusal);
                return self.refuse(ErrorCode::Busy, "busy").await;
            }
        };
        // Room under max_sessions is reserved before the broker call, so racing Opens
        // cannot exceed it (docs/protocol.md §8.15).
        let Some(slot) = SessionTable::reserve(&shared.sessions, shared.config.limits.max_sessions)
        else {
            limited_label(&shared, "sessions");
            return self.refuse(ErrorCode::Busy, "busy").await;
        };
        let proof = StartProof {
            client_random: *open.client_random(),
            server_random: *open.server_random(),
            proof: *open.proof(),
        };
        let started = Instant::now();
        let mut stream = self.stream;
        // The client sends nothing between its proof and the Accept: an end of stream or
        // any byte now means it is gone, and no session may come of this Open (§8.7.2).
        let mut probe = [0u8; 1];
        let (answer, mut gone) = {
            let call = tokio::time::timeout(
                shared.config.timeouts.broker_call(),
                shared.broker.start(open.ticket(), self.source, &proof),
            );
            tokio::pin!(call);
            tokio::select! {
                answer = &mut call => (answer, false),
                _ = stream.read(&mut probe) => (call.await, true),
            }
        };
        let answer =
            answer.unwrap_or_else(|_| Err(BrokerError::Unavailable("no answer in time".into())));
        drop(pending);
        if !gone {
            // Once more right before the Accept: a FIN that came with the broker's answer.
            let probed = tokio::time::timeout(std::time::Duration::ZERO, stream.read(&mut probe));
            gone = probed.await.is_ok();
        }
        let mut this = Handshake { stream, ..self };
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(BrokerError::Refused) => "refused",
            Err(BrokerError::BadAnswer(_)) => "bad_answer",
            Err(_) => "unavailable",
        };
        shared
            .metrics
            .broker_seconds
            .get_or_create(&CallLabels {
                call: "start",
                outcome,
            })
            .observe(started.elapsed().as_secs_f64());
        let redeemed = match answer {
            Ok(redeemed) => redeemed,
            Err(BrokerError::Refused) => {
                return this.refuse(ErrorCode::AccessDenied, "access_denied").await;
            }
            Err(BrokerError::BadAnswer(reason)) => {
                tracing::error!(ticket = %open.ticket(), %reason, "the broker's start answer is invalid; the ticket may be consumed");
                return this.refuse(ErrorCode::Internal, "bad_broker_answer").await;
            }
            Err(error) => {
                tracing::warn!(ticket = %open.ticket(), %error, "broker start failed");
                return this
                    .refuse(ErrorCode::BrokerUnavailable, "broker_unavailable")
                    .await;
            }
        };
        if gone {
            // Redeemed for a client that is gone: no session, and the broker hears the end
            // at once (docs/protocol.md §8.7.2).
            shared.metrics.handshake_failed("client_gone");
            tracing::info!(notify = %redeemed.notify, source = %this.source, "the launcher left before its Accept; no session");
            crate::session::report_stop(&shared.env, &redeemed.notify, 0, 0).await;
            return;
        }
        let session_id = match shared.config.cluster.node() {
            Some(node) => portcullis_proto::SessionId::generate_on(node),
            None => portcullis_proto::SessionId::generate(),
        };
        let session_id = match session_id {
            Ok(id) => id,
            Err(_) => return this.refuse(ErrorCode::Internal, "random").await,
        };
        let mut accept = Vec::new();
        let opened = match open.complete(&redeemed.secret, session_id, ConnectionId(1), &mut accept)
        {
            Ok(opened) => opened,
            Err(_) => {
                // The broker accepted the proof but it does not verify with the secret it
                // sent: the ticket is consumed, so report an empty session.
                tracing::error!(notify = %redeemed.notify, "the proof does not verify with the broker's secret");
                crate::session::report_stop(&shared.env, &redeemed.notify, 0, 0).await;
                return this.refuse(ErrorCode::AccessDenied, "access_denied").await;
            }
        };
        let session = SessionTable::open(
            &shared.sessions,
            slot,
            session_id,
            opened.session_key,
            redeemed.notify,
            redeemed.remotes,
            Arc::clone(&shared.env),
        );
        let reserved = session.reserve_connection(shared.config.limits.max_connections_per_session);
        // A fresh session reserves id 1 first, the id its Accept states.
        let Ok((_, resumes)) = reserved else {
            session.end(EndReason::ClientGone);
            return;
        };
        tracing::info!(session = %session.id(), source = %this.source, "session opened");
        let new = NewConnection {
            session,
            established: opened.connection,
            resumes,
            accept,
        };
        if this.send_accept(&new, Command::Open).await.is_err() {
            // The client left before its first Accept: no one holds the new session's key.
            return new.session.end(EndReason::ClientGone);
        }
        this.relay(new).await;
    }

    /// `Attach`: verify with the session key, then reserve a connection id.
    async fn attach(mut self, attach: server::AttachProof) {
        let shared = Arc::clone(&self.shared);
        let Some(session) = shared.sessions.get(attach.session_id()) else {
            return self
                .refuse(ErrorCode::SessionUnknown, "session_unknown")
                .await;
        };
        let verified = match attach.verify(session.key()) {
            Ok(verified) => verified,
            Err(_) => return self.refuse(ErrorCode::AccessDenied, "access_denied").await,
        };
        let (id, resumes) =
            match session.reserve_connection(shared.config.limits.max_connections_per_session) {
                Ok(reserved) => reserved,
                Err(code) => return self.refuse(code, code_label(code)).await,
            };
        let mut accept = Vec::new();
        let established = match verified.accept(session.key(), id, &mut accept) {
            Ok(established) => established,
            Err(_) => {
                session.release_connection(id);
                return self.refuse(ErrorCode::Internal, "accept").await;
            }
        };
        let new = NewConnection {
            session,
            established,
            resumes,
            accept,
        };
        if self.send_accept(&new, Command::Attach).await.is_ok() {
            self.relay(new).await;
        }
    }

    /// `Resume`: verify with the session key, then hand the connection to its driver.
    async fn resume(self, resume: server::ResumeProof) {
        let shared = Arc::clone(&self.shared);
        let Some(session) = shared.sessions.get(resume.session_id()) else {
            return self
                .refuse(ErrorCode::SessionUnknown, "session_unknown")
                .await;
        };
        let verified = match resume.verify(session.key()) {
            Ok(verified) => verified,
            Err(_) => return self.refuse(ErrorCode::AccessDenied, "access_denied").await,
        };
        let Some(driver) = session.resume_sender(verified.connection_id()) else {
            return self
                .refuse(ErrorCode::ResumeImpossible, "resume_impossible")
                .await;
        };
        let request = ResumeRequest {
            verified,
            stream: self.stream,
            permit: self.permit,
        };
        if let Err(returned) = driver.send(request).await {
            // The driver ended meanwhile.
            let request = returned.0;
            let mut stream = request.stream;
            let mut out = Vec::new();
            server::refuse(ErrorCode::ResumeImpossible, &mut out);
            let _ = stream.write_all(&out).await;
            shared.metrics.handshake_failed("resume_impossible");
        }
    }

    /// `Hold`: verify with the session key, replace the session's hold, accept; dials
    /// nothing (docs/protocol.md §8.7.7).
    async fn hold(mut self, hold: server::HoldProof) {
        let shared = Arc::clone(&self.shared);
        let Some(session) = shared.sessions.get(hold.session_id()) else {
            return self
                .refuse(ErrorCode::SessionUnknown, "session_unknown")
                .await;
        };
        let verified = match hold.verify(session.key()) {
            Ok(verified) => verified,
            Err(_) => return self.refuse(ErrorCode::AccessDenied, "access_denied").await,
        };
        let Some(claim) = session.claim_hold() else {
            return self
                .refuse(ErrorCode::SessionUnknown, "session_unknown")
                .await;
        };
        let mut out = Vec::new();
        let established = match verified.accept(session.key(), &mut out) {
            Ok(established) => established,
            Err(_) => {
                session.release_hold(claim.generation);
                return self.refuse(ErrorCode::Internal, "accept").await;
            }
        };
        if self.stream.write_all(&out).await.is_err() {
            session.release_hold(claim.generation);
            shared.metrics.handshake_failed("client_gone");
            return;
        }
        shared.metrics.handshake_completed(Command::Hold);
        let link = HoldLink::server(
            established.sealer,
            established.opener,
            tokio::time::Instant::now().into_std(),
        );
        tracing::debug!(session = %session.id(), "session held");
        let tracker = session.drivers().clone();
        tracker.spawn(crate::hold::serve(
            session,
            self.stream,
            self.permit,
            link,
            claim,
            shared.metrics.holds.clone(),
        ));
    }

    /// Sends the `Accept` of a new connection id; `Err` when the client is gone (the id is
    /// released).
    async fn send_accept(
        &mut self,
        new: &NewConnection,
        command: Command,
    ) -> Result<(), ClientGone> {
        if self.stream.write_all(&new.accept).await.is_err() {
            new.session
                .release_connection(new.established.connection_id);
            self.shared.metrics.handshake_failed("client_gone");
            return Err(ClientGone);
        }
        self.shared.metrics.handshake_completed(command);
        Ok(())
    }

    /// Connects the target of a new connection whose `Accept` was sent and starts its
    /// driver.
    async fn relay(mut self, new: NewConnection) {
        let shared = Arc::clone(&self.shared);
        let NewConnection {
            session,
            established,
            resumes,
            ..
        } = new;
        let id = established.connection_id;
        let mut connection =
            Connection::new(id, &shared.connection_config(session.window_budget()));
        if let Err(error) = connection.attach_link(established.sealer, established.opener, 0) {
            tracing::error!(session = %session.id(), %error, "cannot start the connection's record layer");
            session.release_connection(id);
            return;
        }
        let target =
            driver::connect_target(session.remotes(), shared.config.timeouts.target_connect())
                .await;
        let target = match target {
            Ok(target) => target,
            Err(reason) => {
                tracing::warn!(session = %session.id(), connection = id.0, %reason, "target unreachable");
                let mut out = Vec::new();
                let message = format!("target unreachable: {reason}");
                if connection
                    .send_error(ErrorCode::TargetUnreachable, &message, &mut out)
                    .is_ok()
                {
                    let _ = self.stream.write_all(&out).await;
                    let _ = self.stream.shutdown().await;
                }
                session.release_connection(id);
                return;
            }
        };
        let link = Link {
            stream: self.stream,
            permit: self.permit,
        };
        tracing::debug!(session = %session.id(), connection = id.0, "connection relaying");
        let tracker = session.drivers().clone();
        tracker.spawn(driver::drive(
            shared, session, connection, target, link, resumes,
        ));
    }

    async fn refuse(self, code: ErrorCode, reason: &'static str) {
        refuse(&self.shared, self.stream, Failure::Refuse(code, reason)).await;
    }
}

/// Sends `Refuse` (when the failure has a code) and closes.
async fn refuse(shared: &Shared, mut stream: TunnelStream, failure: Failure) {
    match failure {
        Failure::Close(reason) => shared.metrics.handshake_failed(reason),
        Failure::Refuse(code, reason) => {
            shared.metrics.handshake_failed(reason);
            let mut out = Vec::new();
            server::refuse(code, &mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Reads a client hello: the 6-byte prefix, then the rest of its fixed size.
async fn read_hello(stream: &mut TunnelStream) -> Result<ClientHello, Failure> {
    let mut buf = [0u8; ClientHello::MAX_LEN];
    let mut len = 0;
    loop {
        match ClientHello::decode(&buf[..len]) {
            Ok(Some((hello, used))) if used == len => return Ok(hello),
            Ok(Some(_)) => return Err(Failure::Refuse(ErrorCode::Malformed, "malformed")),
            Ok(None) => {}
            Err(error) => {
                let code = ErrorCode::for_error(&error);
                let reason = if code == ErrorCode::UnsupportedVersion {
                    "unsupported_version"
                } else {
                    "malformed"
                };
                return Err(Failure::Refuse(code, reason));
            }
        }
        let want = ClientHello::wanted_len(&buf[..len]);
        if want <= len || want > buf.len() {
            return Err(Failure::Refuse(ErrorCode::Malformed, "malformed"));
        }
        let read = stream.read(&mut buf[len..want]).await?;
        if read == 0 {
            return Err(Failure::Close("eof"));
        }
        len += read;
    }
}

/// Reads a PROXY v2 header: for PROXY, the launcher's and the destination's addresses and
/// the forwarding member's node id, if any; `None` for LOCAL (the connection's own peer
/// address stands).
async fn read_proxy_header(
    tcp: &mut TcpStream,
) -> Result<Option<(crate::forward::Ends, Option<u16>)>, Failure> {
    let mut buf = vec![0u8; proxy_v2::FIXED_LEN];
    tcp.read_exact(&mut buf).await?;
    // Check signature and version before trusting the length.
    if proxy_v2::decode(&buf).is_err() {
        return Err(Failure::Close("proxy_header"));
    }
    let whole = proxy_v2::header_len(&buf)
        .filter(|whole| *whole <= proxy_v2::MAX_HEADER_LEN)
        .ok_or(Failure::Close("proxy_header"))?;
    buf.resize(whole, 0);
    tcp.read_exact(&mut buf[proxy_v2::FIXED_LEN..]).await?;
    match proxy_v2::decode(&buf) {
        Ok(Some((
            ProxyHeader::Proxy {
                source,
                destination,
                forwarded_by,
            },
            used,
        ))) if used == buf.len() => {
            let ends = crate::forward::Ends {
                client: source,
                destination,
            };
            Ok(Some((ends, forwarded_by)))
        }
        Ok(Some((ProxyHeader::Local, used))) if used == buf.len() => Ok(None),
        _ => Err(Failure::Close("proxy_header")),
    }
}

fn label(reason: &'static str) -> ReasonLabels {
    ReasonLabels { reason }
}

fn limited(shared: &Shared, refusal: Refusal) {
    limited_label(shared, refusal.as_str());
}

fn limited_label(shared: &Shared, reason: &'static str) {
    shared.metrics.limited.get_or_create(&label(reason)).inc();
}

fn code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TooManyConnections => "too_many_connections",
        ErrorCode::SessionUnknown => "session_unknown",
        _ => "refused",
    }
}
