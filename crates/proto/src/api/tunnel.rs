//! The tunnel-server API: `POST /uds/rest/tunnel/ticket`, authenticated with
//! `Authorization: Bearer sk-<token>`.

use core::fmt;
use core::net::IpAddr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kem::EncapsulationKey;
use crate::payload::json_error;
use crate::{Error, SharedSecret, TicketId, b64, hex};

mod control;

pub use control::{
    CONTROL_PATH, ControlAnswer, ControlRequest, EndCommand, MAX_CONTROL_BODY,
    MAX_CONTROL_SESSIONS, MAX_CONTROL_WAIT_MS, SessionRef, SessionReport,
};

/// Path of the tunnel-server API.
pub const TUNNEL_TICKET_PATH: &str = "/uds/rest/tunnel/ticket";

/// The body of every refusal (HTTP 403).
pub const ACCESS_DENIED: &str = "Access denied";

/// What a tunnel server asks of the broker.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Redeem a tunnel ticket: the answer says where to connect.
    Start,
    /// Report the end of a session under its notify ticket.
    Stop,
}

/// The body of `POST /uds/rest/tunnel/ticket`, as in JSON.
///
/// OpenUDS 5 tunnel servers send `sent`/`recv` as `null` on `start` and `ip` as `""` and
/// `kem_kyber_key` as `null` on `stop`; all of that is accepted. The three proof fields
/// are the Portcullis extension for proof-carrying starts (tunnel protocol v1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRequest {
    /// The tunnel ticket (`start`) or the notify ticket (`stop`).
    pub ticket: String,
    /// `"start"` or `"stop"`.
    pub command: Command,
    /// The launcher's address as the tunnel server sees it (`start`).
    #[serde(default)]
    pub ip: String,
    /// Base64 of the tunnel server's ML-KEM-768 key, the recipient of the answer (`start`).
    #[serde(default)]
    pub kem_kyber_key: Option<String>,
    /// Bytes sent to the launcher (`stop`).
    #[serde(default)]
    pub sent: Option<u64>,
    /// Bytes received from the launcher (`stop`).
    #[serde(default)]
    pub recv: Option<u64>,
    /// 64 lowercase hex digits: the launcher's 32-byte handshake random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_random: Option<String>,
    /// 64 lowercase hex digits: the tunnel server's 32-byte handshake random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_random: Option<String>,
    /// 64 lowercase hex digits: the launcher's 32-byte proof of the shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// The randoms and proof of a tunnel protocol v1 handshake, which the broker checks before
/// it redeems the ticket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StartProof {
    /// The launcher's random.
    pub client_random: [u8; 32],
    /// The tunnel server's random.
    pub server_random: [u8; 32],
    /// HMAC-SHA256 proof of the shared secret over the handshake transcript.
    pub proof: [u8; 32],
}

/// A checked `start` request.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// The tunnel ticket to redeem.
    pub ticket: TicketId,
    /// The launcher's address.
    pub ip: IpAddr,
    /// The tunnel server's key: the recipient of the answer's envelope.
    pub tunnel_key: EncapsulationKey,
    /// The handshake proof; `None` from legacy (OpenUDS 5) tunnel servers.
    pub proof: Option<StartProof>,
}

/// A checked `stop` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopRequest {
    /// The notify ticket from the `start` answer.
    pub notify: TicketId,
    /// Bytes sent to the launcher.
    pub sent: u64,
    /// Bytes received from the launcher.
    pub recv: u64,
}

/// A checked tunnel-server request.
#[derive(Clone, Debug)]
pub enum TunnelCommand {
    /// Redeem a tunnel ticket.
    Start(StartRequest),
    /// Report the end of a session.
    Stop(StopRequest),
}

impl TunnelRequest {
    /// Tunnel server side: a `start` request, with a proof when the launcher made one.
    pub fn start(
        ticket: &TicketId,
        ip: IpAddr,
        tunnel_key: &EncapsulationKey,
        proof: Option<&StartProof>,
    ) -> Self {
        Self {
            ticket: ticket.expose().to_owned(),
            command: Command::Start,
            ip: ip.to_string(),
            kem_kyber_key: Some(b64::encode(tunnel_key.as_bytes())),
            sent: None,
            recv: None,
            client_random: proof.map(|p| hex::encode(&p.client_random)),
            server_random: proof.map(|p| hex::encode(&p.server_random)),
            proof: proof.map(|p| hex::encode(&p.proof)),
        }
    }

    /// Tunnel server side: a `stop` request with the session's byte counts.
    pub fn stop(notify: &TicketId, sent: u64, recv: u64) -> Self {
        Self {
            ticket: notify.expose().to_owned(),
            command: Command::Stop,
            ip: String::new(),
            kem_kyber_key: None,
            sent: Some(sent),
            recv: Some(recv),
            client_random: None,
            server_random: None,
            proof: None,
        }
    }

