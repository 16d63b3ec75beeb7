//! Tampered connection instructions at the launcher: a fake broker (HTTPS with a
//! self-signed certificate, the pinned broker key) answers the ticket exchange with a
//! correctly sealed payload of which one part was swapped or changed. Each is refused as
//! a verification failure naming what failed, and the script never runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_launcher::failure::{Failure, Kind};
use portcullis_launcher::launch::{LaunchOptions, launch};
use portcullis_launcher::paths::Dirs;
use portcullis_launcher::script::{ScriptEnv, ScriptLimits};
use portcullis_launcher::trust::TrustStore;
use portcullis_proto::api::{Answer, BROKER_KEY_PATH, BrokerKey, TicketRequest};
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::{self, BuildOptions, LogSettings, SignedScript, SigningKey};
use portcullis_proto::{Scrambler, TicketId};
use portcullis_tunnel::config::TunnelTls;
use portcullis_tunnel::tls::TlsAcceptor;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{TestUi, bounded};

/// What the fake broker changes in a good answer.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// The script signature of another script, by the same key.
    ScriptSignature,
    /// The payload signature of another payload, by the same key.
    PayloadSignature,
    /// One base64 character of the encrypted payload.
    Ciphertext,
    /// Correctly signed params whose `tunnel` member holds no valid ticket.
    TunnelMember,
}

/// A broker that answers the ticket exchange itself, signing with `key`.
struct FakeBroker {
    addr: SocketAddr,
    ca_file: PathBuf,
}

impl FakeBroker {
    async fn start(dir: &Path, key: Arc<SigningKey>, tamper: Tamper, marker: PathBuf) -> Self {
        let (cert, private) =
            portcullis_broker::tls::ensure_self_signed(dir, &["127.0.0.1".into()]).unwrap();
        let acceptor = TlsAcceptor::new(&TunnelTls {
            cert: Some(cert.clone()),
            key: Some(private),
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
                let key = Arc::clone(&key);
                let marker = marker.clone();
                tokio::spawn(async move {
                    let (head, body) = read_request(&mut stream).await;
                    let answer = answer(&head, &body, &key, tamper, &marker);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        answer.len()
                    );
                    stream.write_all(response.as_bytes()).await.unwrap();
                    stream.write_all(&answer).await.unwrap();
                    stream.shutdown().await.ok();
                });
            }
        });
        Self {
            addr,
            ca_file: cert,
        }
    }
}

/// One HTTP/1.1 request: its head and its body (by `content-length`).
async fn read_request(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        assert!(data.len() < 64 * 1024, "an HTTP head of at most 64 KiB");
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended inside its head");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.trim().parse().unwrap());
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended inside its body");
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

/// The fake broker's answer to the request `head`/`body`.
fn answer(head: &str, body: &[u8], key: &SigningKey, tamper: Tamper, marker: &Path) -> Vec<u8> {
    let path = head.split(' ').nth(1).unwrap();
    if path == BROKER_KEY_PATH {
        return Answer::Result(BrokerKey::new(key.verifying_key()))
            .to_json()
            .unwrap();
    }
    let ticket = path
        .strip_prefix("/uds/rest/client/")
        .and_then(|rest| rest.strip_suffix("/ticket"))
        .unwrap();
    let ticket = TicketId::parse(ticket).unwrap();
    let request = TicketRequest::from_json(body).unwrap().check().unwrap();
    let options = BuildOptions {
        ticket: &ticket,
        client_key: &request.client_key,
        payload_signature: request.wants_payload_signature(),
    };
    // Were it run, the script would leave `marker` behind.
    let script = format!(
        "import {{ File }} from 'runtime';\nFile.write({}, 'ran');\n",
        serde_json::to_string(&marker.display().to_string()).unwrap()
    );
    let build = |script: &str, params: &str| -> Value {
        let signed = SignedScript::sign(script.as_bytes().to_vec(), key).unwrap();
        let built = payload::build(
            &signed,
            params.as_bytes(),
            &LogSettings::default(),
            key,
            &options,
        )
        .unwrap();
        serde_json::from_slice(&built).unwrap()
    };
    let params = match tamper {
        Tamper::TunnelMember => {
            r#"{"protocol":"tcp","transport":"tunneled","tunnel":{"host":"127.0.0.1","port":1,
                "ticket":"not-a-ticket","startup_time":0,"verify_ssl":true,"tls":false,
                "protocol":"v1"}}"#
        }
        _ => r#"{"protocol":"tcp","transport":"direct"}"#,
    };
    let mut good = build(&script, params);
    let other = build(
        "// another script\n",
        r#"{"protocol":"tcp","name":"other"}"#,
    );
    match tamper {
        Tamper::ScriptSignature => good["signature"] = other["signature"].clone(),
        Tamper::PayloadSignature => {
            good["payload_signature"] = other["payload_signature"].clone();
        }
        Tamper::Ciphertext | Tamper::TunnelMember => {}
    }
    let plaintext = serde_json::to_vec(&good).unwrap();
    let (mut envelope, _secret) = Envelope::seal(&request.client_key, &ticket, &plaintext).unwrap();
    if let Tamper::Ciphertext = tamper {
        // A character in the middle: still valid base64, one changed byte.
        let middle = envelope.data.len() / 2;
        let changed = if envelope.data.as_bytes()[middle] == b'A' {
            "B"
        } else {
            "A"
        };
        envelope.data.replace_range(middle..=middle, changed);
    }
    Answer::Result(envelope).to_json().unwrap()
}

