//! Ticket exchanges per second at the broker (docs/broker.md, "Throughput": at least 2,500
//! per second on 2 cores with SQLite, each with its own ML-DSA-65 payload signature).
//!
//! 1. Micro-benchmarks, single-threaded: what each cryptographic step of one exchange costs
//!    by itself (ML-KEM-768, HKDF, AES-256-GCM, ML-DSA-65, `payload::build`,
//!    `Envelope::seal`).
//! 2. A real broker (`server::start`, plain HTTP on 127.0.0.1, optionally TLS) on SQLite
//!    and on PostgreSQL, with one user, a direct RDP service whose target port accepts
//!    connections, and client tickets inserted through the store beforehand. N concurrent
//!    clients (reqwest, keep-alive) each run a bounded number of exchanges; the launcher's
//!    ML-KEM key pairs and request bodies are made before the clock starts, so the timed
//!    part is the exchange itself. A sample of the answers is decrypted and verified after
//!    each run (envelope, script signature, payload signature) to prove they were real.
//!    One extra row calls the exchange in-process, without HTTP, to show what the HTTP
//!    layer and the client cost.
//!
//! Run it with `cargo bench -p portcullis-broker --bench exchange` (about 2 minutes);
//! `PORTCULLIS_BENCH_QUICK=1` makes a short run. Without the `--bench` argument (as under
//! `cargo test --all-targets`) it runs a few exchanges on SQLite only, as a smoke test.
//!
//! The clients, the broker, the target's accept loop and the PostgreSQL server all share
//! the machine's cores: the numbers are a lower bound for a broker with the cores to
//! itself.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_broker::clock::system_clock;
use portcullis_broker::config::{BrokerConfig, DatabaseUrl, PublicUrl, TlsMode};
use portcullis_broker::http::ClientAddr;
use portcullis_broker::scripts::{
    LaunchParams, Os, RdpParams, Route, ServiceParams, builtin_script,
};
use portcullis_broker::server::{self, RunningBroker};
use portcullis_broker::state::AppState;
use portcullis_broker::store::{
    AuditEvent, NewClientTicket, NewService, Protocol, Readiness, ServiceId, Store, Transport,
    UserId,
};
use portcullis_broker::tickets::crypto::ticket_hash;
use portcullis_proto::api::{
    Answer, ClientInfo, TicketAnswer, TicketRequest, capability, ticket_exchange_path,
};
use portcullis_proto::kem::DecapsulationKey;
use portcullis_proto::openuds::{Envelope, TicketKeys};
use portcullis_proto::payload::{
    self, BuildOptions, LogSettings, SignaturePolicy, SignedScript, SigningKey,
    payload_signature_message,
};
use portcullis_proto::{Scrambler, TicketId};
use portcullis_testkit::BenchMode as Mode;
use tokio::runtime::Runtime;
use tokio::sync::Barrier;

/// The budget (docs/broker.md, "Throughput"): exchanges per second on 2 cores with SQLite.
const TARGET_PER_SEC: f64 = 2_500.0;
/// Size of the AES-256-GCM micro-benchmark's plaintext ("a typical payload").
const AES_PAYLOAD_LEN: usize = 5 * 1024;
/// One answer in this many is decrypted and verified after a run (and at least the first
/// answer of every client).
const SAMPLE_EVERY: usize = 50;
/// Lifetime of the pre-issued client tickets: long enough for any run.
const TICKET_TTL_MS: i64 = 60 * 60 * 1000;
/// Worker threads of the broker's runtime: what `portcullis broker` uses on 2 cores.
const BROKER_WORKERS: usize = 2;

/// What one mode runs.
struct Plan {
    mode: Mode,
    clients: &'static [usize],
    /// Aimed-at duration of one row.
    row_secs: f64,
    /// A row stops at this duration even if tickets are left.
    max_row_secs: f64,
    /// Time given to each micro-benchmark.
    micro: Duration,
    /// Exchanges of a row when there is no measured rate yet: a guess.
    first_rate_guess: f64,
    /// Fewest exchanges in a row (per client, at least 4).
    min_exchanges: usize,
    /// Most exchanges in a row.
    max_exchanges: usize,
    postgres: bool,
    tls: bool,
    in_process: bool,
}

