//! A real OpenSSH server on 127.0.0.1 for one test: its own host key (pinned in a
//! known-hosts file under [`Sshd::HOST_KEY_ALIAS`], so clients check it wherever they reach
//! the server: directly or through a tunnel's local port), one client key authorized for
//! the current user, a free port; killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::program;

/// How long `sshd` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `sshd -D`; stopped on drop.
pub struct Sshd {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Sshd {
    /// The name `ssh` checks the host key under (`-o HostKeyAlias=`).
    pub const HOST_KEY_ALIAS: &'static str = "portcullis-test-sshd";

    /// Generates the keys, starts `sshd` on a free loopback port and waits until it
    /// listens.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`Sshd::start`], and `sshd` also trusts the user certificates that the CA of
    /// this OpenSSH public key line signed (`TrustedUserCAKeys`), for the principals they
    /// name (a certificate must name the user it signs in as).
    pub fn trusting_user_ca(ca_public_line: &str) -> Self {
        Self::start_with(Some(ca_public_line))
    }

    fn start_with(user_ca: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let extra = match user_ca {
            Some(line) => {
                let path = dir.path().join("trusted_user_ca_keys");
                std::fs::write(&path, format!("{line}\n")).unwrap();
                format!("TrustedUserCAKeys {}\n", path.display())
            }
            None => String::new(),
        };
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("{} {host_public}", Self::HOST_KEY_ALIAS),
        )
        .unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").ok();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}\n\
                 HostKey {}\n\
                 AuthorizedKeysFile {}\n\
                 PidFile none\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 LogLevel ERROR\n{extra}",
                host_key.display(),
                authorized.display(),
            ),
        )
        .unwrap();
        // Its log (probes of the port show up there) stays out of the test's output.
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(program("sshd", "openssh-server"))
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut sshd = Self { child, addr, dir };
        sshd.wait_listening();
        sshd
    }

    /// Waits until `sshd` answers with its banner. The probe answers with a banner of its
    /// own, so that `sshd` logs no error for it.
    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(mut probe) =
                TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
            {
                let _ = probe.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if probe.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    let _ = probe.write_all(b"SSH-2.0-probe\r\n");
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("sshd.log"));
                panic!(
                    "sshd exited at start with {status}: {}",
                    log.unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "sshd did not listen on {} within {START_TIMEOUT:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The private key `sshd` accepts for the current user.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The known-hosts file that pins the host key under [`Sshd::HOST_KEY_ALIAS`].
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `ssh`'s options to log in with [`Sshd::client_key`] in batch mode, the host key
    /// checked against [`Sshd::known_hosts`]: no terminal, no prompt, no user
    /// configuration. The port, host and command follow them.
    pub fn ssh_options(&self) -> Vec<String> {
        let known_hosts = format!("UserKnownHostsFile={}", self.known_hosts().display());
        let alias = format!("HostKeyAlias={}", Self::HOST_KEY_ALIAS);
        let key = self.client_key().display().to_string();
        [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &known_hosts,
            "-o",
            &alias,
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-i",
            &key,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// [`Sshd::ssh_options`] without the client key: for a client that brings its own
    /// key (and certificate).
    pub fn ssh_options_without_key(&self) -> Vec<String> {
        let mut options = self.ssh_options();
        options.truncate(options.len() - 2);
        options
    }

    /// The `TrustedUserCAKeys` file of [`Sshd::trusting_user_ca`]; `sshd` reads it at each
    /// sign-in, so a test may write another CA's line into it.
    pub fn trusted_ca_file(&self) -> PathBuf {
        self.dir.path().join("trusted_user_ca_keys")
    }

    /// `sshd`'s log (errors, such as a refused certificate).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// `ssh`'s arguments (after the program) to run `remote_command` on `host`:`port`
    /// with [`Sshd::ssh_options`].
    pub fn ssh_args(&self, host: &str, port: u16, remote_command: &str) -> Vec<String> {
        let mut args = self.ssh_options();
        args.extend([
            "-p".to_owned(),
            port.to_string(),
            host.to_owned(),
            remote_command.to_owned(),
        ]);
        args
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new(program("ssh-keygen", "openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
}
