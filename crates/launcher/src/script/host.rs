//! What a running script asks of the launcher: the part of the `runtime` API that reaches
//! beyond the script's own process (tunnels, messages to the user).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use portcullis_proto::TicketId;
use portcullis_proto::tunnel::TunnelProtocol;

use crate::ssh_key_pair::SshKeyPair;

/// A boxed future, for the host's asynchronous calls.
pub type HostFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The options of `Tasks.startTunnel` (docs/launcher-scripts.md §4.2), as the script gave
/// them. `shared_secret` is accepted from scripts and ignored: the launcher uses the
/// secret of its own ticket exchange, which never reaches script code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelOptions {
    /// The tunnel server's host.
    pub addr: String,
    /// The tunnel server's port.
    pub port: u16,
    /// The tunnel ticket; `Debug` shows its first characters only.
    pub ticket: TicketId,
    /// How long the listener waits for its first connection (0 means 30,000 ms).
    pub startup_time_ms: u64,
    /// Verify the tunnel server's TLS certificate.
    pub check_certificate: bool,
    /// A fixed local port, or `None` for a free one.
    pub local_port: Option<u16>,
    /// Keep listening after `startup_time_ms` without a connection.
    pub keep_listening_after_timeout: bool,
    /// Listen on `::1` instead of `127.0.0.1`.
    pub enable_ipv6: bool,
    /// Wrap the tunnel connection in TLS.
    pub tls: bool,
    /// The tunnel server's protocol.
    pub protocol: TunnelProtocol,
}

/// The launcher's side of a script run.
pub trait ScriptHost: Send + Sync + 'static {
    /// `Tasks.startTunnel`: opens a local tunnel endpoint and resolves to its address, or
    /// rejects with a message for the user.
    fn start_tunnel(&self, options: TunnelOptions) -> HostFuture<Result<SocketAddr, String>>;

    /// `Portcullis.message`: shows `text` to the user without blocking.
    fn message(&self, text: &str);

    /// `Portcullis.waitUntilClosed`: shows `text` with a *Disconnect* button; resolves when
    /// the user presses it or closes the window.
    fn wait_until_closed(&self, text: &str) -> HostFuture<()>;

    /// The SSH key pair of this launch's ticket exchange, for `Portcullis.sshIdentity()`;
    /// `None` where there is none.
    fn ssh_key(&self) -> Option<&SshKeyPair> {
        None
    }
}
