//! The control channel (docs/protocol.md §7.8, a Portcullis extension): a long poll,
//! `POST /uds/rest/tunnel/control`, on which a tunnel server reports the bytes its live
//! sessions relayed so far and the broker answers the sessions to end.
//!
//! Sessions are named by their [`SessionRef`], a hash of the notify ticket: the broker keys
//! its record of a session by it and never keeps the ticket itself.

use core::fmt;
use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::payload::json_error;
use crate::{Error, TicketId, hex};

/// Path of the control channel.
pub const CONTROL_PATH: &str = "/uds/rest/tunnel/control";
/// The longest a tunnel server may ask the broker to hold a control request, in
/// milliseconds: the broker has every live session's bytes at least this often.
pub const MAX_CONTROL_WAIT_MS: u64 = 10_000;
/// The most sessions one control request reports.
pub const MAX_CONTROL_SESSIONS: usize = 8192;
/// The largest control request body, in bytes (8192 reports of at most 135 bytes fit).
pub const MAX_CONTROL_BODY: usize = 2 * 1024 * 1024;

/// Domain separation of a [`SessionRef`] (and of the broker's ticket hashes).
const REFERENCE_LABEL: &[u8] = b"portcullis ticket id v1";

/// The name of a session on the control channel:
/// `SHA-256("portcullis ticket id v1" || 0x00 || notify ticket)`. Not a credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef([u8; 32]);

impl SessionRef {
    /// The reference of the session whose notify ticket is `notify`.
    pub fn of(notify: &TicketId) -> Self {
        let mut input = Vec::with_capacity(REFERENCE_LABEL.len() + 1 + TicketId::LEN);
        input.extend_from_slice(REFERENCE_LABEL);
        input.push(0);
        input.extend_from_slice(notify.expose().as_bytes());
        Self(crate::kdf::sha256(&input))
    }

    /// Wraps 32 bytes that already are a reference (a broker's stored hash).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::Invalid {
                what: "session",
                reason: "must be 64 lowercase hex digits",
            });
        }
        hex::decode_array(text, "session").map(Self)
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionRef({})", self.to_hex())
    }
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for SessionRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SessionRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// One live session's bytes so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SessionReport {
    /// The session.
    pub session: SessionRef,
    /// Bytes sent to the launcher so far.
    pub sent: u64,
    /// Bytes received from the launcher so far.
    pub recv: u64,
}

/// The body of a control request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ControlRequest {
    /// How long the broker may hold the request without a command, in milliseconds.
    pub wait_ms: u64,
    /// Every live session of the tunnel server, each once.
    pub sessions: Vec<SessionReport>,
}

impl ControlRequest {
    /// Parses a body (at most [`MAX_CONTROL_BODY`] bytes, which the caller enforces).
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|error| json_error("control request", &error))
    }

    /// Broker side: `wait_ms` within [`MAX_CONTROL_WAIT_MS`], at most
    /// [`MAX_CONTROL_SESSIONS`] sessions, none listed twice. Any error must become the 403
    /// refusal.
    pub fn check(&self) -> Result<(), Error> {
        if self.wait_ms > MAX_CONTROL_WAIT_MS {
            return Err(Error::Invalid {
                what: "wait_ms",
                reason: "at most 10000",
            });
        }
        if self.sessions.len() > MAX_CONTROL_SESSIONS {
            return Err(Error::Invalid {
                what: "sessions",
                reason: "more than 8192 sessions",
            });
        }
        let mut seen = HashSet::with_capacity(self.sessions.len());
        if !self
            .sessions
            .iter()
            .all(|report| seen.insert(report.session))
        {
            return Err(Error::Invalid {
                what: "sessions",
                reason: "a session is listed twice",
            });
        }
        Ok(())
    }
}

/// One session the broker asks the tunnel server to end.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EndCommand {
    /// The session.
    pub session: SessionRef,
    /// The `SessionEnded` reason to tell the launcher ([`EndReason`](crate::tunnel::EndReason)
    /// as a number; Portcullis sends 4).
    pub reason: u16,
}

/// The answer to a control request.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ControlAnswer {
    /// The sessions to end now (possibly none).
    pub end: Vec<EndCommand>,
}

impl ControlAnswer {
    /// Parses an answer; unknown members are ignored.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|error| json_error("control answer", &error))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_labelled_hash_of_the_notify_ticket() {
        let notify = TicketId::parse(&"A".repeat(48)).unwrap();
        assert_eq!(
            SessionRef::of(&notify).to_hex(),
            "acc8c2a866960ab77d7585edbb23a66be30ef9b6e3f23f95af52f837aece1d56"
        );
        let text = SessionRef::of(&notify).to_hex();
        assert_eq!(
            SessionRef::from_hex(&text).unwrap(),
            SessionRef::of(&notify)
        );
        assert!(SessionRef::from_hex(&text.to_uppercase()).is_err());
        assert!(SessionRef::from_hex(&text[..62]).is_err());
    }

    #[test]
    fn control_requests_are_checked() {
        let one = r#"{"wait_ms": 5000, "sessions": [{"session": "acc8c2a866960ab77d7585edbb23a66be30ef9b6e3f23f95af52f837aece1d56", "sent": 18446744073709551615, "recv": 0}], "later": 1}"#;
        let request = ControlRequest::from_json(one.as_bytes()).unwrap();
        request.check().unwrap();
        assert_eq!(request.sessions[0].sent, u64::MAX);

        let twice = one.replace(
            "\"recv\": 0}]",
            "\"recv\": 0}, {\"session\": \"acc8c2a866960ab77d7585edbb23a66be30ef9b6e3f23f95af52f837aece1d56\", \"sent\": 1, \"recv\": 1}]",
        );
        let error = ControlRequest::from_json(twice.as_bytes())
            .unwrap()
            .check()
            .unwrap_err();
        assert!(error.to_string().contains("twice"), "{error}");

        let slow = one.replace("5000", "10001");
        assert!(
            ControlRequest::from_json(slow.as_bytes())
                .unwrap()
                .check()
                .is_err()
        );
        for bad in [
            r#"{"wait_ms": -1, "sessions": []}"#,
            r#"{"wait_ms": 1, "sessions": [{"session": "ACC8", "sent": 1, "recv": 1}]}"#,
            r#"{"wait_ms": 1, "sessions": [{"session": "acc8c2a866960ab77d7585edbb23a66be30ef9b6e3f23f95af52f837aece1d56", "sent": 1.5, "recv": 1}]}"#,
            r#"{"sessions": []}"#,
            "[]",
        ] {
            assert!(ControlRequest::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_largest_request_fits_the_body_limit() {
        let report = SessionReport {
            session: SessionRef::from_bytes([0xff; 32]),
            sent: u64::MAX,
            recv: u64::MAX,
        };
        let request = ControlRequest {
            wait_ms: MAX_CONTROL_WAIT_MS,
            sessions: vec![report; MAX_CONTROL_SESSIONS],
        };
        assert!(serde_json::to_vec(&request).unwrap().len() <= MAX_CONTROL_BODY);
    }

    #[test]
    fn answers_parse_with_unknown_members() {
        let answer = ControlAnswer::from_json(
            br#"{"end": [{"session": "acc8c2a866960ab77d7585edbb23a66be30ef9b6e3f23f95af52f837aece1d56", "reason": 4, "why": "x"}], "next": 2}"#,
        )
        .unwrap();
        assert_eq!(answer.end[0].reason, 4);
        assert_eq!(
            serde_json::to_string(&ControlAnswer::default()).unwrap(),
            r#"{"end":[]}"#
        );
    }
}
