//! `startTunnel`'s `local_port` and `enable_ipv6`, and a launcher asked to stop: scripts
//! from the broker's `scripts_dir` replace `tcp-linux.js`.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_broker::store::{Protocol, Transport};
use portcullis_launcher::failure::Kind;
use portcullis_launcher::launch::{launch, launch_until};
use portcullis_launcher::stop::StopReason;
use portcullis_launcher::ui::Ui;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::support::{Setup, Stack, TestUi, bounded, free_port};

/// A stack whose broker serves `script` as `tcp-linux.js`.
async fn stack_with_tcp_script(dir: &Path, script: &str) -> Stack {
    let scripts = dir.join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(scripts.join("tcp-linux.js"), script).unwrap();
    Stack::with(Setup {
        scripts_dir: Some(scripts),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_tunnel_listens_on_the_local_port_and_address_the_script_asks_for() {
    let dir = TempDir::new().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    // The second endpoint on the same port is refused, naming the port.
    let script = format!(
        r"import {{ Tasks }} from 'runtime';
const t = data.tunnel;
const options = {{
    addr: t.host, port: t.port, ticket: t.ticket, check_certificate: t.verify_ssl,
    tls: t.tls, protocol: t.protocol, local_port: {port}, enable_ipv6: true,
}};
const local = await Tasks.startTunnel(options);
let taken = null;
try {{ await Tasks.startTunnel(options); }} catch (e) {{ taken = e.message; }}
await Portcullis.waitUntilClosed(JSON.stringify({{ host: local.host, port: local.port, taken }}));
"
    );
    let stack = stack_with_tcp_script(dir.path(), &script).await;
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link().await, &home);
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let shown: Value = serde_json::from_str(&ui.first_message().await).unwrap();
    assert_eq!(shown["host"], "::1", "{shown}");
    assert_eq!(shown["port"], port, "{shown}");
    let taken = shown["taken"]
        .as_str()
        .expect("the second endpoint was refused");
    assert!(
        taken.contains(&format!("local port {port} is taken")),
        "{taken}"
    );

    let mut stream = TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
        .await
        .unwrap();
    stream.write_all(b"over ::1").await.unwrap();
    let mut back = [0u8; 8];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"over ::1");
    drop(stream);
    ui.disconnect();
    bounded("the launcher's end", Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launcher_asked_to_stop_kills_the_programs_it_started() {
    let dir = TempDir::new().unwrap();
    let pid_file = dir.path().join("pid");
    let child_file = dir.path().join("child");
    // A waitable program that would run for minutes, with a child of its own (as a
    // terminal runs ssh), and tells both process ids.
    let script = format!(
        r"import {{ Process, Tasks }} from 'runtime';
const app = Process.launch('sh', ['-c',
    'sleep 300 & echo $! > ' + {child_file} + '; echo $$ > ' + {pid_file} + '; wait']);
Tasks.addWaitableApp(app);
",
        pid_file = serde_json::to_string(&pid_file.display().to_string()).unwrap(),
        child_file = serde_json::to_string(&child_file.display().to_string()).unwrap()
    );
    let stack = stack_with_tcp_script(dir.path(), &script).await;
    let service = stack
        .add_service(
            "direct",
            Protocol::Tcp,
            Transport::Direct,
            SocketAddr::from(([127, 0, 0, 1], free_port())),
        )
        .await;
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link_to(service).await, &home);
    let stop = Arc::new(Notify::new());
    let stopper = Arc::clone(&stop);
    let running = tokio::spawn(launch_until(
        options,
        Arc::new(TestUi::default()),
        async move {
            stopper.notified().await;
            StopReason::Terminate
        },
    ));
    let pid = bounded("the program's pid", Duration::from_secs(30), async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                if text.ends_with('\n') {
                    break text.trim().to_owned();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let proc_dir = Path::new("/proc").join(&pid);
    assert!(proc_dir.exists(), "the program runs");

    // As SIGTERM would.
    stop.notify_one();
    let failure = bounded("the launcher's end", Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Internal, "{failure}");
    assert!(failure.message.contains("stopped"), "{failure}");
    // The launcher waited for the killed program to end (and reaped it).
    assert!(!proc_dir.exists(), "the program {pid} still runs");
    // Its child was in its process group: killed too (gone, or a zombie no one reaped).
    let child = std::fs::read_to_string(&child_file).unwrap();
    crate::process::process_ended(child.trim()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_tunnel_server_ends_closes_the_listener_and_says_why_in_one_sentence() {
    let stack = Stack::with(Setup {
        max_session_secs: Some(3),
        ..Setup::default()
    })
    .await;
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link().await, &home);
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let local = crate::support::local_address(&ui.first_message().await);
    let mut stream = TcpStream::connect(local).await.unwrap();
    stream.write_all(b"before the end").await.unwrap();
    let mut back = [0u8; 14];
    stream.read_exact(&mut back).await.unwrap();
    drop(stream);
    // The tunnel server ends the session at its maximum duration: the launcher says why,
    // closes its listener and ends by itself, as if the user had disconnected.
    bounded("the launcher's end", Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
    let messages = ui.messages();
    let said = messages
        .iter()
        .find(|message| message.starts_with("The connection has ended"))
        .unwrap_or_else(|| panic!("no word of the end: {messages:?}"));
    assert!(said.contains("longest time"), "{said}");
    assert_eq!(
        said.matches(". ").count() + said.matches("; ").count(),
        1,
        "{said}"
    );
    assert!(
        TcpStream::connect(local).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_an_administrator_ends_closes_the_connection_and_exits_with_its_own_code() {
    let stack = Stack::start().await;
    let home = TempDir::new().unwrap();
    let options = stack.trusting_options(stack.link().await, &home);
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let local = crate::support::local_address(&ui.first_message().await);
    let mut stream = TcpStream::connect(local).await.unwrap();
    stream.write_all(b"before the end").await.unwrap();
    let mut back = [0u8; 14];
    stream.read_exact(&mut back).await.unwrap();

    // An administrator ends the connection at the broker (what the admin page does).
    let state = &stack.broker.state;
    let now = state.now();
    let live = state.store.live_sessions(now, 10).await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    let ending = state
        .store
        .request_session_end(&live[0].reference, now, "root")
        .await
        .unwrap()
        .unwrap();
    state.control.wake(ending.tunnel_server_id);

    // The open connection ends, and the launcher says who ended it, with its own code.
    let mut rest = Vec::new();
    bounded(
        "the connection's end",
        Duration::from_secs(20),
        stream.read_to_end(&mut rest),
    )
    .await
    .ok();
    let failure = bounded("the launcher's end", Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(failure.kind, Kind::EndedByAdministrator, "{failure}");
    assert_eq!(failure.kind.exit_code(), 12);
    assert_eq!(failure.message, "The administrator ended this connection.");
    // Said once, by the failure, not also as a message.
    assert!(
        !ui.messages()
            .iter()
            .any(|message| message.contains("administrator")),
        "{:?}",
        ui.messages()
    );
    assert!(
        TcpStream::connect(local).await.is_err(),
        "the listener is closed"
    );
}