impl Plan {
    fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Full => Self {
                mode,
                clients: &[1, 8, 32, 64],
                row_secs: 4.0,
                max_row_secs: 8.0,
                micro: Duration::from_millis(400),
                first_rate_guess: 1_000.0,
                min_exchanges: 500,
                max_exchanges: 40_000,
                postgres: true,
                tls: true,
                in_process: true,
            },
            Mode::Quick => Self {
                mode,
                clients: &[1, 8, 32, 64],
                row_secs: 0.8,
                max_row_secs: 2.0,
                micro: Duration::from_millis(80),
                first_rate_guess: 1_000.0,
                min_exchanges: 200,
                max_exchanges: 10_000,
                postgres: true,
                tls: true,
                in_process: true,
            },
            Mode::Smoke => Self {
                mode,
                clients: &[1, 4],
                row_secs: 0.0,
                max_row_secs: 60.0,
                micro: Duration::ZERO,
                first_rate_guess: 0.0,
                min_exchanges: 8,
                max_exchanges: 8,
                postgres: false,
                tls: false,
                in_process: true,
            },
        }
    }

    /// How many exchanges a row with `clients` clients runs, from the rate measured last.
    fn exchanges(&self, clients: usize, rate: Option<f64>) -> usize {
        let rate = rate.unwrap_or(self.first_rate_guess);
        let wanted = (rate * self.row_secs) as usize;
        wanted
            .clamp(self.min_exchanges, self.max_exchanges)
            .max(clients * 4)
    }
}

