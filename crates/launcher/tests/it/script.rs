//! The launcher-script runtime (docs/launcher-scripts.md): every API function, the limits,
//! failures and cleanup, and the broker's built-in scripts run unchanged against fake
//! client programs.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_launcher::script::{
    HostFuture, ScriptEnv, ScriptError, ScriptHost, ScriptLimits, Settled, TunnelOptions, run,
};
use portcullis_proto::TicketId;
use portcullis_proto::tunnel::TunnelProtocol;
use serde_json::{Value, json};

const TCP_LINUX: &str = include_str!("../../../broker/scripts/tcp-linux.js");
const SSH_LINUX: &str = include_str!("../../../broker/scripts/ssh-linux.js");
const RDP_LINUX: &str = include_str!("../../../broker/scripts/rdp-linux.js");
const VNC_LINUX: &str = include_str!("../../../broker/scripts/vnc-linux.js");

/// Checks made inside scripts: a failed check throws with its message.
const PRELUDE: &str =
    "function check(ok, what) { if (!ok) throw new Error('check failed: ' + what); }\n";

/// A launcher that records what scripts ask of it. Its tunnels are a listener it opens.
#[derive(Default)]
struct FakeHost {
    tunnels: Mutex<Vec<TunnelOptions>>,
    listeners: Mutex<Vec<TcpListener>>,
    messages: Mutex<Vec<String>>,
    windows: Mutex<Vec<String>>,
    refuse_tunnels: bool,
}

