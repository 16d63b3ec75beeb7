//! Small domain enums shared by the broker's modules: what a service speaks
//! ([`Protocol`]), how the launcher reaches it ([`Transport`]) and whether the broker
//! checks that it is up before an exchange ([`Readiness`]).
//!
//! All are stored, configured and sent as their lowercase names (`"rdp"`, `"tunneled"`),
//! through `serde`, `FromStr` and `Display` alike.

use serde::{Deserialize, Serialize};

/// The protocol a service speaks, which selects its launcher script.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Remote Desktop Protocol (FreeRDP on Linux and macOS, `mstsc` on Windows).
    Rdp,
    /// Secure Shell (OpenSSH `ssh` in a terminal).
    Ssh,
    /// Virtual Network Computing (a VNC viewer).
    Vnc,
    /// Any TCP service: the launcher opens a local port and shows it.
    Tcp,
}

impl Protocol {
    /// Every protocol, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Rdp, Self::Ssh, Self::Vnc, Self::Tcp];

    /// The lowercase name: `"rdp"`, `"ssh"`, `"vnc"` or `"tcp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rdp => "rdp",
            Self::Ssh => "ssh",
            Self::Vnc => "vnc",
            Self::Tcp => "tcp",
        }
    }
}

/// How the launcher reaches a service.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The launcher connects to the service's host and port itself.
    Direct,
    /// The launcher opens a local listener and relays through a tunnel server.
    Tunneled,
}

impl Transport {
    /// Every transport, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Direct, Self::Tunneled];

    /// The lowercase name: `"direct"` or `"tunneled"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Tunneled => "tunneled",
        }
    }
}

/// Whether the broker checks a service's target before an exchange.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// The target must accept a TCP connection from the broker; until it does, exchanges
    /// answer the retryable "Preparing service".
    Tcp,
    /// No check: for targets the broker cannot reach, such as tunneled services in a
    /// network only the tunnel servers reach.
    Off,
}

impl Readiness {
    /// Every readiness mode, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Tcp, Self::Off];

    /// The lowercase name: `"tcp"` or `"off"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Off => "off",
        }
    }
}

/// How a service signs its user in on the target (docs/protocol.md §6.8).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// No credential: the client program asks the user.
    #[default]
    None,
    /// The portal user's own user name and password (password users; see the docs for
    /// OpenID Connect users).
    PassThrough,
    /// A service account the operator stored, its password sealed under the broker's
    /// credential key.
    Stored,
    /// A short-lived SSH certificate for the launcher's own key, signed by the broker's CA.
    SshCertificate,
}

impl CredentialMode {
    /// Every mode, in a fixed order.
    pub const ALL: [Self; 4] = [
        Self::None,
        Self::PassThrough,
        Self::Stored,
        Self::SshCertificate,
    ];

    /// The name: `"none"`, `"pass-through"`, `"stored"` or `"ssh-certificate"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PassThrough => "pass-through",
            Self::Stored => "stored",
            Self::SshCertificate => "ssh-certificate",
        }
    }

    /// Whether a service of `protocol` can use this mode: passwords for RDP and VNC, SSH
    /// certificates for SSH, `none` for all.
    pub const fn suits(self, protocol: Protocol) -> bool {
        match self {
            Self::None => true,
            Self::PassThrough | Self::Stored => matches!(protocol, Protocol::Rdp | Protocol::Vnc),
            Self::SshCertificate => matches!(protocol, Protocol::Ssh),
        }
    }
}

/// A name that is not one of an enum's lowercase names.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("unknown {what} {value:?}, expected one of: {expected}")]
pub struct ParseNameError {
    /// What was being parsed (`"protocol"`, `"transport"`, …).
    pub what: &'static str,
    /// The refused text, cut to 32 characters.
    pub value: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

impl ParseNameError {
    /// Makes the error for `value`, keeping at most 32 characters of it.
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            what,
            value: value.chars().take(32).collect(),
            expected,
        }
    }
}

/// Implements `Display` and `FromStr` for a fieldless enum through its `ALL` and `as_str`.
macro_rules! lowercase_names {
    ($type:ty, $what:literal, $expected:literal) => {
        impl ::core::fmt::Display for $type {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $type {
            type Err = $crate::model::ParseNameError;

            /// Parses the exact lowercase name.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|item| item.as_str() == text)
                    .ok_or_else(|| $crate::model::ParseNameError::new($what, text, $expected))
            }
        }
    };
}
pub(crate) use lowercase_names;

lowercase_names!(Protocol, "protocol", "rdp, ssh, vnc, tcp");
lowercase_names!(Transport, "transport", "direct, tunneled");
lowercase_names!(Readiness, "readiness", "tcp, off");
lowercase_names!(
    CredentialMode,
    "credential mode",
    "none, pass-through, stored, ssh-certificate"
);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn round_trip<T>(all: &[T], as_str: fn(&T) -> &'static str)
    where
        T: Copy
            + PartialEq
            + core::fmt::Debug
            + core::fmt::Display
            + core::str::FromStr<Err = ParseNameError>
            + Serialize
            + for<'de> Deserialize<'de>,
    {
        for item in all {
            let name = as_str(item);
            assert_eq!(item.to_string(), name);
            assert_eq!(name.parse::<T>().unwrap(), *item);
            let json = serde_json::to_string(item).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *item);
        }
    }

    #[test]
    fn names_round_trip_through_every_form() {
        round_trip(&Protocol::ALL, |item| item.as_str());
        round_trip(&Transport::ALL, |item| item.as_str());
        round_trip(&Readiness::ALL, |item| item.as_str());
        round_trip(&CredentialMode::ALL, |item| item.as_str());
    }

    #[test]
    fn unknown_names_are_refused_clearly() {
        let error = "RDP".parse::<Protocol>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"unknown protocol "RDP", expected one of: rdp, ssh, vnc, tcp"#
        );
        let error = "x".repeat(100).parse::<Transport>().unwrap_err();
        assert_eq!(error.value.len(), 32);
        assert!(serde_json::from_str::<Protocol>(r#""telnet""#).is_err());
    }
}
