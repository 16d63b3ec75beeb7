//! SSH through the launcher to a real OpenSSH `sshd`, directly and through the tunnel: the
//! broker's `scripts_dir` replaces `ssh-linux.js` with a test script that runs `ssh` in
//! batch mode (no terminal) and writes what it printed to a file this test reads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_broker::store::{Protocol, Transport};
use portcullis_launcher::launch::launch;
use portcullis_launcher::ui::Ui;
use portcullis_testkit::Sshd;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;

use crate::support::{Setup, Stack, TestUi, bounded};

/// What the remote command prints.
const EXPECTED: &str = "through-the-launcher\nLinux\n";

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
    ...{options}, '-p', String(target.port), '-l', {user},
    '--', target.host, 'echo through-the-launcher; uname -s',
], 60000);
File.write({out}, JSON.stringify({{ target, stdout: result.stdout, stderr: result.stderr }}));
"#,
        options = serde_json::to_string(&sshd.ssh_options()).unwrap(),
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
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
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
        .add_service("shell", Protocol::Ssh, transport, sshd.addr())
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
    assert_eq!(output["target"]["port"], sshd.addr().port(), "{output}");
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
    assert_ne!(output["target"]["port"], sshd.addr().port(), "{output}");
    // The tunnel carried the session, and the launcher ended it.
    let stopped = stack.tunnel_stopped().await;
    assert!(
        stopped["sent"].as_u64().unwrap() > 1000 && stopped["recv"].as_u64().unwrap() > 1000,
        "{stopped}"
    );
}
