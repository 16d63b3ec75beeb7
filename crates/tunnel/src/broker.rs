//! The broker's tunnel-server API (docs/protocol.md §7): `start` redeems a tunnel ticket
//! with the launcher's proof, `stop` reports a session's end with its byte counts, and the
//! control channel (§7.8) reports live sessions' bytes and brings back the ends to make.
//!
//! One pooled HTTPS client with a connect timeout and a whole-call timeout; answers are
//! bounded in size. Every `start` uses a fresh ML-KEM-768 key, so the answer's envelope
//! opens only here, only once.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_proto::api::{
    CONTROL_PATH, ControlAnswer, ControlRequest, Remote, StartProof, TunnelRequest, TunnelStart,
};
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::openuds::Envelope;
use portcullis_proto::{SharedSecret, TicketId};
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::config::{BrokerLink, BrokerToken};

/// The largest answer body read from the broker.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest control answer read from the broker (8192 end commands fit).
const MAX_CONTROL_ANSWER_BYTES: usize = 1024 * 1024;
/// How much longer than the wait it asked for a control request may take.
pub const CONTROL_SLACK: Duration = Duration::from_secs(5);
/// Waits between `stop` attempts; after the last one the report is given up (logged and
/// counted).
const STOP_BACKOFF: [Duration; 6] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// HTTP 403: the broker refused (unknown, used or expired ticket, wrong proof, …).
    #[error("the broker refused")]
    Refused,
    /// No connection, no answer in time, HTTP 5xx or another unexpected status.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// HTTP 200 whose body is not a valid answer (the ticket may be consumed).
    #[error("the broker's answer is invalid: {0}")]
    BadAnswer(String),
    /// The client could not be built from the configuration.
    #[error("broker client: {0}")]
    Setup(String),
}

/// A redeemed tunnel ticket: where to connect, how to report, the tunnel secret.
#[derive(Debug)]
pub struct Redeemed {
    /// Targets in order of preference; at least one.
    pub remotes: Vec<Remote>,
    /// The ticket of the `stop` report.
    pub notify: TicketId,
    /// The tunnel secret `S` (docs/protocol.md §6.7).
    pub secret: SharedSecret,
}

/// The broker's tunnel-server API.
#[derive(Clone, Debug)]
pub struct BrokerClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    control_endpoint: reqwest::Url,
    authorization: HeaderValue,
}

impl BrokerClient {
    /// A client for `link`, authenticated by `token`, giving up on a call after
    /// `call_timeout` (connection included).
    pub fn new(
        link: &BrokerLink,
        token: &BrokerToken,
        call_timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let base = reqwest::Url::parse(&link.url)
            .map_err(|error| BrokerError::Setup(format!("broker.url: {error}")))?;
        let endpoint = base
            .join("/uds/rest/tunnel/ticket")
            .map_err(|error| BrokerError::Setup(format!("broker.url: {error}")))?;
        let control_endpoint = base
            .join(CONTROL_PATH)
            .map_err(|error| BrokerError::Setup(format!("broker.url: {error}")))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(call_timeout)
            .timeout(call_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &link.ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                BrokerError::Setup(format!("broker.ca_file {}: {error}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                BrokerError::Setup(format!("broker.ca_file {}: {error}", path.display()))
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| BrokerError::Setup(error.to_string()))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| BrokerError::Setup("the broker token is not a valid header".into()))?;
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            endpoint,
            control_endpoint,
            authorization,
        })
    }

    /// `start`: redeems `ticket` for the launcher at `source` with its handshake proof.
    pub async fn start(
        &self,
        ticket: &TicketId,
        source: IpAddr,
        proof: &StartProof,
    ) -> Result<Redeemed, BrokerError> {
        let key = DecapsulationKey::generate()
            .map_err(|error| BrokerError::Setup(format!("ML-KEM key: {error}")))?;
        let request = TunnelRequest::start(ticket, source, key.encapsulation_key(), Some(proof));
        let body = self.call(&request).await?;
        let envelope: Envelope = serde_json::from_slice(&body)
            .map_err(|error| BrokerError::BadAnswer(format!("not an envelope: {error}")))?;
        let (plaintext, _) = envelope
            .open(&key, ticket)
            .map_err(|error| BrokerError::BadAnswer(format!("envelope: {error}")))?;
        let start = TunnelStart::from_json(&plaintext)
            .map_err(|error| BrokerError::BadAnswer(format!("plaintext: {error}")))?;
        Ok(Redeemed {
            remotes: start.remotes,
            notify: start.notify,
            secret: start.shared_secret,
        })
    }

    /// `stop`: one attempt.
    pub async fn stop(&self, notify: &TicketId, sent: u64, recv: u64) -> Result<(), BrokerError> {
        self.call(&TunnelRequest::stop(notify, sent, recv))
            .await
            .map(drop)
    }

    /// `stop`, retried with back-off while the broker is unavailable (about 30 s in all).
    /// A refusal is final. Returns the last error when every attempt failed.
    pub async fn stop_with_retries(
        &self,
        notify: &TicketId,
        sent: u64,
        recv: u64,
    ) -> Result<(), BrokerError> {
        let mut waits = STOP_BACKOFF.iter();
        loop {
            match self.stop(notify, sent, recv).await {
                Err(BrokerError::Unavailable(reason)) => match waits.next() {
                    Some(wait) => {
                        tracing::info!(notify = %notify, %reason, retry_in = ?wait, "stop report not delivered yet");
                        tokio::time::sleep(*wait).await;
                    }
                    None => return Err(BrokerError::Unavailable(reason)),
                },
                other => return other,
            }
        }
    }

    /// One control request (docs/protocol.md §7.8): the live sessions' bytes; the answer
    /// comes at once or within `request.wait_ms`, and is given up [`CONTROL_SLACK`] later.
    pub async fn control(&self, request: &ControlRequest) -> Result<ControlAnswer, BrokerError> {
        let body = serde_json::to_vec(request)
            .map_err(|error| BrokerError::Setup(format!("request: {error}")))?;
        let timeout = Duration::from_millis(request.wait_ms) + CONTROL_SLACK;
        let answer = self
            .post(
                &self.control_endpoint,
                body,
                Some(timeout),
                MAX_CONTROL_ANSWER_BYTES,
            )
            .await?;
        ControlAnswer::from_json(&answer).map_err(|error| BrokerError::BadAnswer(error.to_string()))
    }

    /// Posts `request` and returns the body of a 200 answer.
    async fn call(&self, request: &TunnelRequest) -> Result<Vec<u8>, BrokerError> {
        let body = serde_json::to_vec(request)
            .map_err(|error| BrokerError::Setup(format!("request: {error}")))?;
        self.post(&self.endpoint, body, None, MAX_ANSWER_BYTES)
            .await
    }

    /// Posts `body` to `endpoint` (within `timeout` instead of the client's call timeout)
    /// and returns the body of a 200 answer, at most `limit` bytes.
    async fn post(
        &self,
        endpoint: &reqwest::Url,
        body: Vec<u8>,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<Vec<u8>, BrokerError> {
        let mut request = self
            .http
            .post(endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| BrokerError::Unavailable(describe(error)))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(BrokerError::Refused);
        }
        if status != reqwest::StatusCode::OK {
            return Err(BrokerError::Unavailable(format!("HTTP {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| BrokerError::Unavailable(describe(error)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(BrokerError::BadAnswer(format!(
                    "answer longer than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A reqwest error without its URL (which names only the broker, but keep logs short).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        error.without_url().to_string()
    }
}