/// A launch against a fake broker that applies `tamper`: its failure, and whether the
/// script ran.
async fn launch_tampered(tamper: Tamper) -> (Failure, bool) {
    let dir = TempDir::new().unwrap();
    let key = Arc::new(SigningKey::generate().unwrap());
    let marker = dir.path().join("script-ran");
    let broker = FakeBroker::start(dir.path(), Arc::clone(&key), tamper, marker.clone()).await;
    let home = TempDir::new().unwrap();
    let host = broker.addr.to_string();
    // The launcher already trusts this broker's key: only the answer is wrong.
    let mut trust = TrustStore::load(&home.path().join("trust.json")).unwrap();
    trust.pin(&host, key.verifying_key().clone()).unwrap();
    trust.save().unwrap();
    let ticket = TicketId::generate().unwrap();
    let scrambler = Scrambler::generate().unwrap();
    let options = LaunchOptions {
        url: format!("udssv2://{host}/{}/{}", ticket.expose(), scrambler.as_str()),
        trust_fingerprint: None,
        ca_file: Some(broker.ca_file.clone()),
        dirs: Dirs {
            config: home.path().to_owned(),
            state: home.path().to_owned(),
        },
        max_wait: std::time::Duration::from_secs(5),
        limits: ScriptLimits::default(),
        env: ScriptEnv::default(),
    };
    let result = bounded(
        "a tampered launch",
        std::time::Duration::from_secs(30),
        launch(options, Arc::new(TestUi::default())),
    )
    .await;
    (result.unwrap_err(), marker.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_script_signature_is_refused_before_anything_runs() {
    let (failure, ran) = launch_tampered(Tamper::ScriptSignature).await;
    assert_eq!(failure.kind, Kind::ScriptSignature, "{failure}");
    assert_eq!(failure.kind.exit_code(), 10);
    assert!(failure.message.contains("script signature"), "{failure}");
    assert!(!ran, "the script ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_payload_signature_is_refused_before_anything_runs() {
    let (failure, ran) = launch_tampered(Tamper::PayloadSignature).await;
    assert_eq!(failure.kind, Kind::PayloadSignature, "{failure}");
    assert_eq!(failure.kind.exit_code(), 11);
    assert!(failure.message.contains("payload signature"), "{failure}");
    assert!(!ran, "the script ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_is_refused_before_anything_runs() {
    let (failure, ran) = launch_tampered(Tamper::Ciphertext).await;
    assert_eq!(failure.kind, Kind::Tampered, "{failure}");
    assert_eq!(failure.kind.exit_code(), 6);
    assert!(failure.message.contains("does not decrypt"), "{failure}");
    assert!(!ran, "the script ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_tunnel_member_is_refused_before_anything_runs() {
    let (failure, ran) = launch_tampered(Tamper::TunnelMember).await;
    assert_eq!(failure.kind, Kind::Tampered, "{failure}");
    assert_eq!(failure.kind.exit_code(), 6);
    assert!(failure.message.contains("the tunnel member"), "{failure}");
    assert!(!ran, "the script ran");
}
