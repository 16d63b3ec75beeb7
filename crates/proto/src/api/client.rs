//! The client API, spoken by launchers: `GET /uds/rest/client` and
//! `POST /uds/rest/client/<ticket>/ticket`.

use core::fmt;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::version::{PROTOCOL_VERSION, ProtocolVersion};
use crate::kem::EncapsulationKey;
use crate::openuds::Envelope;
use crate::payload::json_error;
use crate::ssh::Ed25519PublicKey;
use crate::{Error, Scrambler, TicketId, b64};

/// Path of the version query (`GET`).
pub const CLIENT_PATH: &str = "/uds/rest/client";

/// The path of the ticket exchange (`POST`) for `ticket`. It holds the whole ticket:
/// never log it.
pub fn ticket_exchange_path(ticket: &TicketId) -> String {
    format!("{CLIENT_PATH}/{}/ticket", ticket.expose())
}

/// Client capabilities a launcher may announce in [`ClientInfo::capabilities`].
pub mod capability {
    /// The launcher verifies the payload signature (docs/protocol.md §9, difference 5).
    pub const PAYLOAD_SIGNATURE: &str = "payload-signature";
    /// The launcher speaks tunnel protocol v1.
    pub const TUNNEL_V1: &str = "tunnel-v1";
    /// The launcher sends `client.ssh_public_key` and uses the certificate the broker signs
    /// for it (docs/protocol.md §6.8.4).
    pub const SSH_CERTIFICATE: &str = "ssh-certificate";
}

/// The `result` of `GET /uds/rest/client`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ClientVersionInfo {
    /// The newest launcher version the broker offers for download.
    pub available_version: String,
    /// The oldest protocol version the broker accepts.
    pub required_version: String,
    /// Where users download the launcher.
    pub client_link: String,
}

impl ClientVersionInfo {
    /// `available_version`, parsed.
    pub fn available(&self) -> Result<ProtocolVersion, Error> {
        ProtocolVersion::parse(&self.available_version)
    }

    /// `required_version`, parsed.
    pub fn required(&self) -> Result<ProtocolVersion, Error> {
        ProtocolVersion::parse(&self.required_version)
    }
}

/// Who the launcher is: the Portcullis extension of the ticket request.
///
/// A request without it comes from an OpenUDS 5 launcher.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The launcher's name, such as `"portcullis-launcher"`.
    pub name: String,
    /// The launcher's own version (the request's `version` stays the protocol version).
    pub version: String,
    /// The operating system, such as `"linux"`, `"windows"` or `"macos"`.
    pub os: String,
    /// What the launcher supports; see [`capability`]. Unknown entries are ignored.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// With [`capability::SSH_CERTIFICATE`]: the OpenSSH line of the Ed25519 public key the
    /// launcher generated for this request (docs/protocol.md §6.8.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
}

/// Limits on the free-text fields of a ticket request.
const MAX_HOSTNAME_LEN: usize = 255;
const MAX_CLIENT_FIELD_LEN: usize = 64;
const MAX_CAPABILITIES: usize = 32;

impl ClientInfo {
    /// Whether the launcher announced `capability`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|entry| entry == capability)
    }

    fn check(&self) -> Result<(), Error> {
        let fields = [self.name.as_str(), self.version.as_str(), self.os.as_str()];
        if fields
            .into_iter()
            .chain(self.capabilities.iter().map(String::as_str))
            .any(|text| text.len() > MAX_CLIENT_FIELD_LEN || text.chars().any(char::is_control))
        {
            return Err(Error::Invalid {
                what: "client",
                reason: "fields must be at most 64 bytes without control characters",
            });
        }
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(Error::Invalid {
                what: "client",
                reason: "more than 32 capabilities",
            });
        }
        if let Some(line) = &self.ssh_public_key {
            Ed25519PublicKey::parse_openssh(line)?;
        }
        Ok(())
    }

    /// The SSH public key the launcher sent with the `ssh-certificate` capability; `None`
    /// without either. Checked by [`TicketRequest::check`].
    pub fn ssh_public_key(&self) -> Option<Ed25519PublicKey> {
        if !self.has_capability(capability::SSH_CERTIFICATE) {
            return None;
        }
        self.ssh_public_key
            .as_deref()
            .and_then(|line| Ed25519PublicKey::parse_openssh(line).ok())
    }
}

/// The body of `POST /uds/rest/client/<ticket>/ticket`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The scrambler of the launch URL.
    pub scrambler: String,
    /// Base64 of the launcher's 1184-byte ML-KEM-768 encapsulation key. Optional in the
    /// JSON only so that its absence gets a clear error from [`TicketRequest::check`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kem_kyber_key: Option<String>,
    /// The launcher machine's host name (free text, may be empty).
    pub hostname: String,
    /// The protocol version, `"5.0.0"`.
    pub version: String,
    /// Portcullis extension: who the launcher is. Absent for OpenUDS 5 launchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

