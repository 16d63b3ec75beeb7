//! What the dev stack tells people and programs: DIR/dev.json and the summary it prints.

use std::path::{Path, PathBuf};

use anyhow::Context;
use portcullis_broker::files::{Existing, write_atomically};
use serde::{Deserialize, Serialize};

/// The contents of DIR/dev.json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DevInfo {
    /// The broker's base URL.
    pub broker_url: String,
    /// The web portal (the broker's `/`).
    #[serde(default)]
    pub portal_url: String,
    /// Path of the PEM certificate to trust for `broker_url`.
    pub ca_cert: PathBuf,
    /// The demo user.
    pub username: String,
    /// The demo user's password (a dev stack only: never do this in production).
    pub password: String,
    /// The administrator (the admin pages at `/admin`).
    #[serde(default)]
    pub admin_username: String,
    /// The administrator's password (a dev stack only).
    #[serde(default)]
    pub admin_password: String,
    /// Base64 of the broker's raw ML-DSA-65 public key, for launchers to pin.
    pub broker_public_key: String,
    /// Its SHA-256 fingerprint.
    pub broker_key_fingerprint: String,
    /// The command that pins the broker's key (and its certificate) in the launcher.
    #[serde(default)]
    pub launcher_trust_command: String,
    /// The command that makes the launcher the handler of `udssv2://` links.
    #[serde(default)]
    pub launcher_register_command: String,
    /// The demo services.
    pub services: Vec<DevService>,
    /// Where launchers reach the dev tunnel server, `127.0.0.1:PORT` (empty in a dev.json
    /// written before there was one).
    #[serde(default)]
    pub tunnel_address: String,
}

impl DevInfo {
    /// The previous run's tunnel port, if it had one.
    pub(super) fn tunnel_port(&self) -> Option<u16> {
        self.tunnel_address
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|address| address.port())
            .filter(|port| *port != 0)
    }
}

/// One demo service in dev.json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DevService {
    /// Service id (for `POST /api/services/{id}/connect`).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: String,
    /// Transport.
    pub transport: String,
    /// Target host.
    pub host: String,
    /// Target port.
    pub port: u16,
}

/// The launcher command that pins `broker_host`'s key and certificate.
pub(super) fn trust_command(broker_host: &str, public_key: &str, ca_cert: &Path) -> String {
    format!(
        "portcullis-launcher trust add {broker_host} {public_key} --ca-file {}",
        shell_word(&ca_cert.display().to_string())
    )
}

/// `word` as one POSIX shell word.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Writes `contents` and a newline to `path` (mode 0600) atomically, so that a program
/// waiting for dev.json never reads half of it.
pub(super) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut line = Vec::with_capacity(contents.len() + 1);
    line.extend_from_slice(contents);
    line.push(b'\n');
    write_atomically(path, &line, 0o600, Existing::Replace)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The summary a person reads: where to sign in, as whom, and how to set up the launcher.
/// `tunnel` is the dev tunnel server's name and tunnel group; `ssh_hint` is the line
/// printed when no SSH service could be offered.
pub(super) fn print_summary(
    info: &DevInfo,
    info_path: &Path,
    tunnel: (&str, &str),
    ssh_hint: Option<&str>,
) {
    println!();
    println!("Portcullis dev stack is running (Ctrl-C stops it)");
    println!("  portal       {}", info.portal_url);
    println!("  sign in as   {} / {}", info.username, info.password);
    println!(
        "  administer   {} / {}  (the admin pages: {}admin)",
        info.admin_username, info.admin_password, info.portal_url
    );
    println!(
        "  certificate  {} (self-signed: your browser will ask)",
        info.ca_cert.display()
    );
    println!("  broker key   {}", info.broker_key_fingerprint);
    println!(
        "  tunnel       {} (tunnel server {}, tunnel group {})",
        info.tunnel_address, tunnel.0, tunnel.1
    );
    for service in &info.services {
        println!(
            "  service {:>3}  {} ({} {}) -> {}:{}",
            service.id,
            service.name,
            service.protocol,
            service.transport,
            service.host,
            service.port
        );
    }
    if let Some(hint) = ssh_hint {
        println!("  no SSH       {hint}");
    }
    println!();
    println!(
        "Set up the launcher once (build it with `cargo build --release -p portcullis-launcher`"
    );
    println!("and put target/release/portcullis-launcher on your PATH):");
    println!("  {}", info.launcher_trust_command);
    println!("  {}", info.launcher_register_command);
    println!("Then open the portal, sign in and click Connect.");
    println!();
    println!("Everything above, for programs: {}", info_path.display());
    println!();
}