fn main() {
    let mode = Mode::from_args();
    let plan = Plan::for_mode(mode);
    let started = Instant::now();
    println!("Portcullis broker: ticket exchange benchmark ({mode:?} mode)");
    println!(
        "machine: {} CPU(s) available; clients, broker ({BROKER_WORKERS} runtime workers), \
         the target's accept loop and the database all share them, so the HTTP rows are a \
         lower bound for a broker with the cores to itself.",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    if mode == Mode::Smoke {
        println!("(no --bench argument: smoke run; use `cargo bench` for numbers)");
    }

    let micro = micro_benchmarks(&plan);
    let rows = http_benchmarks(&plan);

    println!();
    print_table(&rows);
    println!();
    print_micro(&micro);
    println!();
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());

    let failed: Vec<&Row> = rows.iter().filter(|row| !row.ok()).collect();
    if !failed.is_empty() {
        for row in failed {
            eprintln!(
                "error: {} N={}: {} refused or failed answers, {}/{} samples verified; first: {}",
                row.backend,
                row.clients,
                row.errors.len(),
                row.verified,
                row.sampled,
                row.errors.first().map_or("-", String::as_str)
            );
        }
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Micro-benchmarks.

struct Micro {
    name: &'static str,
    ns_per_op: f64,
}

/// Runs `op` repeatedly for about `budget` (at least twice) and returns ns per call.
fn measure(budget: Duration, mut op: impl FnMut()) -> f64 {
    op();
    let mut batch: u64 = 1;
    let mut calls: u64 = 0;
    let started = Instant::now();
    loop {
        for _ in 0..batch {
            op();
        }
        calls += batch;
        let elapsed = started.elapsed();
        if elapsed >= budget && calls >= 2 {
            return elapsed.as_nanos() as f64 / calls as f64;
        }
        batch = (batch * 2).min(1 << 16);
    }
}

/// A launcher's ticket request body for `key`, announcing the payload signature.
fn request_body(scrambler: &Scrambler, key: &DecapsulationKey) -> Vec<u8> {
    let client = ClientInfo {
        name: "portcullis-launcher".to_owned(),
        version: "0.1.0".to_owned(),
        os: "linux".to_owned(),
        capabilities: vec![
            capability::PAYLOAD_SIGNATURE.to_owned(),
            capability::TUNNEL_V1.to_owned(),
        ],
        ssh_public_key: None,
    };
    let request = TicketRequest::new(
        scrambler,
        key.encapsulation_key(),
        "bench-host",
        Some(client),
    );
    serde_json::to_vec(&request).expect("a ticket request serializes")
}

/// The params of a direct RDP service, as the exchange builds them.
fn rdp_params(port: u16) -> Vec<u8> {
    LaunchParams {
        name: "Bench desktop".to_owned(),
        route: Route::Direct {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port,
        },
        service: ServiceParams::Rdp(RdpParams::default()),
    }
    .to_json()
    .expect("params serialize")
    .to_vec()
}

fn micro_benchmarks(plan: &Plan) -> Vec<Micro> {
    println!();
    println!("micro-benchmarks (single thread)…");
    let budget = plan.micro;
    let mut out = Vec::new();
    let mut record = |name: &'static str, ns_per_op: f64| {
        if plan.mode != Mode::Smoke {
            println!("  {name:<58} {:>10.1} µs/op", ns_per_op / 1_000.0);
        }
        out.push(Micro { name, ns_per_op });
    };

    let pair = DecapsulationKey::generate().unwrap();
    let public = pair.encapsulation_key().clone();
    let ticket = TicketId::generate().unwrap();
    let (ciphertext, secret) = public.encapsulate().unwrap();
    let signing_key = SigningKey::generate().unwrap();
    let verifying_key = signing_key.verifying_key().clone();

    record(
        "ML-KEM-768 keygen (launcher side)",
        measure(budget, || {
            black_box(DecapsulationKey::generate().unwrap());
        }),
    );
    record(
        "ML-KEM-768 encapsulate",
        measure(budget, || {
            black_box(black_box(&public).encapsulate().unwrap());
        }),
    );
    record(
        "ML-KEM-768 decapsulate (launcher side)",
        measure(budget, || {
            black_box(pair.decapsulate(black_box(&ciphertext)).unwrap());
        }),
    );
    record(
        "HKDF-SHA256 key schedule (108 bytes)",
        measure(budget, || {
            black_box(TicketKeys::derive(black_box(&secret), ticket.as_bytes()).unwrap());
        }),
    );
    let plaintext = vec![0x5a_u8; AES_PAYLOAD_LEN];
    // The payload key seals one message only (its nonce is fixed), so each seal derives it.
    record(
        "key schedule + AES-256-GCM seal, 5 KiB",
        measure(budget, || {
            let keys = TicketKeys::derive(&secret, ticket.as_bytes()).unwrap();
            black_box(keys.encrypt_payload(black_box(&plaintext)).unwrap());
        }),
    );

    let script = SignedScript::sign(
        builtin_script(Protocol::Rdp, Os::Linux).as_bytes().to_vec(),
        &signing_key,
    )
    .unwrap();
    let params = rdp_params(3389);
    let message = payload_signature_message(script.script(), &params, &ticket, &public);
    let signature = signing_key.sign(&message).unwrap();
    record(
        "ML-DSA-65 sign (payload signature, 176-byte message)",
        measure(budget, || {
            black_box(signing_key.sign(black_box(&message)).unwrap());
        }),
    );
    record(
        "ML-DSA-65 verify (launcher side)",
        measure(budget, || {
            verifying_key
                .verify(black_box(&message), &signature, "payload")
                .unwrap();
        }),
    );

    let build = |payload_signature: bool| {
        payload::build(
            &script,
            &params,
            &LogSettings::default(),
            &signing_key,
            &BuildOptions {
                ticket: &ticket,
                client_key: &public,
                payload_signature,
            },
        )
        .unwrap()
    };
    record(
        "payload::build, without the payload signature",
        measure(budget, || {
            black_box(build(false));
        }),
    );
    record(
        "payload::build (bzip2 params + ML-DSA-65 payload signature)",
        measure(budget, || {
            black_box(build(true));
        }),
    );
    let built = build(true);
    record(
        "Envelope::seal (encapsulate + HKDF + AES-GCM + base64)",
        measure(budget, || {
            black_box(Envelope::seal(&public, &ticket, black_box(&built)).unwrap());
        }),
    );
    let body = request_body(&Scrambler::generate().unwrap(), &pair);
    record(
        "TicketRequest parse + check (JSON, base64, ML-KEM key)",
        measure(budget, || {
            black_box(
                TicketRequest::from_json(black_box(&body))
                    .unwrap()
                    .check()
                    .unwrap(),
            );
        }),
    );
    record(
        "ticket_hash (SHA-256)",
        measure(budget, || {
            black_box(ticket_hash(black_box(&ticket)));
        }),
    );
    if plan.mode != Mode::Smoke {
        println!(
            "  (the payload of a direct RDP service is {} bytes; the answer's JSON about {} bytes)",
            built.len(),
            Answer::Result(Envelope::seal(&public, &ticket, &built).unwrap().0)
                .to_json()
                .unwrap()
                .len()
        );
    }
    out
}

fn print_micro(micro: &[Micro]) {
    println!("crypto and payload operations alone (one thread, no I/O):");
    println!("  {:<58} {:>12} {:>12}", "operation", "ns/op", "ops/s");
    for op in micro {
        println!(
            "  {:<58} {:>12.0} {:>12.0}",
            op.name,
            op.ns_per_op,
            1e9 / op.ns_per_op
        );
    }
    let cost = |name: &str| {
        micro
            .iter()
            .find(|op| op.name.starts_with(name))
            .map_or(0.0, |op| op.ns_per_op)
    };
    let per_exchange = cost("TicketRequest parse")
        + cost("payload::build (bzip2")
        + cost("Envelope::seal")
        + cost("ticket_hash");
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    println!(
        "  broker-side CPU of one exchange from these alone (request check + build + seal + \
         hash): {:.1} µs => at most {:.0} exchanges/s per core, {:.0} on {cores} cores, \
         before HTTP and the database",
        per_exchange / 1_000.0,
        1e9 / per_exchange,
        cores * 1e9 / per_exchange
    );
}

// ---------------------------------------------------------------------------------------
// Where the time of one exchange goes.

/// The steps of `exchange::exchange`, in order, as the breakdown times them.
const STEPS: [&str; 6] = [
    "parse and check the request (JSON, base64, ML-KEM key)",
    "store: exchange_context (1 joined read)",
    "readiness: TCP connect to the target (cached 2 s)",
    "params + payload::build (bzip2, ML-DSA-65 sign)",
    "Envelope::seal (ML-KEM-768, HKDF, AES-256-GCM)",
    "store: exchange_client_ticket + audit (group commit)",
];

/// Accumulates the time between laps into numbered steps.
struct Laps {
    last: Instant,
    totals: [Duration; STEPS.len()],
}

impl Laps {
    fn lap(&mut self, step: usize) {
        let now = Instant::now();
        self.totals[step] += now - self.last;
        self.last = now;
    }
}

/// Runs the steps of an exchange one by one with the broker's own store, scripts and
/// key, `tasks` at a time, and prints the mean time of each step. With one task this is
/// the latency of each step; with several, a step whose time grows is where exchanges
/// queue.
fn breakdown(plan: &Plan, rt: &Runtime, bench: &Bench, target: u16) {
    let per_task = match plan.mode {
        Mode::Full => 300,
        Mode::Quick => 100,
        Mode::Smoke => 3,
    };
    let mut columns = Vec::new();
    for tasks in [1, 16] {
        let jobs = prepare(rt, bench, tasks, tasks * per_task);
        let state = bench.broker.state.clone();
        let started = Instant::now();
        let totals = rt.block_on(async move {
            let mut handles = Vec::new();
            for task_jobs in jobs {
                handles.push(tokio::spawn(breakdown_task(
                    state.clone(),
                    task_jobs,
                    target,
                )));
            }
            let mut totals = [Duration::ZERO; STEPS.len()];
            for handle in handles {
                for (total, step) in totals.iter_mut().zip(handle.await.unwrap()) {
                    *total += step;
                }
            }
            totals
        });
        let count = u32::try_from(tasks * per_task).unwrap_or(u32::MAX);
        let rate = f64::from(count) / started.elapsed().as_secs_f64();
        columns.push((tasks, totals.map(|total| total / count), rate));
    }
    if plan.mode == Mode::Smoke {
        return;
    }
    println!();
    println!(
        "where an exchange's time goes on {} (the steps of exchange::exchange run one by one \
         in-process, no HTTP; mean µs per step):",
        bench.name
    );
    print!("  {:<56}", "step");
    for (tasks, _, _) in &columns {
        print!(" {:>12}", format!("{tasks} task(s)"));
    }
    println!();
    for (index, step) in STEPS.iter().enumerate() {
        print!("  {step:<56}");
        for (_, means, _) in &columns {
            print!(" {:>12.1}", means[index].as_secs_f64() * 1e6);
        }
        println!();
    }
    print!("  {:<56}", "total (latency of one exchange)");
    for (_, means, _) in &columns {
        let total: Duration = means.iter().sum();
        print!(" {:>12.1}", total.as_secs_f64() * 1e6);
    }
    println!();
    print!("  {:<56}", "exchanges/s");
    for (_, _, rate) in &columns {
        print!(" {rate:>12.0}");
    }
    println!();
}

async fn breakdown_task(
    state: Arc<AppState>,
    jobs: Vec<Job>,
    target: u16,
) -> [Duration; STEPS.len()] {
    let script = state.scripts.get(Protocol::Rdp, Os::Linux).clone();
    let mut laps = Laps {
        last: Instant::now(),
        totals: [Duration::ZERO; STEPS.len()],
    };
    for job in jobs {
        laps.last = Instant::now();
        let request = TicketRequest::from_json(&job.body)
            .unwrap()
            .check()
            .unwrap();
        let hash = ticket_hash(&job.ticket);
        let now = state.now();
        laps.lap(0);
        let context = state
            .store
            .exchange_context(&hash, now)
            .await
            .unwrap()
            .unwrap();
        let service = context.service.unwrap();
        assert!(context.may_use);
        laps.lap(1);
        assert!(
            state
                .readiness
                .target_answers(
                    &service.host,
                    service.port,
                    state.config.readiness_timeout(),
                    now,
                )
                .await
        );
        laps.lap(2);
        let params = rdp_params(target);
        let built = payload::build(
            &script,
            &params,
            &LogSettings::default(),
            &state.signing_key,
            &BuildOptions {
                ticket: &job.ticket,
                client_key: &request.client_key,
                payload_signature: request.wants_payload_signature(),
            },
        )
        .unwrap();
        laps.lap(3);
        let sealed = Envelope::seal(&request.client_key, &job.ticket, &built).unwrap();
        black_box(sealed);
        laps.lap(4);
        let audit = AuditEvent {
            actor: None,
            at: now,
            kind: "bench.breakdown".to_owned(),
            username: context.username,
            service: Some(service.name.clone()),
            source_ip: Some("127.0.0.1".to_owned()),
            detail: "{}".to_owned(),
        };
        assert!(
            state
                .store
                .exchange_client_ticket(&hash, now, None, audit)
                .await
                .unwrap()
        );
        laps.lap(5);
    }
    laps.totals
}

// ---------------------------------------------------------------------------------------
// Exchanges over HTTP.

/// One pre-issued ticket and its request.
struct Job {
    ticket: TicketId,
    url: String,
    body: Vec<u8>,
    /// Kept for sampled jobs only: the launcher's key pair, to open the answer.
    key: Option<DecapsulationKey>,
}

/// A sampled answer, checked after the run.
struct Sample {
    body: Vec<u8>,
    ticket: TicketId,
    key: DecapsulationKey,
}

#[derive(Default)]
struct ClientOutcome {
    started: Option<Instant>,
    ended: Option<Instant>,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    samples: Vec<Sample>,
}

struct Row {
    backend: String,
    clients: usize,
    exchanges: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    errors: Vec<String>,
    sampled: usize,
    verified: usize,
    /// CPU time of this process (broker, clients, SQLite; not a PostgreSQL server) per
    /// exchange, user and system.
    cpu_user: Duration,
    cpu_sys: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.exchanges as f64 / self.seconds.max(1e-9)
    }

    fn ok(&self) -> bool {
        self.errors.is_empty() && self.verified == self.sampled && self.sampled > 0
    }
}

