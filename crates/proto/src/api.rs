//! The JSON bodies of the client and tunnel-server HTTP APIs, and the launch URL.
//!
//! All of these speak OpenUDS 5's wire format, with the Portcullis extensions marked as
//! such; `docs/protocol.md` specifies them byte for byte. Base64 is always standard and
//! padded.
//!
//! - Client API (launchers, HTTP 200 for success and failure alike):
//!   `GET /uds/rest/client` answers a [`VersionAnswer`];
//!   `POST /uds/rest/client/<ticket>/ticket` takes a [`TicketRequest`] and answers a
//!   [`TicketAnswer`]: `{"result": <Envelope>}` or `{"error": <ErrorBody>}`.
//! - Tunnel-server API (`POST /uds/rest/tunnel/ticket`, bearer token): a
//!   [`TunnelRequest`]; `start` answers an [`Envelope`](crate::openuds::Envelope) (not
//!   wrapped) around a [`TunnelStart`], `stop` answers [`StopAnswer`] (`{}`), and every
//!   refusal is HTTP 403 with [`TunnelRefusal`] (`{"error": "Access denied"}`). The control
//!   channel (`POST /uds/rest/tunnel/control`, a Portcullis extension) takes a
//!   [`ControlRequest`] and answers a [`ControlAnswer`].
//! - The launch URL `udssv2://<host>/<ticket>/<scrambler>` is a [`LaunchUrl`].
//! - Protocol versions compare as semver with [`ProtocolVersion`].
//!
//! Parsing (`from_json`) checks only the JSON structure; `check` methods then validate
//! every field into typed values, so the servers never act on an unchecked field.

mod client;
mod launch_url;
mod tunnel;
mod version;

pub use client::{
    Answer, BROKER_KEY_PATH, BrokerKey, CLIENT_PATH, CheckedTicketRequest, ClientInfo,
    ClientVersionInfo, ErrorBody, PREPARING_SERVICE, Percent, TicketAnswer, TicketRequest,
    VersionAnswer, capability, ticket_exchange_path,
};
pub use launch_url::{LAUNCH_URL_SCHEME, LaunchUrl, MAX_HOST_LEN};
pub use tunnel::{
    ACCESS_DENIED, CONTROL_PATH, Command, ControlAnswer, ControlRequest, EndCommand,
    MAX_CONTROL_BODY, MAX_CONTROL_SESSIONS, MAX_CONTROL_WAIT_MS, Remote, SessionRef, SessionReport,
    StartProof, StartRequest, StopAnswer, StopRequest, TUNNEL_TICKET_PATH, TunnelCommand,
    TunnelRefusal, TunnelRequest, TunnelStart,
};
pub use version::{PROTOCOL_VERSION, ProtocolVersion};
