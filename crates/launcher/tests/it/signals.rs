//! Every way a running launcher ends early — SIGTERM, SIGHUP, SIGINT (Ctrl-C), a panic in
//! one of its tasks or in the launch itself, its script failing, its tunnel lost — measured on the real binary with
//! a local connection open through the tunnel: the launcher sends `EndSession` (the tunnel
//! server ends the session for that reason), kills the program its script started, closes
//! the local connection and exits with the documented code.

use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{Exit, LauncherProcess, process_ended, read_line_file};
use crate::support::{Setup, Stack, bounded};

/// How the script ends on its own, if at all.
#[derive(Clone, Copy)]
enum ScriptEnd {
    /// It waits in `Portcullis.waitUntilClosed` (a tcp service's window).
    WaitsForTheWindow,
    /// It throws once the file `trigger` exists.
    ThrowsAtTrigger,
}

/// A script that starts a long program (its pid written to `pid`), opens the tunnel (in
/// TLS with `tls`), writes the local address to `address` and then ends as `end` says.
fn script(dir: &Path, end: ScriptEnd, tls: bool) -> String {
    let path = |name: &str| serde_json::to_string(&dir.join(name).display().to_string()).unwrap();
    let ending = match end {
        ScriptEnd::WaitsForTheWindow => {
            "await Portcullis.waitUntilClosed(`reachable at ${local.host}:${local.port}`);"
                .to_owned()
        }
        ScriptEnd::ThrowsAtTrigger => format!(
            "while (!File.exists({trigger})) await Process.sleep(20);
throw new Error('the client program failed');",
            trigger = path("trigger")
        ),
    };
    format!(
        r"import {{ File, Process, Tasks }} from 'runtime';
Process.launch('sh', ['-c', 'echo $$ > ' + {pid} + '; exec sleep 300']);
const t = data.tunnel;
const local = await Tasks.startTunnel({{
    addr: t.host, port: t.port, ticket: t.ticket, check_certificate: t.verify_ssl,
    tls: {tls}, protocol: t.protocol, keep_listening_after_timeout: true,
}});
File.write({address}, `${{local.host}}:${{local.port}}\n`);
{ending}
",
        pid = path("pid"),
        address = path("address"),
    )
}

/// A launch in its own process (returned beside it) with a local connection open through
/// the tunnel.
struct Running {
    stack: Stack,
    connection: TcpStream,
    program_pid: String,
    dir: TempDir,
    _home: TempDir,
}

async fn running(end: ScriptEnd, setup: Setup, env: &[(&str, &str)]) -> (Running, LauncherProcess) {
    running_trusting(end, setup, env, CaGiven::OnTheCommandLine).await
}

/// How the launcher learns the broker's (and tunnel server's) CA.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CaGiven {
    /// `--ca-file`.
    OnTheCommandLine,
    /// Installed in the operating system's store (`SSL_CERT_FILE` points the system's
    /// certificate lookup at it).
    InTheOsStore,
}

async fn running_trusting(
    end: ScriptEnd,
    setup: Setup,
    env: &[(&str, &str)],
    ca_given: CaGiven,
) -> (Running, LauncherProcess) {
    let dir = TempDir::new().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let tls = setup.tunnel_tls;
    std::fs::write(scripts.join("tcp-linux.js"), script(dir.path(), end, tls)).unwrap();
    let stack = Stack::with(Setup {
        scripts_dir: Some(scripts),
        ..setup
    })
    .await;
    let home = TempDir::new().unwrap();
    let link = stack.link().await;
    let ca = crate::support::ca_file(&stack.dir).display().to_string();
    let fingerprint = stack.fingerprint();
    let mut args = vec!["--trust-fingerprint", &fingerprint, &link];
    let mut env = env.to_vec();
    match ca_given {
        CaGiven::OnTheCommandLine => args.splice(0..0, ["--ca-file", &ca]).for_each(drop),
        CaGiven::InTheOsStore => env.push(("SSL_CERT_FILE", &ca)),
    }
    let launcher = LauncherProcess::spawn(args, home.path(), &env);
    let address = read_line_file(&dir.path().join("address")).await;
    let program_pid = read_line_file(&dir.path().join("pid")).await;
    let mut connection = TcpStream::connect(address.as_str()).await.unwrap();
    connection.write_all(b"through the tunnel").await.unwrap();
    let mut back = [0u8; 18];
    bounded(
        "the echo",
        Duration::from_secs(20),
        connection.read_exact(&mut back),
    )
    .await
    .unwrap();
    assert_eq!(&back, b"through the tunnel");
    let running = Running {
        stack,
        connection,
        program_pid,
        dir,
        _home: home,
    };
    (running, launcher)
}

