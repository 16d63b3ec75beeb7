//! SSH through the launcher to a real OpenSSH `sshd`, directly and through the tunnel: the
//! broker's `scripts_dir` replaces `ssh-linux.js` with a test script that runs `ssh` in
//! batch mode (no terminal) and writes what it printed to a file this test reads.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use portcullis_broker::store::{Protocol, Transport};
use portcullis_launcher::launch::launch;
use portcullis_launcher::ui::Ui;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::support::{Setup, Stack, TestUi, bounded, free_port};

/// What the remote command prints.
const EXPECTED: &str = "through-the-launcher\nLinux\n";
/// The name `ssh` checks the test host key under, wherever it reaches `sshd`.
const HOST_KEY_ALIAS: &str = "portcullis-test-sshd";

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

/// `sshd -D -e` on 127.0.0.1 with a host key and a user key generated for the test, and a
/// known-hosts file that pins the host key under [`HOST_KEY_ALIAS`].
struct Sshd {
    addr: SocketAddr,
    client_key: PathBuf,
    known_hosts: PathBuf,
    _process: Child,
}

impl Sshd {
    async fn start(dir: &Path) -> Self {
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key).await;
        keygen(&client_key).await;
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized_keys).unwrap();
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("{HOST_KEY_ALIAS} {host_public}")).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").ok();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let config = dir.join("sshd_config");
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
                 LogLevel ERROR\n",
                host_key.display(),
                authorized_keys.display(),
            ),
        )
        .unwrap();
        let process = Command::new(program("sshd", "openssh-server"))
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        bounded("sshd listening", Duration::from_secs(30), async {
            loop {
                if let Ok(mut probe) = tokio::net::TcpStream::connect(addr).await {
                    // Its banner, then one of ours: sshd logs no error for this probe.
                    let mut banner = [0u8; 4];
                    if probe.read_exact(&mut banner).await.is_ok() && &banner == b"SSH-" {
                        let _ = probe.write_all(b"SSH-2.0-probe\r\n").await;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Self {
            addr,
            client_key,
            known_hosts,
            _process: process,
        }
    }
}

/// The user the launcher runs as, whom `sshd` lets in with the test key.
async fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().await.unwrap();
    assert!(output.status.success(), "id -un failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The test's `ssh-linux.js`: `ssh` in batch mode to the service (or to the local tunnel
/// endpoint), its output written as JSON to `out`. Paths are JSON string literals in the
/// script.
fn ssh_script(sshd: &Sshd, user: &str, out: &Path) -> String {
    let literal = |text: &str| serde_json::to_string(text).unwrap();
    let path = |path: &Path| literal(&path.display().to_string());
    format!(
        r#"import {{ Process, Tasks, File }} from 'runtime';

const ssh = Process.findExecutable('ssh');
if (!ssh) throw new Error('ssh is missing');
let target = {{ host: data.host, port: data.port }};
if (data.transport === 'tunneled') {{
    const local = await Tasks.startTunnel({{
        addr: data.tunnel.host,
        port: data.tunnel.port,
        ticket: data.tunnel.ticket,
        startup_time_ms: 1000,
        check_certificate: data.tunnel.verify_ssl,
        tls: data.tunnel.tls,
        protocol: data.tunnel.protocol,
    }});
    target = {{ host: local.host, port: local.port }};
}}
const result = await Process.launchAndWait(ssh, [
    '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
    '-o', 'UserKnownHostsFile=' + {known_hosts}, '-o', 'HostKeyAlias=' + {alias},
    '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=20',
    '-i', {key}, '-p', String(target.port), '-l', {user},
    '--', target.host, 'echo through-the-launcher; uname -s',
], 60000);
File.write({out}, JSON.stringify({{ target, stdout: result.stdout, stderr: result.stderr }}));
"#,
        known_hosts = path(&sshd.known_hosts),
        alias = literal(HOST_KEY_ALIAS),
        key = path(&sshd.client_key),
        user = literal(user),
        out = path(out),
    )
}

/// What an SSH launch left: the script's output, and what must outlive the tunnel's end
/// (the tunnel server's `EndSession` attach still reaches `sshd` and its files).
struct Launched {
    output: Value,
    stack: Stack,
    sshd: Sshd,
    _dir: TempDir,
}

/// Launches `transport` SSH to a real `sshd` through the test script.
async fn ssh_through_the_launcher(transport: Transport) -> Launched {
    let dir = TempDir::new().unwrap();
    let sshd = Sshd::start(dir.path()).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let out = dir.path().join("ssh-output.json");
    std::fs::write(
        scripts.join("ssh-linux.js"),
        ssh_script(&sshd, &current_user().await, &out),
    )
    .unwrap();
    let stack = Stack::with(Setup {
        scripts_dir: Some(scripts),
        ..Setup::default()
    })
    .await;
    let service = stack
        .add_service("shell", Protocol::Ssh, transport, sshd.addr)
        .await;
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link_to(service).await, &home);
    let ui = Arc::new(TestUi::default());
    // The script's work done, the launcher ends by itself: no app waits, no connection is
    // open and the tunnel's startup time has passed.
    let result = bounded(
        "the SSH launch",
        Duration::from_secs(90),
        launch(options, Arc::clone(&ui) as Arc<dyn Ui>),
    )
    .await;
    if let Err(failure) = result {
        panic!("the launch failed: {failure} ({:?})", ui.messages());
    }
    let written = std::fs::read_to_string(&out).expect("the script wrote ssh's output");
    let output: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(output["stdout"], EXPECTED, "ssh said: {output}");
    Launched {
        output,
        stack,
        sshd,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_ssh_from_a_scripts_dir_script_runs_a_remote_command() {
    let Launched { output, sshd, .. } = ssh_through_the_launcher(Transport::Direct).await;
    assert_eq!(output["target"]["port"], sshd.addr.port(), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunneled_ssh_from_a_scripts_dir_script_runs_a_remote_command() {
    let Launched {
        output,
        stack,
        sshd,
        _dir,
    } = ssh_through_the_launcher(Transport::Tunneled).await;
    // ssh reached the launcher's local listener, not sshd itself.
    assert_eq!(output["target"]["host"], "127.0.0.1", "{output}");
    assert_ne!(output["target"]["port"], sshd.addr.port(), "{output}");
    // The tunnel carried the session, and the launcher ended it.
    let stopped = stack.tunnel_stopped().await;
    assert!(
        stopped["sent"].as_u64().unwrap() > 1000 && stopped["recv"].as_u64().unwrap() > 1000,
        "{stopped}"
    );
}