impl TicketRequest {
    /// Launcher side: a request with the protocol version [`PROTOCOL_VERSION`].
    pub fn new(
        scrambler: &Scrambler,
        client_key: &EncapsulationKey,
        hostname: &str,
        client: Option<ClientInfo>,
    ) -> Self {
        Self {
            scrambler: scrambler.as_str().to_owned(),
            kem_kyber_key: Some(b64::encode(client_key.as_bytes())),
            hostname: hostname.to_owned(),
            version: PROTOCOL_VERSION.to_string(),
            client,
        }
    }

    /// Parses a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|error| json_error("ticket request", &error))
    }

    /// Broker side: checks every field and returns them typed.
    ///
    /// A missing or empty `kem_kyber_key` is refused: Portcullis never sends a payload in
    /// plaintext (docs/protocol.md §9, difference 6).
    pub fn check(&self) -> Result<CheckedTicketRequest, Error> {
        let scrambler = Scrambler::parse(&self.scrambler)?;
        let key_text = self.kem_kyber_key.as_deref().unwrap_or_default();
        if key_text.is_empty() {
            return Err(Error::Invalid {
                what: "kem_kyber_key",
                reason: "missing: an ML-KEM-768 key is required (there is no plaintext mode)",
            });
        }
        let client_key = EncapsulationKey::from_bytes(&b64::decode(key_text, "kem_kyber_key")?)?;
        if self.hostname.len() > MAX_HOSTNAME_LEN || self.hostname.chars().any(char::is_control) {
            return Err(Error::Invalid {
                what: "hostname",
                reason: "must be at most 255 bytes without control characters",
            });
        }
        let version = ProtocolVersion::parse(&self.version)?;
        if let Some(client) = &self.client {
            client.check()?;
        }
        Ok(CheckedTicketRequest {
            scrambler,
            client_key,
            hostname: self.hostname.clone(),
            version,
            client: self.client.clone(),
        })
    }
}

impl fmt::Debug for TicketRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketRequest")
            .field("scrambler", &self.scrambler)
            .field(
                "kem_kyber_key",
                &self.kem_kyber_key.as_ref().map(|key| key.len()),
            )
            .field("hostname", &self.hostname)
            .field("version", &self.version)
            .field("client", &self.client)
            .finish()
    }
}

/// A ticket request whose fields have been checked.
#[derive(Clone, Debug)]
pub struct CheckedTicketRequest {
    /// The scrambler.
    pub scrambler: Scrambler,
    /// The launcher's ML-KEM-768 key: the envelope's recipient.
    pub client_key: EncapsulationKey,
    /// The launcher machine's host name.
    pub hostname: String,
    /// The protocol version the launcher speaks.
    pub version: ProtocolVersion,
    /// Who the launcher is; `None` for an OpenUDS 5 launcher.
    pub client: Option<ClientInfo>,
}

impl CheckedTicketRequest {
    /// Whether this is an OpenUDS 5 launcher (no `client` object). It gets no payload
    /// signature and only direct services or tunneled services behind a legacy tunnel
    /// server; anything else is a non-retryable error.
    pub fn is_openuds5(&self) -> bool {
        self.client.is_none()
    }

    /// Whether the launcher announced `capability`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.has_capability(capability))
    }

    /// Whether the payload gets a payload signature.
    pub fn wants_payload_signature(&self) -> bool {
        self.has_capability(capability::PAYLOAD_SIGNATURE)
    }

    /// Whether the launcher can use a tunnel protocol v1 server.
    pub fn supports_tunnel_v1(&self) -> bool {
        self.has_capability(capability::TUNNEL_V1)
    }

    /// The launcher's SSH public key for a certificate, when it announced
    /// `ssh-certificate` and sent one.
    pub fn ssh_public_key(&self) -> Option<Ed25519PublicKey> {
        self.client.as_ref().and_then(ClientInfo::ssh_public_key)
    }
}

/// A percentage, 0 to 100.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    /// 0 %.
    pub const ZERO: Self = Self(0);

    /// Checks that `value` is at most 100.
    pub fn new(value: u8) -> Result<Self, Error> {
        if value > 100 {
            return Err(Error::Invalid {
                what: "percent",
                reason: "must be 0 to 100",
            });
        }
        Ok(Self(value))
    }

    /// `value`, capped at 100.
    pub fn saturating(value: u8) -> Self {
        Self(value.min(100))
    }

    /// The value.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Percent {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self, Error> {
        Self::new(value)
    }
}