/// A running broker with its bench data: the user and the service tickets are for.
struct Bench {
    name: String,
    broker: RunningBroker,
    user: UserId,
    service: ServiceId,
    /// The certificate to trust, for a TLS broker.
    ca_cert: Option<Vec<u8>>,
    /// Keeps the data directory.
    _dir: tempfile::TempDir,
}

/// Where a row's exchanges go.
enum Via {
    /// Real HTTP(S) from reqwest clients on the main thread's runtime.
    Http(reqwest::Client),
    /// `exchange::exchange` called directly on the broker's runtime: no HTTP, no client.
    InProcess(Arc<AppState>),
}

fn http_benchmarks(plan: &Plan) -> Vec<Row> {
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BROKER_WORKERS)
        .thread_name("broker")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target_port = start_target();
    let mut rows = Vec::new();

    // SQLite, plain HTTP.
    let sqlite = start_bench(
        &broker_rt,
        "sqlite",
        Backend::Sqlite,
        TlsMode::Off,
        target_port,
    );
    breakdown(plan, &broker_rt, &sqlite, target_port);
    let mut rate = None;
    for &clients in plan.clients {
        let row = run_row(plan, &broker_rt, &client_rt, &sqlite, clients, rate, false);
        rate = Some(row.rate());
        rows.push(row);
    }
    if plan.in_process {
        let clients = *plan.clients.iter().max().unwrap_or(&1);
        rows.push(run_row(
            plan, &broker_rt, &client_rt, &sqlite, clients, rate, true,
        ));
    }
    broker_rt.block_on(sqlite.broker.shutdown(Duration::from_secs(5)));

    // SQLite, TLS (self-signed certificate), one row.
    if plan.tls {
        let tls = start_bench(
            &broker_rt,
            "sqlite+tls",
            Backend::Sqlite,
            TlsMode::SelfSigned,
            target_port,
        );
        let clients = plan.clients.get(2).copied().unwrap_or(8);
        rows.push(run_row(
            plan, &broker_rt, &client_rt, &tls, clients, rate, false,
        ));
        broker_rt.block_on(tls.broker.shutdown(Duration::from_secs(5)));
    }

    // PostgreSQL, plain HTTP.
    if plan.postgres {
        match postgres_url(&broker_rt) {
            Ok(url) => {
                let pg = start_bench(
                    &broker_rt,
                    "postgres",
                    Backend::Postgres(url),
                    TlsMode::Off,
                    target_port,
                );
                breakdown(plan, &broker_rt, &pg, target_port);
                let mut rate = None;
                for &clients in plan.clients {
                    let row = run_row(plan, &broker_rt, &client_rt, &pg, clients, rate, false);
                    rate = Some(row.rate());
                    rows.push(row);
                }
                broker_rt.block_on(pg.broker.shutdown(Duration::from_secs(5)));
            }
            Err(reason) => {
                println!();
                println!("PostgreSQL rows skipped: {reason}");
            }
        }
    }
    rows
}

