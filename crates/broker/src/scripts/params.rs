//! The params document: what a launcher script reads as `data`.
//!
//! The broker builds it from these types, so every script sees the shape documented in
//! `docs/launcher-scripts.md` §6: the service's name, how to reach it ([`Route`],
//! tagged by `transport`) and the protocol's options ([`ServiceParams`], tagged by
//! `protocol`), all as members of one flat JSON object. Optional members that are `None`
//! are left out.
//!
//! The tunnel ticket and the RDP password are secrets: their `Debug` is redacted, they are
//! zeroized on drop, and [`LaunchParams::to_json`] returns a zeroizing buffer.

use core::fmt;
use std::io;

pub use portcullis_proto::tunnel::{TunnelParams, TunnelProtocol};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::model::{Protocol, Transport};

/// The params document of one launch.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LaunchParams {
    /// The service's display name.
    pub name: String,
    /// How the launcher reaches the service (`transport` and its members).
    #[serde(flatten)]
    pub route: Route,
    /// The protocol and its options (`protocol` and its members).
    #[serde(flatten)]
    pub service: ServiceParams,
}

impl LaunchParams {
    /// The service's protocol.
    pub fn protocol(&self) -> Protocol {
        self.service.protocol()
    }

    /// How the launcher reaches the service.
    pub fn transport(&self) -> Transport {
        self.route.transport()
    }

    /// The JSON document, for [`portcullis_proto::payload::build`].
    ///
    /// The buffer is sized exactly before the document is written into it, so no copy of
    /// the secrets is left behind by reallocation, and it is zeroized on drop.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, self)?;
        let mut json = Zeroizing::new(Vec::with_capacity(counter.0));
        serde_json::to_writer(&mut *json, self)?;
        Ok(json)
    }
}

/// How the launcher reaches the service: the `transport` member and the members it implies.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Route {
    /// The launcher's client connects to `host:port` itself.
    Direct {
        /// The service's host name or address.
        host: String,
        /// The service's TCP port.
        port: u16,
    },
    /// The launcher relays through a tunnel server.
    Tunneled {
        /// The tunnel server and ticket.
        tunnel: TunnelParams,
    },
}

impl Route {
    /// The transport this route uses.
    pub fn transport(&self) -> Transport {
        match self {
            Self::Direct { .. } => Transport::Direct,
            Self::Tunneled { .. } => Transport::Tunneled,
        }
    }
}

/// The `protocol` member and the options of that protocol.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum ServiceParams {
    /// Remote Desktop Protocol.
    Rdp(RdpParams),
    /// Secure Shell.
    Ssh(SshParams),
    /// VNC.
    Vnc(VncParams),
    /// Any TCP service.
    Tcp(TcpParams),
}

impl ServiceParams {
    /// The protocol these options are for.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Rdp(_) => Protocol::Rdp,
            Self::Ssh(_) => Protocol::Ssh,
            Self::Vnc(_) => Protocol::Vnc,
            Self::Tcp(_) => Protocol::Tcp,
        }
    }
}

/// RDP options.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct RdpParams {
    /// The account to sign in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The account's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The account's password (pass-through or stored credentials; else the client asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
    /// Full screen.
    #[serde(default)]
    pub fullscreen: bool,
    /// Window width in pixels (with `height`, when not full screen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    /// Window height in pixels (with `width`, when not full screen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    /// Span all monitors.
    #[serde(default)]
    pub multimon: bool,
    /// Share the clipboard.
    #[serde(default)]
    pub clipboard: bool,
    /// Play the remote sound locally.
    #[serde(default)]
    pub audio: bool,
    /// Share local printers.
    #[serde(default)]
    pub printers: bool,
    /// Share local files: the home directory (FreeRDP) or the local drives (`mstsc`).
    #[serde(default)]
    pub drives: bool,
}

/// SSH options.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SshParams {
    /// The remote user (`ssh -l`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The name `ssh` checks the host key under (`-o HostKeyAlias=`): set it for tunneled
    /// services, which `ssh` reaches at `127.0.0.1` on a different port every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_alias: Option<String>,
    /// An OpenSSH user certificate for the launcher's key of this exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_certificate: Option<String>,
}

/// VNC options.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct VncParams {
    /// The VNC password, from the service's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
}

/// Generic TCP options.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct TcpParams {
    /// A fixed local port for the tunnel, so that the user's application settings stay
    /// valid; by default the launcher picks a free port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
}

/// A secret string, such as a password: zeroized on drop, redacted by `Debug`, serialized
/// as the plain string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An `io::Write` that only counts bytes.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
