//! Two `portcullis broker` processes on one PostgreSQL database: a tunnel ticket is redeemed
//! exactly once when 64 tunnel-server requests race for it, half to each broker
//! (docs/protocol.md §9, difference 2).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_broker::model::{Protocol, Transport};
use portcullis_broker::password::hash_password;
use portcullis_broker::store::{
    NewClientTicket, NewService, NewTunnelServer, Readiness, Store, TokenHash,
};
use portcullis_broker::tickets::crypto::ticket_hash;
use portcullis_proto::api::{Answer, ClientInfo, StartProof, TicketRequest, TunnelRequest};
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::SignaturePolicy;
use portcullis_proto::tunnel::{compute_open_proof, derive_tunnel_secret};
use portcullis_proto::{Scrambler, TicketId, payload};

use portcullis_testkit::postgres;

use crate::support::operator::free_port;
use crate::support::wait_healthy;

const TOKEN: &str = "sk-two-brokers-test-token-0123456789abcdefghij";

struct Broker {
    child: Child,
    url: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(dir: &Path, name: &str, database_url: &str) -> Broker {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\ndatabase_url = {database_url:?}\n\
             public_url = \"https://broker.test:{port}\"\n\
             [tls]\nmode = \"off\"\n",
            data = dir.join("data").to_str().unwrap(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["broker", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Broker {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn now_ms() -> i64 {
    portcullis_broker::clock::unix_millis(std::time::SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_ticket_is_redeemed_once_across_two_broker_processes() {
    let database_url = postgres::create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let target = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();

    // Both brokers share the data directory, hence one signing key, created up front.
    let data = dir.path().join("data");
    let init = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "keys",
            "init",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");

    let store = Store::connect(&database_url).await.unwrap();
    store.add_group("staff").await.unwrap();
    let user = store
        .add_user("alice", &hash_password("pw").unwrap(), now_ms())
        .await
        .unwrap();
    store.add_member("staff", "alice").await.unwrap();
    let service = store
        .add_service(
            NewService {
                name: "box".into(),
                host: "127.0.0.1".into(),
                port: target.local_addr().unwrap().port(),
                protocol: Protocol::Tcp,
                transport: Transport::Tunneled,
                tunnel_group: Some("dc1".into()),
                max_session_secs: 3600,
                readiness: Readiness::Tcp,
                allowed_groups: vec!["staff".into()],
            },
            now_ms(),
        )
        .await
        .unwrap();
    store
        .add_tunnel_server(
            NewTunnelServer {
                name: "t1".into(),
                public_address: "127.0.0.1:4443".into(),
                token_hash: TokenHash::of(TOKEN.as_bytes()),
                legacy: false,
                group: "dc1".into(),
            },
            now_ms(),
        )
        .await
        .unwrap();
    let ticket = TicketId::generate().unwrap();
    let scrambler = Scrambler::generate().unwrap();
    store
        .insert_client_ticket(NewClientTicket {
            id_hash: ticket_hash(&ticket),
            status_id: "status-two-brokers".into(),
            user_id: user,
            service_id: service,
            scrambler: scrambler.as_str().into(),
            client_os: None,
            created_at: now_ms(),
            expires_at: now_ms() + 60_000,
            credential: None,
        })
        .await
        .unwrap();

    let mut first = start_broker(dir.path(), "a", &database_url);
    let mut second = start_broker(dir.path(), "b", &database_url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    wait_healthy(&client, &first.url, &mut first.child).await;
    wait_healthy(&client, &second.url, &mut second.child).await;

    // The launcher's exchange, at the first broker.
    let launcher_key = DecapsulationKey::generate().unwrap();
    let request = TicketRequest::new(
        &scrambler,
        launcher_key.encapsulation_key(),
        "test-host",
        Some(ClientInfo {
            name: "portcullis-launcher".into(),
            version: "0.1.0".into(),
            os: "linux".into(),
            capabilities: vec!["payload-signature".into(), "tunnel-v1".into()],
            ssh_public_key: None,
        }),
    );
    let answer = client
        .post(format!(
            "{}/uds/rest/client/{}/ticket",
            first.url,
            ticket.expose()
        ))
        .json(&request)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let envelope = match Answer::<Envelope>::from_json(&answer).unwrap() {
        Answer::Result(envelope) => envelope,
        Answer::Error(error) => panic!("exchange refused: {}", error.message),
    };
    let (plaintext, secret) = envelope.open(&launcher_key, &ticket).unwrap();
    let broker_key = portcullis_broker::keys::load(&data).unwrap();
    let verified = payload::decode(&plaintext)
        .unwrap()
        .verify(
            broker_key.verifying_key(),
            &ticket,
            launcher_key.encapsulation_key(),
            SignaturePolicy::Required,
        )
        .unwrap();
    let tunnel_ticket =
        TicketId::parse(verified.params_json()["tunnel"]["ticket"].as_str().unwrap()).unwrap();

    // 64 tunnel-server starts with a valid proof, alternating between the brokers.
    let client_random = [1u8; 32];
    let server_random = [2u8; 32];
    let secret = derive_tunnel_secret(&secret, &tunnel_ticket).unwrap();
    let proof =
        compute_open_proof(&secret, &tunnel_ticket, &client_random, &server_random).unwrap();
    let tunnel_key = DecapsulationKey::generate().unwrap();
    let start = TunnelRequest::start(
        &tunnel_ticket,
        "127.0.0.1".parse().unwrap(),
        tunnel_key.encapsulation_key(),
        Some(&StartProof {
            client_random,
            server_random,
            proof,
        }),
    );
    let body = serde_json::to_vec(&start).unwrap();
    let mut tasks = Vec::new();
    for index in 0..64 {
        let url = format!(
            "{}/uds/rest/tunnel/ticket",
            if index % 2 == 0 {
                &first.url
            } else {
                &second.url
            }
        );
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 403).count();
    assert_eq!((won, refused), (1, 63), "statuses: {statuses:?}");
}
