//! The launcher's side of the tunnel benchmark (issue 9 §8), printed side by side in one
//! run:
//!
//! 1. throughput of one connection each way through the launcher's local listener — a real
//!    launch of the built-in `tcp-linux.js` (exchange, verification, `Tasks.startTunnel`,
//!    the launcher's forwarder) — beside the tunnel benchmark's own client (a
//!    `client::Forwarder` with the default configuration, started directly after the same
//!    exchange) and a direct connection, with the ratio launcher / tunnel client
//!    (target ≥ 0.90);
//! 2. launch to local listener ready: from the broker's verified answer (the launcher's
//!    progress display closes) to the script's window after `startTunnel` resolved
//!    (target p50 ≤ 50 ms), and the whole launch for context.
//!
//! Everything runs in this one process on 127.0.0.1 — a real broker (HTTPS with its
//! self-signed certificate, SQLite), the tunnel server, the launcher, the targets and the
//! bench's sockets — on one tokio runtime with as many workers as CPUs, so they share the
//! cores.
//!
//! Run it with `cargo bench -p portcullis-launcher --bench launcher`;
//! `-- --quick` (or `PORTCULLIS_BENCH_QUICK=1`) makes a short run. Without the `--bench`
//! argument (as under `cargo test --all-targets`) it is a smoke run with tiny sizes.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

/// The launcher tests' loopback stack (included: it needs portcullis-broker and the tunnel
/// server, which portcullis-testkit must not depend on; it has more than the bench uses).
#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_broker::store::{Protocol, Transport};
use portcullis_launcher::exchange::BrokerClient;
use portcullis_launcher::launch::launch;
use portcullis_launcher::script::HostFuture;
use portcullis_launcher::ui::Ui;
use portcullis_link::client::{ClientConfig, Forwarder, TunnelAddress};
use portcullis_proto::TicketId;
use portcullis_proto::api::LaunchUrl;
use portcullis_proto::tunnel::derive_tunnel_secret;
use portcullis_testkit::targets::{self, CHUNK};
use portcullis_testkit::{BenchMode as Mode, Percentiles};
use tempfile::TempDir;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use support::{Stack, local_address};

/// What one mode runs.
struct Plan {
    /// Bytes per throughput transfer.
    bytes: u64,
    /// Interleaved throughput rounds; the median is reported.
    rounds: usize,
    /// Launches timed for the listener latency.
    launches: usize,
}

impl Plan {
    fn for_mode(mode: Mode) -> Self {
        const MIB: u64 = 1024 * 1024;
        match mode {
            Mode::Full => Self {
                bytes: 256 * MIB,
                rounds: 5,
                launches: 50,
            },
            Mode::Quick => Self {
                bytes: 32 * MIB,
                rounds: 3,
                launches: 20,
            },
            Mode::Smoke => Self {
                bytes: 2 * MIB,
                rounds: 1,
                launches: 3,
            },
        }
    }
}

/// The paths, in the order they are printed.
const PATHS: [&str; 3] = ["direct", "tunnel client", "launcher"];
const TUNNEL_CLIENT: usize = 1;
const LAUNCHER: usize = 2;

fn main() {
    let mode = Mode::from_args();
    let plan = Plan::for_mode(mode);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!("Portcullis launcher benchmark ({mode:?} mode)");
    println!(
        "machine: {cpus} CPU(s); the bench's client and targets, the launcher, the tunnel \
         server and the broker (HTTPS, SQLite) run in this one process on one tokio runtime \
         with {cpus} workers and share these cores, all on 127.0.0.1."
    );
    if mode == Mode::Smoke {
        println!("(no --bench argument: smoke run with tiny sizes; use `cargo bench` for numbers)");
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&plan));
    println!();
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
}