/// The launcher ended the session and what the script started, and exited with `code`.
async fn assert_ended_everything(mut running: Running, exit: &Exit, code: i32) {
    assert_eq!(exit.code, Some(code), "{exit:?}");
    running.stack.end_session_reached_the_tunnel_server().await;
    process_ended(&running.program_pid).await;
    let mut rest = Vec::new();
    let read = bounded(
        "the local connection's end",
        Duration::from_secs(10),
        running.connection.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_err() || rest.is_empty(), "{read:?}");
}

async fn a_signal_ends_the_session(signal: Signal, sentence: &str) {
    let (running, launcher) = running(ScriptEnd::WaitsForTheWindow, Setup::default(), &[]).await;
    launcher.signal(signal);
    let exit = launcher.exit().await;
    assert!(exit.stderr.contains(sentence), "{exit:?}");
    assert_ended_everything(running, &exit, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_session_and_the_programs_with_exit_1() {
    a_signal_ends_the_session(Signal::TERM, "stopped (SIGTERM)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_ends_the_session_and_the_programs_with_exit_1() {
    a_signal_ends_the_session(Signal::HUP, "stopped (SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_session_and_the_programs_with_exit_1() {
    a_signal_ends_the_session(Signal::INT, "stopped (Ctrl-C)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_does_not_cut_the_cleanup_short() {
    let (running, launcher) = running(ScriptEnd::WaitsForTheWindow, Setup::default(), &[]).await;
    launcher.signal(Signal::TERM);
    // Apart, so that the first to arrive is SIGTERM (pending signals of one kind merge).
    tokio::time::sleep(Duration::from_millis(20)).await;
    launcher.signal(Signal::INT);
    launcher.signal(Signal::TERM);
    let exit = launcher.exit().await;
    assert!(exit.stderr.contains("stopped (SIGTERM)"), "{exit:?}");
    assert_ended_everything(running, &exit, 1).await;
}

/// A debug build's injected `fault` (a panic at SIGUSR1) ends everything with exit 1.
async fn a_panic_ends_the_session(fault: &str) {
    let (running, launcher) = running(
        ScriptEnd::WaitsForTheWindow,
        Setup::default(),
        &[("PORTCULLIS_LAUNCHER_FAULT", fault)],
    )
    .await;
    launcher.signal(Signal::USR1);
    let exit = launcher.exit().await;
    assert!(exit.stderr.contains("internal error"), "{exit:?}");
    assert_ended_everything(running, &exit, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_ends_the_session_and_the_programs_with_exit_1() {
    a_panic_ends_the_session("panic-on-sigusr1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_launch_itself_ends_the_session_and_the_programs_with_exit_1() {
    a_panic_ends_the_session("panic-in-launch-on-sigusr1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_ends_the_session_and_the_programs_with_exit_7() {
    let (running, launcher) = running(ScriptEnd::ThrowsAtTrigger, Setup::default(), &[]).await;
    std::fs::write(running.dir.path().join("trigger"), "").unwrap();
    let exit = launcher.exit().await;
    assert!(
        exit.stderr.contains("the client program failed"),
        "{exit:?}"
    );
    assert_ended_everything(running, &exit, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tunnel_ends_the_session_and_the_programs_with_exit_8() {
    let (running, launcher) = running(
        ScriptEnd::WaitsForTheWindow,
        Setup {
            cuttable: true,
            ..Setup::default()
        },
        &[],
    )
    .await;
    // The tunnel server becomes unreachable for every resume the launcher tries (8); the
    // session's hold still gets through, and carries the launcher's `EndSession`.
    let cutter = running.stack.cutter.as_ref().unwrap();
    cutter.refuse_next(8);
    cutter.cut_all();
    let exit = launcher.exit().await;
    assert!(exit.stderr.contains("The tunnel failed"), "{exit:?}");
    assert_ended_everything(running, &exit, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_in_the_os_store_is_trusted_for_the_tunnel_as_for_the_broker() {
    // No --ca-file and no CA pinned: the broker connection and the tunnel's TLS both trust
    // the CA installed in the operating system, and the echo goes through.
    let setup = Setup {
        tunnel_tls: true,
        ..Setup::default()
    };
    let (running, launcher) = running_trusting(
        ScriptEnd::WaitsForTheWindow,
        setup,
        &[],
        CaGiven::InTheOsStore,
    )
    .await;
    launcher.signal(Signal::TERM);
    let exit = launcher.exit().await;
    assert_ended_everything(running, &exit, 1).await;
}