/// A TCP listener on loopback that accepts and drops every connection: the service's
/// target, which the broker's readiness check connects to on every exchange.
fn start_target() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name("target".to_owned())
        .spawn(move || {
            for connection in listener.incoming() {
                drop(connection);
            }
        })
        .unwrap();
    port
}

enum Backend {
    Sqlite,
    Postgres(String),
}

/// A fresh database on the PostgreSQL test server of `portcullis-testkit`, or why
/// not.
fn postgres_url(rt: &Runtime) -> Result<String, String> {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|entry| entry.path().join("bin/initdb").is_file())
        })
        .unwrap_or(false);
    if !found {
        return Err(
            "the PostgreSQL server binaries (initdb, postgres) are not installed under \
                    /usr/lib/postgresql/*/bin. Install them with `apt-get install postgresql` \
                    (or run `bash scripts/test.sh`, which does) and run the benchmark again; \
                    the SQLite rows above are complete."
                .to_owned(),
        );
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(portcullis_testkit::postgres::create_database())
    }))
    .map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .unwrap_or_default();
        format!("the test PostgreSQL server did not start: {reason}")
    })
}

fn start_bench(rt: &Runtime, name: &str, backend: Backend, tls: TlsMode, target: u16) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_dev(dir.path());
    config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config.tls.mode = tls;
    config.public_url = Some(PublicUrl::parse("https://broker.bench.invalid").unwrap());
    if let Backend::Postgres(url) = &backend {
        config.database_url = Some(DatabaseUrl::parse(url).unwrap());
    }
    let broker = rt.block_on(server::start(config, system_clock())).unwrap();
    let (user, service) = rt.block_on(bench_data(&broker.state.store, target));
    let ca_cert = (tls != TlsMode::Off)
        .then(|| std::fs::read(portcullis_broker::tls::self_signed_paths(dir.path()).0).unwrap());
    Bench {
        name: name.to_owned(),
        broker,
        user,
        service,
        ca_cert,
        _dir: dir,
    }
}