impl From<Percent> for u8 {
    fn from(percent: Percent) -> u8 {
        percent.0
    }
}

/// The path of the broker-key request (Portcullis extension, docs/protocol.md §5.5).
pub const BROKER_KEY_PATH: &str = "/uds/rest/client/key";

/// The answer of `GET /uds/rest/client/key` (inside `result`): the broker's ML-DSA-65
/// public key, which launchers pin per broker host on first contact, after the user (or
/// `--trust-fingerprint`) confirmed its fingerprint out of band.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BrokerKey {
    /// `"MLDSA65"`.
    pub algorithm: String,
    /// Standard, padded base64 of the raw 1952-byte public key.
    pub public_key: String,
    /// Lowercase hex of SHA-256 over the raw public key.
    pub fingerprint: String,
}

impl BrokerKey {
    /// Describes `key`.
    pub fn new(key: &crate::payload::VerifyingKey) -> Self {
        Self {
            algorithm: crate::payload::SIGNATURE_ALGORITHM_MLDSA65.to_owned(),
            public_key: key.to_base64(),
            fingerprint: key.fingerprint(),
        }
    }

    /// The key, checked: the algorithm is ML-DSA-65, the key decodes, and the stated
    /// fingerprint is the key's own. The caller still compares the fingerprint with the
    /// one the user confirmed or pinned.
    pub fn verifying_key(&self) -> Result<crate::payload::VerifyingKey, Error> {
        if self.algorithm != crate::payload::SIGNATURE_ALGORITHM_MLDSA65 {
            return Err(Error::Unsupported {
                what: "broker key algorithm",
                value: self.algorithm.chars().take(32).collect(),
            });
        }
        let key = crate::payload::VerifyingKey::from_base64(&self.public_key)?;
        if !crate::constant_time_eq(
            key.fingerprint().as_bytes(),
            self.fingerprint.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(Error::Invalid {
                what: "broker key",
                reason: "the fingerprint is not the key's",
            });
        }
        Ok(key)
    }
}

/// The `error` object of a client-API answer (sent with HTTP 200).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A message for the user.
    pub message: String,
    /// Whether the launcher should retry the same request (the ticket stays valid).
    pub is_retryable: bool,
    /// Progress of the service's preparation, for retryable errors.
    pub percent: Percent,
}

/// The message of the retryable "service is being prepared" answer.
pub const PREPARING_SERVICE: &str = "Preparing service";

impl ErrorBody {
    /// A final error: not retryable, 0 %.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            is_retryable: false,
            percent: Percent::ZERO,
        }
    }

    /// The retryable [`PREPARING_SERVICE`] answer.
    pub fn preparing(percent: Percent) -> Self {
        Self {
            message: PREPARING_SERVICE.to_owned(),
            is_retryable: true,
            percent,
        }
    }
}

/// A client-API answer: `{"result": T}` or `{"error": {...}}`.
///
/// Parsing refuses a document with both keys or neither.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Answer<T> {
    /// Success.
    Result(T),
    /// Failure (still HTTP 200).
    Error(ErrorBody),
}

/// The answer of `POST /uds/rest/client/<ticket>/ticket`.
pub type TicketAnswer = Answer<Envelope>;
/// The answer of `GET /uds/rest/client`.
pub type VersionAnswer = Answer<ClientVersionInfo>;

impl<T> Answer<T> {
    /// The result, or the error body.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match self {
            Self::Result(result) => Ok(result),
            Self::Error(error) => Err(error),
        }
    }
}

impl<T: DeserializeOwned> Answer<T> {
    /// Parses an answer body.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|error| json_error("client API answer", &error))
    }
}

impl<T: Serialize> Answer<T> {
    /// Serializes the answer body.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|error| json_error("client API answer", &error))
    }
}

impl<T: Serialize> Serialize for Answer<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Self::Result(result) => map.serialize_entry("result", result)?,
            Self::Error(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct RawAnswer<T> {
    result: Option<T>,
    error: Option<ErrorBody>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Answer<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match RawAnswer::<T>::deserialize(deserializer)? {
            RawAnswer {
                result: Some(result),
                error: None,
            } => Ok(Self::Result(result)),
            RawAnswer {
                result: None,
                error: Some(error),
            } => Ok(Self::Error(error)),
            RawAnswer {
                result: Some(_),
                error: Some(_),
            } => Err(D::Error::custom("an answer has both `result` and `error`")),
            RawAnswer {
                result: None,
                error: None,
            } => Err(D::Error::custom(
                "an answer has neither `result` nor `error`",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
