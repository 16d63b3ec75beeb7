//! The `tunnel` member of a launch's params document (`docs/launcher-scripts.md` §6): where
//! the tunnel server is and the ticket that opens the tunnel.
//!
//! The broker writes it and the launcher reads it back with this one type, so the ticket a
//! script may open is compared as a [`TicketId`], never as loose JSON text.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::TicketId;

/// The `tunnel` member: where the tunnel server is and the ticket that opens the tunnel.
///
/// The target's address is not here: the tunnel server learns it from the broker when it
/// redeems the ticket. Neither is the shared secret: the launcher has it from its own
/// ticket exchange.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelParams {
    /// The tunnel server's host name or address.
    pub host: String,
    /// The tunnel server's TCP port.
    pub port: u16,
    /// The tunnel ticket: a secret (redacted by `Debug`).
    #[serde(serialize_with = "ticket_to_str", deserialize_with = "ticket_from_str")]
    pub ticket: TicketId,
    /// Milliseconds the local listener waits for its first connection.
    pub startup_time: u32,
    /// Whether the launcher verifies the tunnel server's TLS certificate.
    pub verify_ssl: bool,
    /// Whether the tunnel server speaks TLS.
    pub tls: bool,
    /// The tunnel server's protocol.
    pub protocol: TunnelProtocol,
}

impl TunnelParams {
    /// The member name in the params document.
    pub const MEMBER: &'static str = "tunnel";

    /// The `tunnel` member of a whole params document: `None` when the service is direct
    /// (no such member), an error when the member is there but malformed.
    pub fn of_launch(params: &serde_json::Value) -> Result<Option<Self>, serde_json::Error> {
        params.get(Self::MEMBER).map(Self::deserialize).transpose()
    }
}

impl fmt::Debug for TunnelParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ticket", &format_args!("<redacted>"))
            .field("startup_time", &self.startup_time)
            .field("verify_ssl", &self.verify_ssl)
            .field("tls", &self.tls)
            .field("protocol", &self.protocol)
            .finish()
    }
}

fn ticket_to_str<S: Serializer>(ticket: &TicketId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(ticket.expose())
}

fn ticket_from_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TicketId, D::Error> {
    let text = Zeroizing::new(String::deserialize(deserializer)?);
    TicketId::parse(&text).map_err(serde::de::Error::custom)
}

/// The protocol a tunnel server speaks: `"v1"` or `"openuds5"` in the params document and in
/// a script's `startTunnel` options.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelProtocol {
    /// Portcullis tunnel protocol v1 (`"v1"`).
    V1,
    /// OpenUDS 5's tunnel protocol, spoken by tunnel servers registered as legacy
    /// (`"openuds5"`).
    Openuds5,
}

impl TunnelProtocol {
    /// The name in the params document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Openuds5 => "openuds5",
        }
    }
}

impl fmt::Display for TunnelProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name other than `"v1"` and `"openuds5"`.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("the tunnel protocol must be \"v1\" or \"openuds5\", not {0:?}")]
pub struct UnknownTunnelProtocol(pub String);

impl FromStr for TunnelProtocol {
    type Err = UnknownTunnelProtocol;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "v1" => Ok(Self::V1),
            "openuds5" => Ok(Self::Openuds5),
            other => Err(UnknownTunnelProtocol(other.to_owned())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TICKET: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL";

    #[test]
    fn the_member_round_trips_through_a_params_document() {
        let tunnel = TunnelParams {
            host: "tunnel.example".into(),
            port: 4443,
            ticket: TicketId::parse(TICKET).unwrap(),
            startup_time: 30_000,
            verify_ssl: true,
            tls: false,
            protocol: TunnelProtocol::V1,
        };
        let document = serde_json::json!({ "name": "db", "tunnel": tunnel });
        assert_eq!(document["tunnel"]["ticket"], TICKET);
        assert_eq!(document["tunnel"]["protocol"], "v1");
        assert_eq!(TunnelParams::of_launch(&document).unwrap(), Some(tunnel));
    }

    #[test]
    fn a_direct_launch_has_none_and_a_malformed_member_is_an_error() {
        assert_eq!(
            TunnelParams::of_launch(&serde_json::json!({ "host": "h", "port": 22 })).unwrap(),
            None
        );
        let bad_ticket = serde_json::json!({ "tunnel": {
            "host": "t", "port": 1, "ticket": "short", "startup_time": 0,
            "verify_ssl": true, "tls": false, "protocol": "v1" } });
        assert!(TunnelParams::of_launch(&bad_ticket).is_err());
    }

    #[test]
    fn debug_never_shows_the_ticket() {
        let tunnel = TunnelParams {
            host: "t".into(),
            port: 1,
            ticket: TicketId::parse(TICKET).unwrap(),
            startup_time: 0,
            verify_ssl: true,
            tls: true,
            protocol: TunnelProtocol::Openuds5,
        };
        assert!(!format!("{tunnel:?}").contains(TICKET));
    }

    #[test]
    fn protocol_names_parse_and_print() {
        for protocol in [TunnelProtocol::V1, TunnelProtocol::Openuds5] {
            assert_eq!(protocol.as_str().parse::<TunnelProtocol>(), Ok(protocol));
        }
        assert!("v2".parse::<TunnelProtocol>().is_err());
    }
}