/// User `bench` in group `bench`, and the direct RDP service `desk` on `target`.
async fn bench_data(store: &Store, target: u16) -> (UserId, ServiceId) {
    let now = (system_clock())();
    let hash = portcullis_broker::password::hash_password("bench password").unwrap();
    let user = store.add_user("bench", &hash, now).await.unwrap();
    store.add_group("bench").await.unwrap();
    store.add_member("bench", "bench").await.unwrap();
    let service = store
        .add_service(
            NewService {
                name: "desk".to_owned(),
                host: Ipv4Addr::LOCALHOST.to_string(),
                port: target,
                protocol: Protocol::Rdp,
                transport: Transport::Direct,
                tunnel_group: None,
                max_session_secs: 8 * 3600,
                readiness: Readiness::Tcp,
                allowed_groups: vec!["bench".to_owned()],
            },
            now,
        )
        .await
        .unwrap();
    (user, service)
}

/// Makes `count` tickets with their launcher keys and request bodies, and stores the
/// tickets (untimed). Returns the jobs dealt round-robin to `clients` clients.
fn prepare(rt: &Runtime, bench: &Bench, clients: usize, count: usize) -> Vec<Vec<Job>> {
    let base = bench.broker.base_url();
    let now = (system_clock())();
    let mut rows = Vec::with_capacity(count);
    let mut jobs: Vec<Vec<Job>> = (0..clients).map(|_| Vec::new()).collect();
    for index in 0..count {
        let ticket = TicketId::generate().unwrap();
        let scrambler = Scrambler::generate().unwrap();
        let key = DecapsulationKey::generate().unwrap();
        let body = request_body(&scrambler, &key);
        rows.push(NewClientTicket {
            id_hash: ticket_hash(&ticket),
            status_id: portcullis_proto::hex::encode(
                &portcullis_proto::random::array::<16>().unwrap(),
            ),
            user_id: bench.user,
            service_id: bench.service,
            scrambler: scrambler.as_str().to_owned(),
            client_os: Some("linux".to_owned()),
            created_at: now,
            expires_at: now + TICKET_TTL_MS,
            credential: None,
        });
        let client = index % clients;
        // Every client's first answer, and one in SAMPLE_EVERY, is checked.
        let sampled = index < clients || index % SAMPLE_EVERY == 0;
        jobs[client].push(Job {
            url: format!("{base}{}", ticket_exchange_path(&ticket)),
            ticket,
            body,
            key: sampled.then_some(key),
        });
    }
    rt.block_on(insert_tickets(&bench.broker.state.store, rows));
    jobs
}