async fn run(plan: &Plan) {
    let stack = Stack::start().await;
    let home = tempfile::tempdir().unwrap();
    let (sink, mut reports) = targets::sink().await;
    let source = targets::source().await;
    let sink_service = stack
        .add_service("sink", Protocol::Tcp, Transport::Tunneled, sink)
        .await;
    let source_service = stack
        .add_service("source", Protocol::Tcp, Transport::Tunneled, source)
        .await;

    println!("launch to listener ready, {} launches…", plan.launches);
    let mut after_answer = Vec::with_capacity(plan.launches);
    let mut whole = Vec::with_capacity(plan.launches);
    for _ in 0..plan.launches {
        let launched = Launched::start(&stack, sink_service, &home).await;
        let (answered, ready) = launched.ui.times();
        after_answer.push(ready - answered);
        whole.push(ready - launched.started);
        launched.end().await;
    }

    println!(
        "throughput, {} per transfer, {} round(s)…",
        mib(plan.bytes),
        plan.rounds
    );
    let launched_sink = Launched::start(&stack, sink_service, &home).await;
    let launched_source = Launched::start(&stack, source_service, &home).await;
    let client_sink = tunnel_client(&stack, sink_service).await;
    let client_source = tunnel_client(&stack, source_service).await;
    let uploads = [sink, client_sink.local_addr(), launched_sink.local];
    let downloads = [source, client_source.local_addr(), launched_source.local];
    // Warm-up: opens the tunnel sessions (the measured connections attach).
    for path in 0..PATHS.len() {
        upload(uploads[path], CHUNK as u64, &mut reports).await;
        download(downloads[path], CHUNK as u64).await;
    }
    let mut secs = [
        [Vec::new(), Vec::new(), Vec::new()],
        [Vec::new(), Vec::new(), Vec::new()],
    ];
    for _ in 0..plan.rounds {
        for path in 0..PATHS.len() {
            secs[0][path].push(upload(uploads[path], plan.bytes, &mut reports).await);
            secs[1][path].push(download(downloads[path], plan.bytes).await);
        }
    }
    for forwarder in [client_sink, client_source] {
        assert!(forwarder.errors().is_empty(), "{:?}", forwarder.errors());
        let _ = forwarder.end_session().await;
    }
    launched_sink.end().await;
    launched_source.end().await;

    println!();
    println!("throughput, one connection, {} each way", mib(plan.bytes));
    println!(
        "  {:<26} {:>13} {:>6} {:>17}  target",
        "direction", "path", "MiB/s", "vs tunnel client"
    );
    for (direction, label) in ["upload (client → target)", "download (target → client)"]
        .iter()
        .enumerate()
    {
        let rate =
            |path: usize| plan.bytes as f64 / (1024.0 * 1024.0) / median(&secs[direction][path]);
        for (path, name) in PATHS.iter().enumerate() {
            let ratio = rate(path) / rate(TUNNEL_CLIENT);
            let target = if path == LAUNCHER {
                verdict(ratio >= 0.90, "≥ 0.90 of the tunnel client")
            } else {
                String::new()
            };
            println!(
                "  {label:<26} {name:>13} {:>6.0} {ratio:>17.2}  {target}",
                rate(path)
            );
        }
    }
    println!(
        "  median of {} interleaved round(s); launcher = the local listener of a real launch \
         of tcp-linux.js; tunnel client = client::Forwarder started directly (the tunnel \
         benchmark's client) with the same broker exchange.",
        plan.rounds
    );

    println!();
    println!("launch to local listener ready");
    println!(
        "  {:<34} {:>7} {:>8} {:>8} {:>8}  target",
        "span", "samples", "p50", "p99", "max"
    );
    let Percentiles { p50, p99, max } = Percentiles::of(&after_answer);
    println!(
        "  {:<34} {:>7} {:>8} {:>8} {:>8}  {}",
        "broker answered → listener ready",
        after_answer.len(),
        ms(p50),
        ms(p99),
        ms(max),
        verdict(p50 <= Duration::from_millis(50), "p50 ≤ 50 ms")
    );
    let Percentiles { p50, p99, max } = Percentiles::of(&whole);
    println!(
        "  {:<34} {:>7} {:>8} {:>8} {:>8}",
        "launch() called → listener ready",
        whole.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "  answered = the exchange returned (payload decrypted, both signatures verified); \
         ready = tcp-linux.js opens its window, after startTunnel resolved (listener bound, \
         the tunnel server's Test health check answered). The whole launch adds the HTTPS \
         connection and the ticket exchange (ML-KEM-768, broker-side signing)."
    );
}

/// A running launch of `tcp-linux.js` whose window is open.
struct Launched {
    started: Instant,
    local: SocketAddr,
    ui: Arc<BenchUi>,
    task: JoinHandle<Result<(), portcullis_launcher::failure::Failure>>,
}

