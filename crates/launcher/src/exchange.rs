//! The launcher's side of the client API (docs/protocol.md §5, §6): the broker's key for a
//! first contact, and the ticket exchange — a fresh ML-KEM-768 key pair per launch, the
//! `client` announcement, retries while the service is being prepared, then the payload
//! decrypted and both signatures verified against the pinned key.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_proto::api::{
    Answer, BROKER_KEY_PATH, BrokerKey, ClientInfo, TicketRequest, capability, ticket_exchange_path,
};
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::openuds::Envelope;
use portcullis_proto::payload::{self, SignaturePolicy, VerifyingKey};
use portcullis_proto::{SharedSecret, TicketId};

use crate::failure::Failure;
use crate::ssh_key_pair::SshKeyPair;

/// The largest answer read from the broker (a payload is at most a few MiB compressed).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The wait between two requests while the service is being prepared.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// A verified launch: what the script runs with.
pub struct Launch {
    /// The script's source (its signature verified).
    pub script: String,
    /// The params document (`data`), covered by the payload signature.
    pub params: serde_json::Value,
    /// The ML-KEM shared secret of this exchange: the tunnel secret derives from it.
    pub kem_secret: SharedSecret,
    /// The SSH key pair of this exchange, whose public half the broker may have certified
    /// (params `ssh_certificate`).
    pub ssh_key: SshKeyPair,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("script_bytes", &self.script.len())
            .finish_non_exhaustive()
    }
}

/// The client API of one broker host.
#[derive(Debug)]
pub struct BrokerClient {
    http: reqwest::Client,
    base: String,
    host: String,
}

impl BrokerClient {
    /// A client for `https://host` (`host` may carry a port), trusting the platform's roots
    /// and, if given, the CA certificates in `ca_file`.
    pub fn new(host: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Self, Failure> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis-launcher/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                Failure::usage(format!(
                    "cannot read the CA file {}: {error}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                Failure::usage(format!(
                    "{} is not a PEM certificate file: {error}",
                    path.display()
                ))
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| Failure::internal(format!("HTTP client: {error}")))?;
        Ok(Self {
            http,
            base: format!("https://{host}"),
            host: host.to_owned(),
        })
    }

    /// `GET /uds/rest/client/key`: the broker's key as it presents it (not yet trusted).
    pub async fn broker_key(&self) -> Result<VerifyingKey, Failure> {
        let body = self.get(BROKER_KEY_PATH).await?;
        let answer: Answer<BrokerKey> = serde_json::from_slice(&body)
            .map_err(|error| self.bad_answer(format!("the key answer: {error}")))?;
        match answer {
            Answer::Result(key) => key
                .verifying_key()
                .map_err(|error| self.bad_answer(format!("the key: {error}"))),
            Answer::Error(error) => Err(Failure::refused(error.message)),
        }
    }

    /// The ticket exchange for `ticket`/`scrambler`, verified against `pinned`. While the
    /// broker answers "Preparing service", retries every 2 s for at most `max_wait`,
    /// calling `progress` with the broker's percentage.
    pub async fn exchange(
        &self,
        ticket: &TicketId,
        scrambler: &portcullis_proto::Scrambler,
        pinned: &VerifyingKey,
        max_wait: Duration,
        progress: &mut (dyn FnMut(u8) + Send),
    ) -> Result<Launch, Failure> {
        let key = DecapsulationKey::generate()
            .map_err(|error| Failure::internal(format!("ML-KEM key: {error}")))?;
        let ssh_key = SshKeyPair::generate()
            .map_err(|error| Failure::internal(format!("SSH key: {error}")))?;
        let request = TicketRequest::new(
            scrambler,
            key.encapsulation_key(),
            &hostname(),
            Some(ClientInfo {
                name: "portcullis-launcher".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                os: crate::OS.into(),
                capabilities: vec![
                    capability::PAYLOAD_SIGNATURE.into(),
                    capability::TUNNEL_V1.into(),
                    capability::SSH_CERTIFICATE.into(),
                ],
                ssh_public_key: Some(ssh_key.public_line()),
            }),
        );
        let body = serde_json::to_vec(&request)
            .map_err(|error| Failure::internal(format!("request: {error}")))?;
        let path = ticket_exchange_path(ticket);
        let started = Instant::now();
        loop {
            let answer = self.post(&path, body.clone()).await?;
            let answer: Answer<Envelope> = serde_json::from_slice(&answer)
                .map_err(|error| self.bad_answer(format!("the ticket answer: {error}")))?;
            let envelope = match answer {
                Answer::Result(envelope) => envelope,
                Answer::Error(error) if error.is_retryable => {
                    progress(error.percent.get());
                    if started.elapsed() + RETRY_INTERVAL > max_wait {
                        return Err(Failure::refused(format!(
                            "the service was still being prepared after {} s ({})",
                            max_wait.as_secs(),
                            error.message
                        )));
                    }
                    tokio::time::sleep(RETRY_INTERVAL).await;
                    continue;
                }
                Answer::Error(error) => return Err(Failure::refused(error.message)),
            };
            let (plaintext, kem_secret) = envelope.open(&key, ticket).map_err(|error| {
                Failure::tampered(format!("the answer does not decrypt ({error})"))
            })?;
            let verified = payload::decode(&plaintext)
                .map_err(|error| Failure::tampered(format!("the payload is malformed ({error})")))?
                .verify(
                    pinned,
                    ticket,
                    key.encapsulation_key(),
                    SignaturePolicy::Required,
                )
                .map_err(|error| Failure::unverified(&error))?;
            if !verified.is_javascript() {
                return Err(Failure::tampered(format!(
                    "the script type {:?} is not JavaScript",
                    verified.script_type()
                )));
            }
            let script = verified
                .script_text()
                .map_err(|error| Failure::tampered(format!("the script: {error}")))?
                .to_owned();
            return Ok(Launch {
                script,
                params: verified.params_json().clone(),
                kem_secret,
                ssh_key,
            });
        }
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, Failure> {
        self.read(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        self.read(
            self.http
                .post(format!("{}{path}", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await
    }

    /// Sends a request and reads a bounded 200 answer.
    async fn read(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        let mut response = request
            .send()
            .await
            .map_err(|error| Failure::unreachable(&self.host, error))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.bad_answer(format!("HTTP {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| Failure::unreachable(&self.host, error))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.bad_answer("an answer larger than 16 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn bad_answer(&self, what: String) -> Failure {
        Failure::unreachable_text(format!(
            "the broker {} answered something that is not a Portcullis answer ({what})",
            self.host
        ))
    }
}

/// This machine's host name, for the broker's audit log (empty when unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().chars().take(255).collect())
        .unwrap_or_default()
}