impl FakeHost {
    fn tunnels(&self) -> Vec<TunnelOptions> {
        self.tunnels.lock().unwrap().clone()
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    fn windows(&self) -> Vec<String> {
        self.windows.lock().unwrap().clone()
    }

    /// The port of the last tunnel's listener.
    fn tunnel_port(&self) -> u16 {
        self.listeners
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

impl ScriptHost for FakeHost {
    fn start_tunnel(&self, options: TunnelOptions) -> HostFuture<Result<SocketAddr, String>> {
        self.tunnels.lock().unwrap().push(options);
        let result = if self.refuse_tunnels {
            Err("The tunnel server tunnel.example.com refused the connection.".to_owned())
        } else {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            self.listeners.lock().unwrap().push(listener);
            Ok(addr)
        };
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            result
        })
    }

    fn message(&self, text: &str) {
        self.messages.lock().unwrap().push(text.to_owned());
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        self.windows.lock().unwrap().push(text.to_owned());
        Box::pin(tokio::time::sleep(Duration::from_millis(5)))
    }
}

/// Runs `source` with the default limits and the launcher's own `PATH`.
async fn run_default(source: &str, data: Value) -> (Result<Settled, ScriptError>, Arc<FakeHost>) {
    run_with(
        source,
        data,
        &ScriptLimits::default(),
        &ScriptEnv::default(),
        FakeHost::default(),
    )
    .await
}

async fn run_with(
    source: &str,
    data: Value,
    limits: &ScriptLimits,
    env: &ScriptEnv,
    host: FakeHost,
) -> (Result<Settled, ScriptError>, Arc<FakeHost>) {
    let host = Arc::new(host);
    let result = run(
        source,
        &data,
        Arc::clone(&host) as Arc<dyn ScriptHost>,
        limits,
        env,
    )
    .await;
    (result, host)
}

/// Runs a script of checks (with [`PRELUDE`]) and expects it to succeed.
async fn run_checks(source: &str, data: Value) -> (Settled, Arc<FakeHost>) {
    let (result, host) = run_default(&format!("{PRELUDE}{source}"), data).await;
    match result {
        Ok(settled) => (settled, host),
        Err(err) => panic!("the script failed: {err:?}"),
    }
}

/// A directory of fake programs: each writes its arguments, one a line, to
/// `<dir>/<name>.args`; `xterm` then runs the command after its `-e`.
fn fake_bin(names: &[&str]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let out = dir.path().join(format!("{name}.args"));
        let mut script = format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", out.display());
        if *name == "xterm" {
            script.push_str("shift\nexec \"$@\"\n");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn args_of(dir: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.args")))
        .unwrap_or_else(|err| panic!("{name} did not run: {err}"));
    text.lines().map(str::to_owned).collect()
}

fn path_env(dir: &Path) -> ScriptEnv {
    ScriptEnv {
        path: Some(OsString::from(dir)),
    }
}

fn tunneled_ssh_data() -> Value {
    json!({
        "name": "Build box", "transport": "tunneled", "protocol": "ssh",
        "tunnel": {"host": "tunnel.example.com", "port": 4443, "ticket": "t".repeat(48),
                   "startup_time": 30000, "verify_ssl": true, "tls": true, "protocol": "v1"},
        "username": "alice", "host_key_alias": "build-box"
    })
}

fn expected_tunnel(local_port: Option<u16>, keep_listening_after_timeout: bool) -> TunnelOptions {
    TunnelOptions {
        addr: "tunnel.example.com".into(),
        port: 4443,
        ticket: TicketId::parse(&"t".repeat(48)).unwrap(),
        startup_time_ms: 30000,
        check_certificate: true,
        local_port,
        keep_listening_after_timeout,
        enable_ipv6: false,
        tls: true,
        protocol: TunnelProtocol::V1,
    }
}

#[tokio::test]
async fn ssh_linux_tunneled_runs_ssh_in_a_terminal() {
    let bin = fake_bin(&["ssh", "xterm"]);
    let (result, host) = run_with(
        SSH_LINUX,
        tunneled_ssh_data(),
        &ScriptLimits::default(),
        &path_env(bin.path()),
        FakeHost::default(),
    )
    .await;
    let mut settled = result.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    assert!(!settled.apps_running());

    assert_eq!(host.tunnels(), vec![expected_tunnel(None, false)]);
    let ssh = bin.path().join("ssh").display().to_string();
    assert_eq!(args_of(bin.path(), "xterm")[..2], ["-e".to_owned(), ssh]);
    let port = host.tunnel_port().to_string();
    assert_eq!(
        args_of(bin.path(), "ssh"),
        [
            "-p",
            &port,
            "-l",
            "alice",
            "-o",
            "HostKeyAlias=build-box",
            "--",
            "127.0.0.1"
        ]
    );
    settled.cleanup().await;
}

#[tokio::test]
async fn ssh_linux_direct_connects_to_the_service() {
    let bin = fake_bin(&["ssh", "xterm"]);
    let data = json!({"name": "Box", "transport": "direct", "protocol": "ssh",
                      "host": "box.example.com", "port": 2222});
    let env = path_env(bin.path());
    let (result, host) = run_with(
        SSH_LINUX,
        data,
        &ScriptLimits::default(),
        &env,
        FakeHost::default(),
    )
    .await;
    let mut settled = result.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    assert!(host.tunnels().is_empty());
    assert_eq!(
        args_of(bin.path(), "ssh"),
        ["-p", "2222", "--", "box.example.com"]
    );
}

#[tokio::test]
async fn ssh_linux_without_ssh_throws_plain_text() {
    let bin = fake_bin(&["xterm"]);
    let env = path_env(bin.path());
    let (result, host) = run_with(
        SSH_LINUX,
        tunneled_ssh_data(),
        &ScriptLimits::default(),
        &env,
        FakeHost::default(),
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        ScriptError::Thrown(
            "The OpenSSH client (ssh) was not found. Install it (package openssh-client).".into()
        )
    );
    assert!(host.tunnels().is_empty());
}

/// Runs a built-in script with fake programs `names` on `PATH` until its apps ended.
async fn run_builtin(
    source: &str,
    data: Value,
    names: &[&str],
) -> (tempfile::TempDir, Arc<FakeHost>) {
    let bin = fake_bin(names);
    let env = path_env(bin.path());
    let (result, host) = run_with(
        source,
        data,
        &ScriptLimits::default(),
        &env,
        FakeHost::default(),
    )
    .await;
    let mut settled = result.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    settled.cleanup().await;
    (bin, host)
}

#[tokio::test]
async fn rdp_linux_tunneled_runs_freerdp() {
    let mut data = tunneled_ssh_data();
    data["protocol"] = json!("rdp");
    data["domain"] = json!("CORP");
    data["password"] = json!("pw");
    data["fullscreen"] = json!(false);
    data["width"] = json!(1600);
    data["height"] = json!(900);
    data["clipboard"] = json!(true);
    let (bin, host) = run_builtin(RDP_LINUX, data, &["xfreerdp", "wlfreerdp"]).await;
    assert_eq!(host.tunnels(), vec![expected_tunnel(None, false)]);
    let args = args_of(bin.path(), "xfreerdp");
    let address = format!("/v:127.0.0.1:{}", host.tunnel_port());
    for expected in [
        address.as_str(),
        "/t:Build box",
        "/u:alice",
        "/d:CORP",
        "/from-stdin:force",
        "/size:1600x900",
    ] {
        assert!(
            args.iter().any(|arg| arg == expected),
            "{expected} not in {args:?}"
        );
    }
    // The password goes to FreeRDP's input, never to its command line.
    assert!(!args.iter().any(|arg| arg.contains("pw")), "{args:?}");
    assert!(
        !bin.path().join("wlfreerdp.args").exists(),
        "the first client found runs"
    );
}

#[tokio::test]
async fn vnc_linux_reads_the_password_from_a_private_file_removed_at_the_end() {
    use std::os::unix::fs::PermissionsExt;
    let data = json!({"name": "Desk", "transport": "direct", "protocol": "vnc",
                      "host": "desk.example.com", "port": 5901, "password": "Pa55w0rd!"});
    let bin = fake_bin(&[]);
    // The viewer keeps a copy of the file it was given and its mode.
    let viewer = bin.path().join("vncviewer");
    std::fs::write(
        &viewer,
        format!(
            r#"#!/bin/sh
printf '%s\n' "$@" > '{dir}/vncviewer.args'
/usr/bin/cp "$2" '{dir}/copy'
/usr/bin/stat -c %a "$2" > '{dir}/mode'
/usr/bin/stat -c %a "$(/usr/bin/dirname "$2")" > '{dir}/dir-mode'
"#,
            dir = bin.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&viewer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (result, _host) = run_with(
        VNC_LINUX,
        data,
        &ScriptLimits::default(),
        &path_env(bin.path()),
        FakeHost::default(),
    )
    .await;
    let mut settled = result.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    let args = args_of(bin.path(), "vncviewer");
    assert_eq!(args[0], "-passwd");
    assert_eq!(args[2], "desk.example.com::5901");
    assert!(!args.iter().any(|arg| arg.contains("Pa55")), "{args:?}");
    let read = |name: &str| std::fs::read(bin.path().join(name)).unwrap();
    // What TigerVNC's `vncpasswd -f` writes for this password.
    assert_eq!(
        read("copy"),
        [0xd9, 0xe4, 0x0b, 0x51, 0x4e, 0x14, 0xd9, 0x93]
    );
    assert_eq!(read("mode"), b"600\n");
    assert_eq!(read("dir-mode"), b"700\n");
    assert!(Path::new(&args[1]).exists());
    settled.cleanup().await;
    assert!(!Path::new(&args[1]).exists(), "removed at the end");
    assert!(!Path::new(&args[1]).parent().unwrap().exists());
}

#[tokio::test]
async fn vnc_linux_direct_runs_a_viewer() {
    let data = json!({"name": "Desk", "transport": "direct", "protocol": "vnc",
                      "host": "desk.example.com", "port": 5901});
    let (bin, host) = run_builtin(VNC_LINUX, data, &["remmina"]).await;
    assert!(host.tunnels().is_empty());
    assert_eq!(
        args_of(bin.path(), "remmina"),
        ["-c", "vnc://desk.example.com:5901"]
    );
}

#[tokio::test]
async fn tcp_linux_tunneled_keeps_the_port_until_closed() {
    let mut data = tunneled_ssh_data();
    data["protocol"] = json!("tcp");
    data["local_port"] = json!(15432);
    let (result, host) = run_default(TCP_LINUX, data).await;
    let settled = result.unwrap();
    assert_eq!(host.tunnels(), vec![expected_tunnel(Some(15432), true)]);
    let windows = host.windows();
    assert_eq!(windows.len(), 1);
    let address = format!("127.0.0.1:{}", host.tunnel_port());
    assert!(
        windows[0].starts_with(&format!("Build box is reachable at {address}.\n")),
        "{windows:?}"
    );
    settled.cleanup().await;
}

#[tokio::test]
async fn tcp_linux_direct_shows_the_address() {
    let data = json!({"name": "DB", "transport": "direct", "protocol": "tcp",
                      "host": "db.example.com", "port": 5432});
    let (result, host) = run_default(TCP_LINUX, data).await;
    result.unwrap();
    assert_eq!(
        host.messages(),
        ["DB: connect your application to db.example.com:5432."]
    );
    assert!(host.windows().is_empty());
}

#[tokio::test]
async fn start_tunnel_refused_rejects_with_the_hosts_message() {
    let (result, _) = run_with(
        TCP_LINUX,
        tunneled_ssh_data(),
        &ScriptLimits::default(),
        &ScriptEnv::default(),
        FakeHost {
            refuse_tunnels: true,
            ..FakeHost::default()
        },
    )
    .await;
    assert_eq!(
        result.unwrap_err(),
        ScriptError::Thrown("The tunnel server tunnel.example.com refused the connection.".into())
    );
}

#[tokio::test]
async fn start_tunnel_options_are_typed() {
    let (settled, host) = run_checks(
        r#"
        import { Tasks } from 'runtime';
        const base = { addr: 'tunnel.example.com', port: 4443, ticket: 'x'.repeat(48) };
        const local = await Tasks.startTunnel({ ...base, startup_time_ms: 0,
            check_certificate: false, local_port: 0, keep_listening_after_timeout: true,
            enable_ipv6: true, shared_secret: { anything: 1 }, tls: false, protocol: 'openuds5' });
        check(local.host === '127.0.0.1' && typeof local.port === 'number', 'endpoint');
        for (const [name, bad] of [['addr', 1], ['port', '4443'], ['port', 70000], ['ticket', null], ['ticket', 'short'],
                ['startup_time_ms', '1'], ['check_certificate', 'yes'], ['local_port', true],
                ['keep_listening_after_timeout', 1], ['enable_ipv6', 'no'], ['tls', 0],
                ['protocol', 'v2']]) {
            let threw = false;
            try { await Tasks.startTunnel({ ...base, [name]: bad }); } catch (e) { threw = true; }
            check(threw, `startTunnel with ${name}=${bad}`);
        }
        let threw = false;
        try { await Tasks.startTunnel('tunnel.example.com'); } catch (e) { threw = e instanceof TypeError; }
        check(threw, 'startTunnel without an object');
        "#,
        json!({}),
    )
    .await;
    let expected = TunnelOptions {
        addr: "tunnel.example.com".into(),
        port: 4443,
        ticket: TicketId::parse(&"x".repeat(48)).unwrap(),
        startup_time_ms: 0,
        check_certificate: false,
        local_port: None,
        keep_listening_after_timeout: true,
        enable_ipv6: true,
        tls: false,
        protocol: TunnelProtocol::Openuds5,
    };
    assert_eq!(host.tunnels(), vec![expected]);
    settled.cleanup().await;
}

#[tokio::test]
async fn process_api() {
    let bin = fake_bin(&["fake-client"]);
    let data = json!({"bin": bin.path()});
    let (settled, _) = run_checks(
        r#"
        import { Process } from 'runtime';
        check(Process === globalThis.Process, 'the module exports the globals');
        const sh = Process.findExecutable('sh');
        check(typeof sh === 'string' && sh.endsWith('/sh'), 'findExecutable(sh)');
        check(Process.findExecutable('no-such-program-portcullis') === null, 'missing program');
        check(Process.findExecutable('fake-client') === null, 'not on PATH');
        check(Process.findExecutable('fake-client', ['/nonexistent', data.bin]) === data.bin + '/fake-client',
              'extraDirs');
        check(Process.findExecutable('fake-client.args', [data.bin]) === null, 'not executable');

        const h = Process.launch('sh', ['-c', 'sleep 30']);
        check(typeof h === 'number' && Process.isRunning(h), 'launch');
        check(await Process.waitTimeout(h, 50) === true, 'waitTimeout runs out');
        Process.kill(h);
        await Process.wait(h);
        check(!Process.isRunning(h), 'killed');
        check(await Process.waitTimeout(h, 5000) === false, 'waitTimeout after the end');
        Process.kill(h);

        const quick = Process.launch(sh, ['-c', 'exit 3']);
        await Process.wait(quick);
        check(!Process.isRunning(quick), 'ended');

        const out = await Process.launchAndWait('sh', ['-c', 'echo "$0 $1"; echo err >&2', 'one two', 'three']);
        check(out.stdout === 'one two three\n' && out.stderr === 'err\n', 'launchAndWait output');
        const big = await Process.launchAndWait('sh', ['-c', 'head -c 3000000 /dev/zero | tr "\\0" a'], 0);
        check(big.stdout.length === 1024 * 1024 && big.stdout[0] === 'a', 'output capped at 1 MiB');
        const lossy = await Process.launchAndWait('printf', ['a\\377b']);
        check(lossy.stdout === 'a\ufffdb', 'lossy UTF-8');
        let rejected = '';
        const started = Date.now();
        try { await Process.launchAndWait('sh', ['-c', 'sleep 30'], 200); } catch (e) { rejected = e.message; }
        check(rejected.includes('did not finish within 200 ms'), 'timeout: ' + rejected);
        check(Date.now() - started < 5000, 'timeout in time');
        try { await Process.launchAndWait('/nonexistent/prog', []); } catch (e) { rejected = e.message; }
        check(rejected.includes('could not be started'), 'cannot start: ' + rejected);

        let threw = '';
        try { Process.launch('no-such-program-portcullis', []); } catch (e) { threw = e.message; }
        check(threw.includes('was not found'), 'launch of a missing program: ' + threw);
        threw = '';
        try { Process.launch('/nonexistent/prog', []); } catch (e) { threw = e.message; }
        check(threw.includes('could not be started'), 'launch failure: ' + threw);

        const t0 = Date.now();
        await Process.sleep(100);
        check(Date.now() - t0 >= 90, 'sleep');
        "#,
        data,
    )
    .await;
    settled.cleanup().await;
}

#[tokio::test]
async fn launched_programs_get_the_scripts_path_and_no_shell() {
    let bin = fake_bin(&["fake-client"]);
    let env = path_env(bin.path());
    let source = format!(
        "{PRELUDE}
        import {{ Process, Tasks }} from 'runtime';
        const h = Process.launch('fake-client', ['a b', '$HOME', '; echo no', '']);
        Tasks.addWaitableApp(h);
        "
    );
    let (result, _) = run_with(
        &source,
        json!({}),
        &ScriptLimits::default(),
        &env,
        FakeHost::default(),
    )
    .await;
    let mut settled = result.unwrap();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    assert_eq!(
        args_of(bin.path(), "fake-client"),
        ["a b", "$HOME", "; echo no", ""]
    );
}

#[tokio::test]
async fn waitable_apps_keep_the_launcher_until_they_end() {
    let (mut settled, _) = run_checks(
        r#"
        import { Process, Tasks } from 'runtime';
        Tasks.addWaitableApp(Process.launch('sh', ['-c', 'sleep 0.5']));
        Tasks.addWaitableApp(Process.launch('sh', ['-c', 'exit 0']));
        let threw = false;
        try { Tasks.addWaitableApp(12345); } catch (e) { threw = true; }
        check(threw, 'unknown handle');
        "#,
        json!({}),
    )
    .await;
    let started = Instant::now();
    assert!(settled.apps_running());
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for_apps())
        .await
        .unwrap();
    assert!(!settled.apps_running());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn file_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = json!({"dir": dir.path()});
    let (settled, host) = run_checks(
        r#"
        import { File } from 'runtime';
        const tmp = File.getTempDirectory();
        check(File.isDirectory(tmp) && !File.isDirectory(tmp + '/no-such-dir-portcullis'), 'temp dir');
        check(File.isDirectory(File.getHomeDirectory()), 'home dir');

        const a = File.createTempFile(null, 'full address:s:host\n', 'rdp');
        const b = File.createTempFile(data.dir, 'é', '.rdp');
        const c = File.createTempFile(data.dir, '', '');
        check(a.startsWith(tmp) && a.endsWith('.rdp') && !a.endsWith('..rdp'), 'temp file name ' + a);
        check(b.startsWith(data.dir + '/') && b.endsWith('.rdp') && !b.endsWith('..rdp'), 'temp file in folder ' + b);
        check(a !== File.createTempFile(null, '', 'rdp'), 'random names');
        check(File.read(a) === 'full address:s:host\n' && File.read(b) === 'é' && File.read(c) === '', 'read');
        check(File.exists(a) && !File.exists(a + '.x'), 'exists');
        check(!File.isExecutable(a) && File.isExecutable('/bin/sh'), 'isExecutable');
        check(File.write(data.dir + '/w.txt', 'one') === true && File.read(data.dir + '/w.txt') === 'one', 'write');
        check(File.write(data.dir + '/w.txt', 'two') && File.read(data.dir + '/w.txt') === 'two', 'replace');
        let threw = false;
        try { File.read(data.dir + '/missing'); } catch (e) { threw = e.message.includes('could not be read'); }
        check(threw, 'read of a missing file');
        threw = false;
        try { File.createTempFile('/nonexistent-portcullis', 'x', 'rdp'); } catch (e) { threw = true; }
        check(threw, 'createTempFile in a missing folder');
        threw = false;
        try { File.createTempFile(null, 'x', '/etc/passwd'); } catch (e) { threw = true; }
        check(threw, 'an extension with a slash');
        Portcullis.message(a);
        Portcullis.message(b);
        "#,
        data,
    )
    .await;
    let paths: Vec<PathBuf> = host.messages().iter().map(PathBuf::from).collect();
    for path in &paths {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    settled.cleanup().await;
    for path in &paths {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    assert!(
        dir.path().join("w.txt").exists(),
        "a written file is the script's business"
    );
}

/// On tokio's paused clock: the 10 s of `addEarlyUnlinkableFile` pass at once.
#[tokio::test(start_paused = true)]
async fn unlinkable_files_are_removed_early_and_late() {
    let dir = tempfile::tempdir().unwrap();
    let early = dir.path().join("early.rdp");
    let late = dir.path().join("late.rdp");
    std::fs::write(&early, "x").unwrap();
    std::fs::write(&late, "x").unwrap();
    let data = json!({"early": early, "late": late});
    let (settled, _) = run_checks(
        "import { Tasks } from 'runtime';
        Tasks.addEarlyUnlinkableFile(data.early);
        Tasks.addLateUnlinkableFile(data.late);
        Tasks.addLateUnlinkableFile(data.late + '.gone');",
        data,
    )
    .await;
    assert!(early.exists() && late.exists());
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(early.exists(), "the early file stays for 10 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !early.exists(),
        "the early file is removed 10 s after the script settled"
    );
    assert!(late.exists(), "the late file stays until the end");
    settled.cleanup().await;
    assert!(!late.exists());
}

#[tokio::test]
async fn file_read_and_write_refuse_a_fifo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Nobody ever writes to or reads from the FIFO: an open or a read would wait forever.
    let limits = ScriptLimits {
        sync_time: Duration::from_secs(2),
        ..ScriptLimits::default()
    };
    let source = format!(
        "{PRELUDE}
        import {{ File }} from 'runtime';
        let read = '';
        try {{ File.read(data.fifo); }} catch (e) {{ read = e.message; }}
        check(read.includes('could not be read'), 'read: ' + read);
        let written = '';
        try {{ File.write(data.fifo, 'x'); }} catch (e) {{ written = e.message; }}
        check(written.includes('could not be written'), 'write: ' + written);
        "
    );
    let (result, _) = crate::support::bounded(
        "File.read of a FIFO",
        Duration::from_secs(30),
        run_with(
            &source,
            json!({"fifo": fifo}),
            &limits,
            &ScriptEnv::default(),
            FakeHost::default(),
        ),
    )
    .await;
    result.unwrap().cleanup().await;
}

#[tokio::test]
async fn launch_and_wait_runs_a_bounded_number_of_programs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    // 24 calls at once, each marking its start and end in one log (appends are atomic).
    let source = format!(
        "{PRELUDE}
        import {{ Process }} from 'runtime';
        const run = () => Process.launchAndWait('sh', ['-c',
            'echo start >> \"$0\"; sleep 0.2; echo end >> \"$0\"; head -c 1048576 /dev/zero',
            data.log]);
        const results = await Promise.all(Array.from({{ length: 24 }}, run));
        check(results.every(r => r.stdout.length === 1048576), 'every output');
        "
    );
    let (result, _) = run_default(&source, json!({"log": log})).await;
    result.unwrap().cleanup().await;
    let mut running = 0usize;
    let mut most = 0usize;
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        match line {
            "start" => running += 1,
            _ => running -= 1,
        }
        most = most.max(running);
    }
    assert_eq!(most, 8, "at most 8 programs of launchAndWait run at once");
}

#[tokio::test]
async fn logger_utils_and_portcullis() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = json!({"open": open.local_addr().unwrap().port(), "closed": closed,
                      "version": env!("CARGO_PKG_VERSION")});
    let (settled, host) = run_checks(
        r#"
        import { Logger, Utils } from 'runtime';
        for (const level of ['trace', 'debug', 'info', 'warn', 'error']) Logger[level](`a ${level} line`);
        const home = File.getHomeDirectory();
        check(Utils.expandVars('$HOME/.ssh ${HOME} $NO_SUCH_VAR_PORTCULLIS %HOME%') ===
              `${home}/.ssh ${home} $NO_SUCH_VAR_PORTCULLIS %HOME%`, 'expandVars');
        check(await Utils.testServer('127.0.0.1', data.open, 0) === true, 'testServer open');
        check(await Utils.testServer('127.0.0.1', data.closed, 200) === false, 'testServer closed');
        const t0 = Date.now();
        await Utils.sleep(50);
        check(Date.now() - t0 >= 40, 'Utils.sleep');
        for (const name of ['cryptProtectData', 'writeHkcu', 'writeHkcuDword', 'readHkcu', 'readHklm']) {
            let message = '';
            try { Utils[name]('x', 'y', 'z'); } catch (e) { message = e.message; }
            check(message.includes('only available on Windows'), name);
        }
        check(Portcullis.version === data.version && Portcullis.os === 'linux', 'Portcullis');
        Portcullis.message('hello');
        await Portcullis.waitUntilClosed('close me');
        check(typeof require === 'undefined' && typeof setTimeout === 'undefined', 'no require, no timers');
        "#,
        data,
    )
    .await;
    assert_eq!(host.messages(), ["hello"]);
    assert_eq!(host.windows(), ["close me"]);
    settled.cleanup().await;
}

#[tokio::test]
async fn arguments_of_the_wrong_type_throw() {
    let (settled, _) = run_checks(
        r#"
        import { Process, Tasks, File, Logger, Utils } from 'runtime';
        const calls = [
            () => Process.findExecutable(1), () => Process.findExecutable('sh', 'dir'),
            () => Process.launch(1, []), () => Process.launch('sh', 'arg'), () => Process.launch('sh'),
            () => Process.isRunning('1'), () => Process.isRunning(-1), () => Process.isRunning(1.5),
            () => Process.kill(99999), () => Process.wait('x'), () => Process.waitTimeout(1, 'x'),
            () => Process.launchAndWait('sh', [1]), () => Process.launchAndWait('sh', [], '5'),
            () => Process.sleep('5'), () => Process.sleep(-1), () => Process.sleep(NaN),
            () => Tasks.addWaitableApp('1'), () => Tasks.addEarlyUnlinkableFile(1),
            () => Tasks.addLateUnlinkableFile({}), () => File.createTempFile(1, '', 'rdp'),
            () => File.createTempFile(null, 1, 'rdp'), () => File.read(1), () => File.write('x', 1),
            () => File.exists(1), () => File.isExecutable(null), () => File.isDirectory(),
            () => Logger.info(1), () => Utils.expandVars(1), () => Utils.testServer('h', '1', 0),
            () => Utils.testServer('h', 1, -5), () => Utils.sleep('1'), () => Portcullis.message(1),
            () => Portcullis.waitUntilClosed(),
        ];
        calls.forEach((call, i) => {
            let threw = false;
            try { call(); } catch (e) { threw = e instanceof Error; }
            check(threw, `call ${i}: ${call}`);
        });
        "#,
        json!({}),
    )
    .await;
    settled.cleanup().await;
}

#[tokio::test]
async fn data_is_frozen() {
    let data = json!({"name": "x", "tunnel": {"host": "h", "list": [1, {"deep": true}]}});
    let (settled, _) = run_checks(
        r#"
        const attempts = [
            () => { data.name = 'y'; }, () => { data.extra = 1; }, () => { delete data.name; },
            () => { data.tunnel.host = 'evil'; }, () => { data.tunnel.list.push(2); },
            () => { data.tunnel.list[1].deep = false; }, () => { data = {}; },
            () => { globalThis.data = {}; }, () => { Process = {}; }, () => { Process.launch = null; },
        ];
        attempts.forEach((attempt, i) => {
            let threw = false;
            try { attempt(); } catch (e) { threw = e instanceof TypeError; }
            check(threw, `attempt ${i}: ${attempt}`);
        });
        check(data.name === 'x' && data.tunnel.host === 'h' && data.tunnel.list[1].deep === true, 'unchanged');
        check(Object.isFrozen(data.tunnel.list[1]), 'deep freeze');
        "#,
        data,
    )
    .await;
    settled.cleanup().await;
}

#[tokio::test]
async fn a_script_that_throws_fails_with_its_message_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.txt");
    std::fs::write(&late, "x").unwrap();
    let (result, host) = run_default(
        "import { File, Process, Tasks } from 'runtime';
        const temp = File.createTempFile(null, 'secret', 'rdp');
        Tasks.addLateUnlinkableFile(data.late);
        const h = Process.launch('sh', ['-c', 'sleep 30']);
        Portcullis.message(String(h));
        Portcullis.message(temp);
        await Process.sleep(10);
        throw new Error('The RDP client <b>could not</b> start.');",
        json!({"late": late}),
    )
    .await;
    assert_eq!(
        result.unwrap_err(),
        ScriptError::Thrown("The RDP client <b>could not</b> start.".into())
    );
    let temp = PathBuf::from(&host.messages()[1]);
    assert!(!temp.exists(), "the temp file is removed");
    assert!(!late.exists(), "the late file is removed");

    let (result, _) = run_default("throw 'a plain string';", json!({})).await;
    assert_eq!(
        result.unwrap_err(),
        ScriptError::Thrown("a plain string".into())
    );
    let (result, _) = run_default("import { Nope } from 'runtime';", json!({})).await;
    assert!(matches!(result.unwrap_err(), ScriptError::Thrown(_)));
    let (result, _) = run_default("import fs from 'fs';", json!({})).await;
    assert!(matches!(result.unwrap_err(), ScriptError::Thrown(m) if m.contains("runtime")));
    let (result, _) = run_default("await new Promise(() => {});", json!({})).await;
    assert!(matches!(result.unwrap_err(), ScriptError::Thrown(m) if m.contains("never happens")));
    let (result, _) = run_default("this is not javascript", json!({})).await;
    assert!(matches!(result.unwrap_err(), ScriptError::Thrown(_)));
}

#[tokio::test]
async fn memory_limit() {
    let limits = ScriptLimits {
        memory_bytes: 16 * 1024 * 1024,
        ..ScriptLimits::default()
    };
    for source in [
        "const a = []; while (true) a.push('x'.repeat(1024) + a.length);",
        "import { Process } from 'runtime'; await Process.sleep(1);
         const a = []; while (true) a.push({ n: a.length, s: 'y'.repeat(100) + a.length });",
    ] {
        let started = Instant::now();
        let (result, _) = run_with(
            source,
            json!({}),
            &limits,
            &ScriptEnv::default(),
            FakeHost::default(),
        )
        .await;
        assert_eq!(result.unwrap_err(), ScriptError::MemoryLimit, "{source}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}

#[tokio::test]
async fn time_limit() {
    let limits = ScriptLimits {
        sync_time: Duration::from_millis(500),
        ..ScriptLimits::default()
    };
    for source in [
        "while (true) {}",
        "import { Process } from 'runtime'; await Process.sleep(1); while (true) {}",
        "try { while (true) {} } catch (e) {} while (true) {}",
        "while (true) { await null; }",
    ] {
        let started = Instant::now();
        let (result, _) = run_with(
            source,
            json!({}),
            &limits,
            &ScriptEnv::default(),
            FakeHost::default(),
        )
        .await;
        assert_eq!(result.unwrap_err(), ScriptError::TimeLimit, "{source}");
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(1500),
            "{source}: {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn the_time_limit_restarts_at_each_await() {
    let limits = ScriptLimits {
        sync_time: Duration::from_millis(400),
        ..ScriptLimits::default()
    };
    let source = "import { Utils } from 'runtime';
        for (let i = 0; i < 4; i++) {
            const end = Date.now() + 250;
            while (Date.now() < end) {}
            await Utils.sleep(1);
        }";
    let (result, _) = run_with(
        source,
        json!({}),
        &limits,
        &ScriptEnv::default(),
        FakeHost::default(),
    )
    .await;
    result.unwrap().cleanup().await;
}

#[test]
fn run_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let host: Arc<dyn ScriptHost> = Arc::new(FakeHost::default());
    let data = json!({});
    let limits = ScriptLimits::default();
    let env = ScriptEnv::default();
    let future = run("", &data, host, &limits, &env);
    assert_send(&future);
}
