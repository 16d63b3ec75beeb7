//! Credentials reach the client program and nothing else (docs/protocol.md §6.8): a real
//! `sshd` trusting the broker's SSH CA lets the launcher in with its per-launch
//! certificate and refuses an expired one and one for another principal; a tunneled RDP
//! launch of the real binary hands FreeRDP (a stand-in that records its arguments and
//! input) the pass-through password on stdin, never in argv. The broker's, the tunnel
//! server's (both in this process, at TRACE) and the launcher's logs hold neither the
//! password nor the private key.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use portcullis_broker::store::{CredentialMode, Protocol, ServiceCredentials, Transport};
use portcullis_launcher::launch::launch;
use portcullis_launcher::ui::Ui;
use portcullis_testkit::Sshd;
use serde_json::Value;
use tempfile::TempDir;

use crate::process::LauncherProcess;
use crate::support::{PASSWORD, Setup, Stack, TestUi, bounded, ca_file};

/// Everything logged in this process at TRACE (the broker and the tunnel server run here).
fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init()
            .expect("the only subscriber of this process");
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fails if the process's log capture holds `secret`.
fn assert_not_logged(secret: &str, what: &str) {
    let log = capture().lock().unwrap_or_else(|p| p.into_inner());
    let text = String::from_utf8_lossy(&log);
    assert!(!text.is_empty(), "the capture holds the servers' logs");
    assert!(
        !text.contains(secret),
        "the {what} is in the servers' TRACE log"
    );
}

