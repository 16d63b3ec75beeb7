//! A real OpenSSH session through the tunnel: `sshd` on 127.0.0.1 with keys the test
//! generates, `ssh` in batch mode to the forwarder's local port, a remote command whose
//! output comes back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::support::{Stack, bounded, detail};

/// Finds a program on PATH or in the usual sbin directories, or fails saying how to get it.
fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: install the Debian package {package} \
                 (bash scripts/test.sh installs it)"
            )
        })
}

async fn keygen(path: &Path) {
    let status = Command::new(program("ssh-keygen", "openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
}

/// `sshd -D` on 127.0.0.1:`port`, accepting `client_key.pub` for the current user.
async fn start_sshd(dir: &Path, port: u16) -> Child {
    let host_key = dir.join("host_key");
    let client_key = dir.join("client_key");
    keygen(&host_key).await;
    keygen(&client_key).await;
    std::fs::copy(
        client_key.with_extension("pub"),
        dir.join("authorized_keys"),
    )
    .unwrap();
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").ok();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {}\n\
             AuthorizedKeysFile {}\n\
             PidFile none\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             LogLevel ERROR\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
        ),
    )
    .unwrap();
    Command::new(program("sshd", "openssh-server"))
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_through_the_tunnel_runs_a_remote_command() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let _sshd = start_sshd(dir.path(), port).await;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Wait for sshd to listen.
    bounded("sshd listening", async {
        while tokio::net::TcpStream::connect(target).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let forwarder = stack.forwarder(target).await;
    let output = bounded(
        "ssh through the tunnel",
        Command::new(program("ssh", "openssh-client"))
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(dir.path().join("client_key"))
            .arg("-p")
            .arg(forwarder.local_addr().port().to_string())
            .arg("127.0.0.1")
            .arg("echo through-the-post-quantum-tunnel; uname -s")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ssh failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "through-the-post-quantum-tunnel\nLinux\n");
    let (sent, received) = forwarder.byte_counts();
    assert!(sent > 1000 && received > 1000, "{sent} {received}");
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"].as_u64(), Some(received), "{stop}");
    assert_eq!(stop["recv"].as_u64(), Some(sent), "{stop}");
}
