//! The Portcullis launcher: the handler of `udssv2://` links on end-user machines.
//!
//! A launch ([`launch::launch`]) checks the link, trusts the broker's ML-DSA-65 key
//! ([`trust`], pinned per broker host), exchanges the ticket under a fresh ML-KEM-768 key
//! ([`exchange`]), verifies the script and payload signatures, runs the script
//! ([`script`], rquickjs with memory and time limits) and opens the tunnels it asks for
//! (`portcullis_link::client`: the tunnel link, not the tunnel server), until docs/launcher-scripts.md §3 says it ends. Every
//! failure is a [`failure::Failure`]: one sentence for the user and a distinct exit code.

#![forbid(unsafe_code)]

pub mod desktop;
pub mod exchange;
pub mod failure;
pub mod launch;
pub mod paths;
pub mod safe_text;
pub mod script;
pub mod ssh_key_pair;
pub mod stop;
pub mod trust;
pub mod ui;
pub mod vnc_password;
pub mod window;
#[cfg(unix)]
pub mod x_display;

/// This launcher's operating system, as announced to the broker and to scripts.
pub const OS: &str = if cfg!(windows) {
    "windows"
} else if cfg!(target_os = "macos") {
    "macos"
} else {
    "linux"
};