impl Launched {
    async fn start(stack: &Stack, service: i64, home: &TempDir) -> Self {
        let options = stack.trusting_options(stack.link_to(service).await, home);
        let ui = Arc::new(BenchUi::default());
        let started = Instant::now();
        let task = tokio::spawn(launch(options, Arc::clone(&ui) as Arc<dyn Ui>));
        let text = tokio::time::timeout(Duration::from_secs(30), ui.shown.notified())
            .await
            .map(|()| ui.text.lock().unwrap().clone())
            .expect("the script's window within 30 s");
        Self {
            started,
            local: local_address(&text),
            ui,
            task,
        }
    }

    /// Presses Disconnect and waits for the launcher's end.
    async fn end(self) {
        let closer = self.ui.closer.lock().unwrap().take().unwrap();
        closer.notify_one();
        self.task.await.unwrap().unwrap();
    }
}

/// The tunnel benchmark's client for `service`: the same exchange as a launch, then a
/// `client::Forwarder` with the default configuration.
async fn tunnel_client(stack: &Stack, service: i64) -> Forwarder {
    let url = LaunchUrl::parse(&stack.link_to(service).await).unwrap();
    let client = BrokerClient::new(
        url.host(),
        Some(&support::ca_file(&stack.dir)),
        Duration::from_secs(30),
    )
    .unwrap();
    let pinned = stack.broker.state.signing_key.verifying_key().clone();
    let launch = client
        .exchange(
            url.ticket(),
            url.scrambler(),
            &pinned,
            Duration::from_secs(10),
            &mut |_| {},
        )
        .await
        .unwrap();
    let tunnel = &launch.params["tunnel"];
    let ticket = TicketId::parse(tunnel["ticket"].as_str().unwrap()).unwrap();
    let secret = derive_tunnel_secret(&launch.kem_secret, &ticket).unwrap();
    let address = TunnelAddress {
        host: tunnel["host"].as_str().unwrap().to_owned(),
        port: u16::try_from(tunnel["port"].as_u64().unwrap()).unwrap(),
        tls: None,
    };
    Forwarder::start(address, ticket, secret, ClientConfig::default())
        .await
        .unwrap()
}

/// The user's side: notes when the broker's answer arrived and when the script's window
/// opened, and closes the window when told.
#[derive(Default)]
struct BenchUi {
    answered: Mutex<Option<Instant>>,
    ready: Mutex<Option<Instant>>,
    text: Mutex<String>,
    shown: Notify,
    closer: Mutex<Option<Arc<Notify>>>,
}

impl BenchUi {
    fn times(&self) -> (Instant, Instant) {
        (
            self.answered.lock().unwrap().expect("the broker answered"),
            self.ready.lock().unwrap().expect("the listener is ready"),
        )
    }
}

impl Ui for BenchUi {
    fn progress(&self, _label: &str, _percent: u8) {}
    fn progress_done(&self) {
        *self.answered.lock().unwrap() = Some(Instant::now());
    }
    fn message(&self, text: &str) {
        println!("message: {text}");
    }
    fn error(&self, text: &str) {
        println!("error: {text}");
    }
    fn confirm_new_broker(&self, _host: &str, _fingerprint: &str) -> HostFuture<bool> {
        Box::pin(async { false })
    }
    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        *self.ready.lock().unwrap() = Some(Instant::now());
        text.clone_into(&mut self.text.lock().unwrap());
        let close = Arc::new(Notify::new());
        let waiter = Arc::clone(&close);
        *self.closer.lock().unwrap() = Some(close);
        self.shown.notify_one();
        Box::pin(async move { waiter.notified().await })
    }
}

/// Writes `bytes` to `addr`, closes, and waits for the sink's count; the seconds taken.
async fn upload(addr: SocketAddr, bytes: u64, reports: &mut mpsc::UnboundedReceiver<u64>) -> f64 {
    let started = Instant::now();
    targets::send_to_sink(addr, bytes, reports).await;
    started.elapsed().as_secs_f64()
}

/// Asks `addr` for `bytes` and reads them to the end; the seconds taken.
async fn download(addr: SocketAddr, bytes: u64) -> f64 {
    let started = Instant::now();
    targets::fetch_from_source(addr, bytes).await;
    started.elapsed().as_secs_f64()
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn verdict(ok: bool, target: &str) -> String {
    format!("{} ({target})", if ok { "ok" } else { "MISSED" })
}
