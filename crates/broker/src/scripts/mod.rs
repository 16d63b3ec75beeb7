//! Launcher scripts: the built-in JavaScript for each protocol and operating system, the
//! operator's replacements, and the params document the scripts read.
//!
//! The broker loads every script once at start and signs it with its key
//! ([`ScriptSet::load`]); a ticket exchange then picks the script for the service's
//! [`Protocol`] and the launcher's [`Os`] ([`ScriptSet::get`]) and the params built from
//! [`LaunchParams`], and hands both to [`portcullis_proto::payload::build`].
//!
//! The scripts (`crates/broker/scripts/<protocol>-<os>.js`) are written against the
//! launcher script API of `docs/launcher-scripts.md`: OpenUDS 5's `runtime` module
//! and `data` global, plus the optional `Portcullis` global, so that they run on Portcullis
//! and OpenUDS 5 launchers alike.

mod params;
mod set;

use serde::{Deserialize, Serialize};

use crate::model::{Protocol, lowercase_names};

pub use params::{
    LaunchParams, RdpParams, Route, SecretString, ServiceParams, SshParams, TcpParams,
    TunnelParams, TunnelProtocol, VncParams,
};
pub use set::{ScriptError, ScriptOrigin, ScriptSet};

/// The operating system a launcher runs on, which selects its script.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Linux and other Unix desktops; also the default.
    Linux,
    /// Windows.
    Windows,
    /// macOS.
    Macos,
}

impl Os {
    /// Every operating system, in a fixed order.
    pub const ALL: [Self; 3] = [Self::Linux, Self::Windows, Self::Macos];

    /// The lowercase name: `"linux"`, `"windows"` or `"macos"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
            Self::Macos => "macos",
        }
    }

    /// Picks the launcher's OS from the `client.os` field of its ticket request (Portcullis
    /// launchers) or else from the `User-Agent` of the portal request that made the ticket;
    /// Linux when neither names a known system.
    ///
    /// `client.os` is matched without regard to case and accepts Rust's names
    /// (`linux`, `windows`, `macos`) and common aliases (`win32`, `darwin`, `osx`, …).
    pub fn from_client(os_field: Option<&str>, user_agent: Option<&str>) -> Self {
        os_field
            .and_then(Self::from_os_name)
            .or_else(|| user_agent.and_then(Self::from_user_agent))
            .unwrap_or(Self::Linux)
    }

    /// Reads an OS name such as the `client.os` field (`linux`, `Windows`, `darwin`, …).
    pub fn from_os_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "linux" => Some(Self::Linux),
            "windows" | "win" | "win32" | "win64" => Some(Self::Windows),
            "macos" | "mac" | "macosx" | "osx" | "darwin" => Some(Self::Macos),
            _ => None,
        }
    }

    /// Reads the OS from an HTTP `User-Agent` (matched without regard to case, so an OS
    /// name such as `windows` is read too).
    pub fn from_user_agent(user_agent: &str) -> Option<Self> {
        let agent = user_agent.to_ascii_lowercase();
        let mentions = |tokens: &[&str]| tokens.iter().any(|token| agent.contains(token));
        if mentions(&["windows"]) {
            Some(Self::Windows)
        } else if mentions(&["macintosh", "mac os x", "macos", "darwin"]) {
            Some(Self::Macos)
        } else if mentions(&["linux", "x11", "cros"]) {
            Some(Self::Linux)
        } else {
            None
        }
    }
}

lowercase_names!(Os, "operating system", "linux, windows, macos");

/// The file name of the script for `protocol` on `os`, built in and in `scripts_dir`
/// alike: `<protocol>-<os>.js`, such as `rdp-windows.js`.
pub fn script_file_name(protocol: Protocol, os: Os) -> String {
    format!("{protocol}-{os}.js")
}

/// The built-in script for `protocol` on `os`.
pub fn builtin_script(protocol: Protocol, os: Os) -> &'static str {
    match (protocol, os) {
        (Protocol::Rdp, Os::Linux) => include_str!("../../scripts/rdp-linux.js"),
        (Protocol::Rdp, Os::Windows) => include_str!("../../scripts/rdp-windows.js"),
        (Protocol::Rdp, Os::Macos) => include_str!("../../scripts/rdp-macos.js"),
        (Protocol::Ssh, Os::Linux) => include_str!("../../scripts/ssh-linux.js"),
        (Protocol::Ssh, Os::Windows) => include_str!("../../scripts/ssh-windows.js"),
        (Protocol::Ssh, Os::Macos) => include_str!("../../scripts/ssh-macos.js"),
        (Protocol::Vnc, Os::Linux) => include_str!("../../scripts/vnc-linux.js"),
        (Protocol::Vnc, Os::Windows) => include_str!("../../scripts/vnc-windows.js"),
        (Protocol::Vnc, Os::Macos) => include_str!("../../scripts/vnc-macos.js"),
        (Protocol::Tcp, Os::Linux) => include_str!("../../scripts/tcp-linux.js"),
        (Protocol::Tcp, Os::Windows) => include_str!("../../scripts/tcp-windows.js"),
        (Protocol::Tcp, Os::Macos) => include_str!("../../scripts/tcp-macos.js"),
    }
}

#[cfg(test)]
mod tests;