async fn current_user() -> String {
    let output = tokio::process::Command::new("id")
        .arg("-un")
        .output()
        .await
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The test's `ssh-linux.js`: after `pause_ms`, `ssh` in batch mode with the launch's own
/// identity (`Portcullis.sshIdentity()`) and nothing else; what it printed, the files and
/// the key's text (to search the logs for) written as JSON to `out`.
fn ssh_script(sshd: &Sshd, user: &str, out: &Path, pause_ms: u64) -> String {
    let literal = |text: &str| serde_json::to_string(text).unwrap();
    format!(
        r#"import {{ Process, Tasks, File }} from 'runtime';

const identity = Portcullis.sshIdentity();
if (!identity) throw new Error('no SSH identity for this launch');
let target = {{ host: data.host, port: data.port }};
if (data.transport === 'tunneled') {{
    const local = await Tasks.startTunnel({{
        addr: data.tunnel.host, port: data.tunnel.port, ticket: data.tunnel.ticket,
        startup_time_ms: 1000, check_certificate: data.tunnel.verify_ssl,
        tls: data.tunnel.tls, protocol: data.tunnel.protocol,
    }});
    target = {{ host: local.host, port: local.port }};
}}
await Process.sleep({pause_ms});
const result = await Process.launchAndWait(Process.findExecutable('ssh'), [
    ...{options}, '-i', identity.identityFile,
    '-o', `CertificateFile=${{identity.certificateFile}}`, '-o', 'IdentitiesOnly=yes',
    '-p', String(target.port), '-l', {user}, '--', target.host, 'echo certified',
], 60000);
const modes = await Process.launchAndWait('/usr/bin/stat', ['-c', '%a',
    identity.identityFile, identity.certificateFile,
    identity.identityFile.replace(/\/[^/]*$/, '')]);
File.write({out}, JSON.stringify({{
    identity, principal: data.username, stdout: result.stdout, stderr: result.stderr,
    modes: modes.stdout,
    key: File.read(identity.identityFile), again: Portcullis.sshIdentity(),
}}));
"#,
        options = serde_json::to_string(&sshd.ssh_options_without_key()).unwrap(),
        user = literal(user),
        out = literal(&out.display().to_string()),
    )
}

/// One SSH launch to `sshd` of a service whose certificates name `principal`: the
/// script's output.
async fn ssh_launch(
    sshd: &Sshd,
    transport: Transport,
    principal: &str,
    certificate_secs: u64,
    pause_ms: u64,
) -> Value {
    let dir = TempDir::new().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let out = dir.path().join("ssh-output.json");
    let user = current_user().await;
    std::fs::write(
        scripts.join("ssh-linux.js"),
        ssh_script(sshd, &user, &out, pause_ms),
    )
    .unwrap();
    let stack = Stack::with(Setup {
        scripts_dir: Some(scripts),
        ssh_ca: Some(certificate_secs),
        ..Setup::default()
    })
    .await;
    let service = stack
        .add_service("shell", Protocol::Ssh, transport, sshd.addr())
        .await;
    stack
        .broker
        .state
        .store
        .set_service_credentials(
            "shell",
            &ServiceCredentials {
                ssh_principal: Some(principal.to_owned()),
                ..ServiceCredentials::mode(CredentialMode::SshCertificate)
            },
        )
        .await
        .unwrap();
    let ca_line = stack
        .broker
        .state
        .credentials
        .ssh_ca
        .as_ref()
        .unwrap()
        .public_line();
    // This test's sshd trusts this stack's CA: a stack per launch, an sshd per stack.
    std::fs::write(sshd.trusted_ca_file(), format!("{ca_line}\n")).unwrap();
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link_to(service).await, &home);
    let ui = Arc::new(TestUi::default());
    let result = bounded(
        "the SSH launch",
        Duration::from_secs(90),
        launch(options, Arc::clone(&ui) as Arc<dyn Ui>),
    )
    .await;
    if let Err(failure) = result {
        panic!("the launch failed: {failure} ({:?})", ui.messages());
    }
    let output: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the script's output")).unwrap();
    // The identity's directory is gone with the launcher.
    let key_file = output["identity"]["identityFile"].as_str().unwrap();
    assert!(!Path::new(key_file).exists(), "{key_file} was not removed");
    assert!(!Path::new(key_file).parent().unwrap().exists());
    assert_eq!(
        output["again"], output["identity"],
        "one identity per launch"
    );
    assert_eq!(
        output["modes"], "600\n600\n700\n",
        "key, certificate, directory"
    );
    let key = output["key"].as_str().unwrap();
    assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    for line in key.lines().filter(|line| !line.starts_with("-----")) {
        assert_not_logged(line, "SSH private key");
    }
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sshd_lets_the_launcher_in_with_its_certificate_and_refuses_others() {
    capture();
    let user = current_user().await;
    let sshd = tokio::task::spawn_blocking(|| Sshd::trusting_user_ca("ssh-ed25519 AAAA"))
        .await
        .unwrap();

    let direct = ssh_launch(&sshd, Transport::Direct, &user, 300, 0).await;
    assert_eq!(direct["stdout"], "certified\n", "{direct}");
    assert_eq!(direct["principal"], user.as_str());
    let tunneled = ssh_launch(&sshd, Transport::Tunneled, "{username}-x", 300, 0).await;
    assert_eq!(
        tunneled["stdout"], "",
        "a principal that is not the user: {tunneled}"
    );
    assert_eq!(tunneled["principal"], "alice-x");
    assert!(
        tunneled["stderr"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{tunneled}"
    );
    let tunneled = ssh_launch(&sshd, Transport::Tunneled, &user, 300, 0).await;
    assert_eq!(tunneled["stdout"], "certified\n", "{tunneled}");
    // Valid for 1 s, used after 2.5 s: expired.
    let expired = ssh_launch(&sshd, Transport::Direct, &user, 1, 2500).await;
    assert_eq!(expired["stdout"], "", "an expired certificate: {expired}");
    assert!(
        expired["stderr"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{expired}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunneled_rdp_launch_gives_freerdp_the_password_on_stdin_never_in_argv() {
    capture();
    let dir = TempDir::new().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // A FreeRDP stand-in: records its arguments (as every local user could read them)
    // and what it read on stdin.
    let fake = bin.join("xfreerdp3");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         tr '\\0' '\\n' < /proc/$$/cmdline > \"$FAKE_OUT/cmdline\"\n\
         printf '%s\\n' \"$@\" > \"$FAKE_OUT/argv\"\n\
         cat > \"$FAKE_OUT/stdin\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &fake,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();

    let stack = Stack::with(Setup {
        tunnel_startup_secs: Some(1),
        ..Setup::default()
    })
    .await;
    let target = stack.tunnel.local_addrs()[0];
    let desktop = stack
        .add_service("desktop", Protocol::Rdp, Transport::Tunneled, target)
        .await;
    stack
        .broker
        .state
        .store
        .set_service_credentials(
            "desktop",
            &ServiceCredentials {
                domain: Some("CORP".into()),
                ..ServiceCredentials::mode(CredentialMode::PassThrough)
            },
        )
        .await
        .unwrap();
    // Signed in after the service passes passwords through.
    let link = stack.link_to(desktop).await;
    let home = TempDir::new().unwrap();
    let ca = ca_file(&stack.dir);
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let exit = LauncherProcess::spawn(
        [
            "--ca-file".as_ref(),
            ca.as_os_str(),
            "--trust-fingerprint".as_ref(),
            stack.fingerprint().as_ref(),
            link.as_ref(),
        ],
        home.path(),
        &[
            ("PATH", path.as_str()),
            ("RUST_LOG", "trace"),
            ("FAKE_OUT", out.to_str().unwrap()),
        ],
    )
    .exit()
    .await;
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert_eq!(read("stdin"), format!("{PASSWORD}\n"));
    for name in ["argv", "cmdline"] {
        let args = read(name);
        assert!(!args.contains(PASSWORD), "{name}: {args}");
        for expected in ["/from-stdin:force", "/u:alice", "/d:CORP", "/v:127.0.0.1:"] {
            assert!(args.contains(expected), "{name} lacks {expected}: {args}");
        }
    }
    let log = std::fs::read_to_string(home.path().join("launcher.log")).unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "a detailed log: {log}"
    );
    assert!(!log.contains(PASSWORD), "the launcher logged the password");
    assert!(!exit.stderr.contains(PASSWORD));
    assert_not_logged(PASSWORD, "password");
}