    /// Parses a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|error| json_error("tunnel request", &error))
    }

    /// Broker side: checks the fields the command needs and returns them typed.
    ///
    /// `start` needs a ticket id, an IP address and an ML-KEM-768 key; the proof fields
    /// must be all present (each 64 lowercase hex digits) or all absent. `stop` needs a
    /// ticket id and both byte counts. Any error must become the 403 refusal.
    pub fn check(&self) -> Result<TunnelCommand, Error> {
        let ticket = TicketId::parse(&self.ticket)?;
        match self.command {
            Command::Start => {
                let ip = self.ip.parse().map_err(|_| Error::Invalid {
                    what: "ip",
                    reason: "not an IPv4 or IPv6 address",
                })?;
                let key_text = self.kem_kyber_key.as_deref().unwrap_or_default();
                if key_text.is_empty() {
                    return Err(Error::Invalid {
                        what: "kem_kyber_key",
                        reason: "missing: a start needs the tunnel server's ML-KEM-768 key",
                    });
                }
                let tunnel_key =
                    EncapsulationKey::from_bytes(&b64::decode(key_text, "kem_kyber_key")?)?;
                let proof = match (&self.client_random, &self.server_random, &self.proof) {
                    (None, None, None) => None,
                    (Some(client), Some(server), Some(proof)) => Some(StartProof {
                        client_random: lower_hex_32(client, "client_random")?,
                        server_random: lower_hex_32(server, "server_random")?,
                        proof: lower_hex_32(proof, "proof")?,
                    }),
                    _ => {
                        return Err(Error::Invalid {
                            what: "proof",
                            reason: "client_random, server_random and proof go together",
                        });
                    }
                };
                Ok(TunnelCommand::Start(StartRequest {
                    ticket,
                    ip,
                    tunnel_key,
                    proof,
                }))
            }
            Command::Stop => match (self.sent, self.recv) {
                (Some(sent), Some(recv)) => Ok(TunnelCommand::Stop(StopRequest {
                    notify: ticket,
                    sent,
                    recv,
                })),
                _ => Err(Error::Invalid {
                    what: "stop request",
                    reason: "sent and recv are required",
                }),
            },
        }
    }
}

impl fmt::Debug for TunnelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ticket: String = self.ticket.chars().take(TicketId::SHOWN).collect();
        f.debug_struct("TunnelRequest")
            .field("ticket", &format_args!("{ticket}…"))
            .field("command", &self.command)
            .field("ip", &self.ip)
            .field(
                "kem_kyber_key",
                &self.kem_kyber_key.as_ref().map(|key| key.len()),
            )
            .field("sent", &self.sent)
            .field("recv", &self.recv)
            .field("proof", &self.proof.is_some())
            .finish()
    }
}

fn lower_hex_32(text: &str, what: &'static str) -> Result<[u8; 32], Error> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::Invalid {
            what,
            reason: "must be lowercase hex",
        });
    }
    hex::decode_array(text, what)
}

/// One target of a tunneled service.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Remote {
    /// Host name or address of the target.
    pub host: String,
    /// TCP port of the target.
    pub port: u16,
}

/// The plaintext of the `start` answer's envelope.
///
/// The envelope (`{"algorithm", "ciphertext", "data"}`, not wrapped in `result`) is sealed
/// to the tunnel server's key with the tunnel ticket as HKDF salt. The shared secret is
/// the tunnel ticket's, made during the launcher's ticket exchange; it has no `Debug`.
#[derive(PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TunnelStart {
    /// Where to connect, in order of preference; at least one.
    pub remotes: Vec<Remote>,
    /// The ticket for the `stop` report.
    #[serde(with = "ticket_text")]
    pub notify: TicketId,
    /// The tunnel session's shared secret, as 64 lowercase hex digits on the wire.
    #[serde(with = "secret_hex")]
    pub shared_secret: SharedSecret,
}

impl TunnelStart {
    /// Serializes the plaintext into a buffer zeroized on drop.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        serde_json::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|error| json_error("tunnel start answer", &error))
    }

    /// Parses the decrypted plaintext; refuses an empty `remotes` list, an empty host or
    /// port 0. Unknown fields (OpenUDS 5 adds `extra` to remotes) are ignored.
    pub fn from_json(plaintext: &[u8]) -> Result<Self, Error> {
        let start: Self = serde_json::from_slice(plaintext)
            .map_err(|error| json_error("tunnel start answer", &error))?;
        if start.remotes.is_empty() {
            return Err(Error::Invalid {
                what: "remotes",
                reason: "empty",
            });
        }
        if start
            .remotes
            .iter()
            .any(|remote| remote.host.is_empty() || remote.port == 0)
        {
            return Err(Error::Invalid {
                what: "remotes",
                reason: "empty host or port 0",
            });
        }
        Ok(start)
    }
}

/// The answer to `stop`: `{}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct StopAnswer {}

/// The body of a refusal, sent with HTTP 403: `{"error": "Access denied"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TunnelRefusal {
    /// Always [`ACCESS_DENIED`]: a refusal never says why.
    pub error: String,
}

impl TunnelRefusal {
    /// The one refusal.
    pub fn access_denied() -> Self {
        Self {
            error: ACCESS_DENIED.to_owned(),
        }
    }
}

/// Serde for a [`TicketId`] as its full text.
mod ticket_text {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    use crate::TicketId;

    pub(super) fn serialize<S: Serializer>(ticket: &TicketId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ticket.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TicketId, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = TicketId;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a 48-character ticket id")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TicketId, E> {
                TicketId::parse(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

/// Serde for a [`SharedSecret`] as 64 lowercase hex digits, without an owned copy.
mod secret_hex {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    use crate::SharedSecret;

    pub(super) fn serialize<S: Serializer>(secret: &SharedSecret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&secret.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SharedSecret, D::Error> {
        struct Hex;
        impl Visitor<'_> for Hex {
            type Value = SharedSecret;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SharedSecret, E> {
                SharedSecret::from_hex(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

#[cfg(test)]
mod tests;
