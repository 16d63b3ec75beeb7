//! The launcher end to end on loopback: a real broker (HTTPS with its self-signed
//! certificate, SQLite), a real tunnel server, TCP targets and a real `sshd`, the built-in
//! scripts and test scripts from the broker's `scripts_dir`; the user's side is a test UI
//! that answers the prompts. And the script runtime on its own (`script`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod credentials;
mod ending;
mod output;
mod process;
mod resume;
mod script;
mod signals;
mod ssh;
mod support;
mod tampered;
mod window;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_launcher::failure::Kind;
use portcullis_launcher::launch::{LaunchOptions, launch};
use portcullis_launcher::paths::Dirs;
use portcullis_launcher::script::{ScriptEnv, ScriptLimits};
use portcullis_launcher::ui::Ui;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{Stack, TestUi, free_port, local_address};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunneled_tcp_service_runs_through_the_launcher_and_is_accounted() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let link = stack.link().await;
    let mut options = stack.options(link, &home);
    options.trust_fingerprint = Some(stack.fingerprint().to_uppercase());
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));

    let message = ui.first_message().await;
    let local = local_address(&message);
    for round in 0..4u8 {
        let mut stream = TcpStream::connect(local).await.unwrap();
        let data = vec![round; 100_000];
        stream.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
    }
    // The user presses Disconnect: the launcher ends its session and returns.
    ui.disconnect();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the launcher ends")
        .unwrap()
        .unwrap();
    // The broker pinned on first contact, and recorded the session's bytes.
    let trust = std::fs::read_to_string(home.path().join("trust.json")).unwrap();
    assert!(trust.contains(&stack.fingerprint()));
    let stopped = stack.tunnel_stopped().await;
    assert_eq!(stopped["recv"], 400_000, "{stopped}");
    assert_eq!(stopped["sent"], 400_000, "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_failures_and_bad_links_get_their_own_exit_codes() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let ui: Arc<dyn Ui> = Arc::new(TestUi::default());

    // A link that is not one.
    let bad = launch(
        stack.options("https://example.com/x".into(), &home),
        Arc::clone(&ui),
    )
    .await;
    assert_eq!(bad.unwrap_err().kind, Kind::Usage);

    // An unknown broker, not confirmed: refused, nothing exchanged.
    let link = stack.link().await;
    let untrusted = launch(stack.options(link.clone(), &home), Arc::clone(&ui)).await;
    let failure = untrusted.unwrap_err();
    assert_eq!(failure.kind, Kind::Untrusted, "{}", failure.message);
    assert!(
        failure.message.contains(&stack.fingerprint()),
        "{}",
        failure.message
    );

    // A fingerprint that does not match: another key than the one expected.
    let mut options = stack.options(link.clone(), &home);
    options.trust_fingerprint = Some("00".repeat(32));
    assert_eq!(
        launch(options, Arc::clone(&ui)).await.unwrap_err().kind,
        Kind::KeyChanged
    );

    // A pinned key that is not the broker's: the payload does not verify, and the message
    // says the key changed.
    let other = portcullis_proto::payload::SigningKey::generate().unwrap();
    let mut store =
        portcullis_launcher::trust::TrustStore::load(&home.path().join("trust.json")).unwrap();
    let host = link
        .trim_start_matches("udssv2://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    store.pin(&host, other.verifying_key().clone()).unwrap();
    store.save().unwrap();
    let changed = launch(stack.options(link, &home), Arc::clone(&ui))
        .await
        .unwrap_err();
    assert_eq!(changed.kind, Kind::KeyChanged);
    assert_eq!(changed.kind.exit_code(), 9);
    assert!(
        changed.message.contains("different key"),
        "{}",
        changed.message
    );

    // A used or expired ticket: refused by the broker, start again from the portal.
    store.remove(&host);
    store.save().unwrap();
    let mut options = stack.options(
        format!("udssv2://{host}/{}/scrambler", "A".repeat(48)),
        &home,
    );
    options.trust_fingerprint = Some(stack.fingerprint());
    let refused = launch(options, Arc::clone(&ui)).await.unwrap_err();
    assert_eq!(refused.kind, Kind::Refused, "{}", refused.message);
    assert!(refused.message.contains("portal"), "{}", refused.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_its_own_failure() {
    let home = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let options = LaunchOptions {
        url: format!("udssv2://{closed}/{}/scrambler", "A".repeat(48)),
        trust_fingerprint: None,
        ca_file: None,
        dirs: Dirs {
            config: home.path().to_owned(),
            state: home.path().to_owned(),
        },
        max_wait: Duration::from_secs(5),
        limits: ScriptLimits::default(),
        env: ScriptEnv::default(),
    };
    let failure = launch(options, Arc::new(TestUi::default()))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, Kind::Unreachable, "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparing_service_is_retried_until_the_target_listens() {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let service = stack.checked_service(target).await;
    let link = stack.link_to(service).await;
    // The target starts listening a few seconds after the launch.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let listener = TcpListener::bind(target).await.unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let options = stack.trusting_options(link, &home);
    let ui = Arc::new(TestUi::default());
    let running = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = ui.messages().iter().any(|m| m.contains("127.0.0.1:"));
        if shown {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            ui.messages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = ui.messages();
    assert!(
        messages.iter().any(|m| m.starts_with("progress")),
        "the launcher showed the broker's progress: {messages:?}"
    );
    ui.disconnect();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the launcher ends")
        .unwrap()
        .unwrap();
}