async fn insert_tickets(store: &Store, rows: Vec<NewClientTicket>) {
    const INSERTERS: usize = 8;
    let mut chunks: Vec<Vec<NewClientTicket>> = (0..INSERTERS).map(|_| Vec::new()).collect();
    for (index, row) in rows.into_iter().enumerate() {
        chunks[index % INSERTERS].push(row);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let store = store.clone();
        tasks.spawn(async move {
            for row in chunk {
                store.insert_client_ticket(row).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn http_client(bench: &Bench) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .timeout(Duration::from_secs(30));
    if let Some(pem) = &bench.ca_cert {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    builder.build().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn run_row(
    plan: &Plan,
    broker_rt: &Runtime,
    client_rt: &Runtime,
    bench: &Bench,
    clients: usize,
    rate: Option<f64>,
    in_process: bool,
) -> Row {
    let count = plan.exchanges(clients, rate);
    let label = if in_process {
        format!("{} in-process, no HTTP", bench.name)
    } else {
        bench.name.clone()
    };
    print!("{label}: N={clients}, {count} exchanges: preparing… ");
    flush();
    let jobs = prepare(broker_rt, bench, clients, count);
    let exchanged_before = bench.broker.state.metrics.tickets_exchanged.get();
    print!("running… ");
    flush();
    let max = Duration::from_secs_f64(plan.max_row_secs);
    let (user_before, sys_before) = process_cpu();
    let outcomes = if in_process {
        let state = bench.broker.state.clone();
        broker_rt.block_on(drive(Via::InProcess(state), jobs, max))
    } else {
        let client = http_client(bench);
        client_rt.block_on(drive(Via::Http(client), jobs, max))
    };
    let (user_after, sys_after) = process_cpu();
    let mut row = summarize(
        bench,
        &label,
        in_process,
        clients,
        outcomes,
        exchanged_before,
    );
    // The warm-up exchanges (one per client) ran inside the measured span too.
    let done = u32::try_from(row.exchanges + clients)
        .unwrap_or(u32::MAX)
        .max(1);
    row.cpu_user = user_after.saturating_sub(user_before) / done;
    row.cpu_sys = sys_after.saturating_sub(sys_before) / done;
    println!(
        "{:.0}/s, {}/{} sampled answers decrypted and verified",
        row.rate(),
        row.verified,
        row.sampled
    );
    row
}

fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

/// Runs every client's jobs: the first job of each client warms its connection up (not
/// timed), then all start together; each stops when its jobs are done or at `max`.
async fn drive(transport: Via, jobs: Vec<Vec<Job>>, max: Duration) -> Vec<ClientOutcome> {
    let transport = Arc::new(transport);
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let mut tasks = Vec::new();
    for client_jobs in jobs {
        let transport = transport.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcome = ClientOutcome::default();
            let mut jobs = client_jobs.into_iter();
            if let Some(warmup) = jobs.next() {
                exchange_once(&transport, warmup, &mut outcome, false).await;
            }
            barrier.wait().await;
            let started = Instant::now();
            outcome.started = Some(started);
            for job in jobs {
                if started.elapsed() >= max {
                    break;
                }
                exchange_once(&transport, job, &mut outcome, true).await;
            }
            outcome.ended = Some(Instant::now());
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn exchange_once(transport: &Via, job: Job, outcome: &mut ClientOutcome, timed: bool) {
    let Job {
        ticket,
        url,
        body,
        key,
    } = job;
    let started = Instant::now();
    let answer: Result<Vec<u8>, String> = match transport {
        Via::Http(client) => {
            match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => response
                    .bytes()
                    .await
                    .map(|bytes| bytes.to_vec())
                    .map_err(|error| error.to_string()),
                Ok(response) => Err(format!("HTTP {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        }
        Via::InProcess(state) => {
            match portcullis_broker::exchange::exchange(
                state,
                ticket.expose(),
                &body,
                ClientAddr(None),
            )
            .await
            {
                Ok(envelope) => Ok(Answer::Result(envelope).to_json().unwrap()),
                Err(refusal) => Err(refusal.to_string()),
            }
        }
    };
    let elapsed = started.elapsed();
    match answer {
        Ok(body) if body.starts_with(b"{\"result\"") => {
            if timed {
                outcome.latencies.push(elapsed);
            }
            if let Some(key) = key {
                outcome.samples.push(Sample { body, ticket, key });
            }
        }
        Ok(body) => outcome
            .errors
            .push(String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()),
        Err(error) => outcome.errors.push(error),
    }
}

fn summarize(
    bench: &Bench,
    label: &str,
    in_process: bool,
    clients: usize,
    outcomes: Vec<ClientOutcome>,
    exchanged_before: u64,
) -> Row {
    let start = outcomes.iter().filter_map(|o| o.started).min();
    let end = outcomes.iter().filter_map(|o| o.ended).max();
    let seconds = match (start, end) {
        (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
        _ => 0.0,
    };
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .flat_map(|o| o.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut errors: Vec<String> = outcomes.iter().flat_map(|o| o.errors.clone()).collect();
    let samples: Vec<&Sample> = outcomes.iter().flat_map(|o| o.samples.iter()).collect();
    let broker_key = bench.broker.state.signing_key.verifying_key();
    let mut verified = 0;
    for sample in &samples {
        match verify_answer(sample, broker_key) {
            Ok(()) => verified += 1,
            Err(error) => errors.push(format!("sample did not verify: {error}")),
        }
    }
    // Every answer over HTTP was also counted by the broker (warm-ups included); the
    // in-process calls bypass the handler that counts.
    let exchanged = bench.broker.state.metrics.tickets_exchanged.get() - exchanged_before;
    let answered = latencies.len() as u64 + outcomes.len() as u64;
    if !in_process && (exchanged < latencies.len() as u64 || exchanged > answered) {
        errors.push(format!(
            "the broker counted {exchanged} exchanges, the clients {answered}"
        ));
    }
    Row {
        backend: label.to_owned(),
        clients,
        exchanges: latencies.len(),
        seconds,
        p50: percentile(50),
        p99: percentile(99),
        errors,
        sampled: samples.len(),
        verified,
        cpu_user: Duration::ZERO,
        cpu_sys: Duration::ZERO,
    }
}

/// CPU time (user, system) used so far by this process, all threads together.
fn process_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces:
    // the first of them is field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u32>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ ticks, 100 per second.
    let tick = Duration::from_millis(10);
    (tick * ticks(11), tick * ticks(12))
}

/// Opens a sampled answer as a launcher would and checks both signatures.
fn verify_answer(
    sample: &Sample,
    broker_key: &portcullis_proto::payload::VerifyingKey,
) -> Result<(), String> {
    let answer = TicketAnswer::from_json(&sample.body).map_err(|e| e.to_string())?;
    let envelope = answer
        .into_result()
        .map_err(|error| format!("refused: {}", error.message))?;
    let (plaintext, _secret) = envelope
        .open(&sample.key, &sample.ticket)
        .map_err(|e| e.to_string())?;
    let verified = payload::decode(&plaintext)
        .and_then(|decoded| {
            decoded.verify(
                broker_key,
                &sample.ticket,
                sample.key.encapsulation_key(),
                SignaturePolicy::Required,
            )
        })
        .map_err(|e| e.to_string())?;
    let params = verified.params_json();
    if params["protocol"] != "rdp" || params["transport"] != "direct" {
        return Err(format!("unexpected params {params}"));
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "ticket exchanges over real HTTP (broker, clients and database share the same cores; \
         target: {TARGET_PER_SEC:.0}/s on 2 cores with SQLite)"
    );
    println!(
        "  {:<28} {:>4} {:>9} {:>7} {:>11} {:>8} {:>8} {:>9} {:>16}",
        "backend",
        "N",
        "exchanges",
        "seconds",
        "exchanges/s",
        "p50 ms",
        "p99 ms",
        "vs target",
        "CPU µs usr+sys"
    );
    for row in rows {
        println!(
            "  {:<28} {:>4} {:>9} {:>7.2} {:>11.0} {:>8.2} {:>8.2} {:>8.2}x {:>7.0}+{:<7.0}{}",
            row.backend,
            row.clients,
            row.exchanges,
            row.seconds,
            row.rate(),
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3,
            row.rate() / TARGET_PER_SEC,
            row.cpu_user.as_secs_f64() * 1e6,
            row.cpu_sys.as_secs_f64() * 1e6,
            if row.ok() { "" } else { "  FAILED" }
        );
    }
    println!(
        "  (CPU: this process's user and system time per exchange, clients included, a \
         PostgreSQL server's not; 2 cores give 800 µs per exchange at the target rate.)"
    );
    println!(
        "  (PostgreSQL: the test server of portcullis-testkit, fsync and synchronous_commit off, on \
         the same cores; pool of 10 connections. Each exchange: 1 read, a share of 1 \
         group-committed write transaction, a readiness check (a TCP connect to the target, \
         cached for 2 s) and one ML-DSA-65 signature.)"
    );
}
