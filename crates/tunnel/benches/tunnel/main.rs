//! The tunnel server's capacity on loopback, against the budgets of DESIGN.md and issue 8
//! §6, printed side by side in one run:
//!
//! 1. throughput of one connection each way (bench → forwarder, sealing → tunnel server,
//!    opening → target), beside a plain unencrypted two-hop relay and a direct connection,
//!    with the whole process's CPU seconds per GiB;
//! 2. open latency (local connect at the forwarder → first byte at the target), for a full
//!    `Open` (broker `start` over HTTP, SQLite) and for an `Attach`;
//! 3. resident memory per idle connection;
//! 4. aborted handshakes: nothing left behind.
//!
//! Everything runs in this one process on 127.0.0.1 — a real broker (SQLite), the tunnel
//! server, the launcher's forwarder, the targets and the bench's sockets — on one tokio
//! runtime with as many workers as CPUs, so they share the cores.
//!
//! Run it with `cargo bench -p portcullis-tunnel --bench tunnel` (under a minute);
//! `cargo bench -p portcullis-tunnel --bench tunnel -- --quick` (or
//! `PORTCULLIS_BENCH_QUICK=1`) makes a short run. Without the `--bench` argument (as under
//! `cargo test --all-targets`) it is a smoke run with tiny sizes.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod aborted;
mod idle;
mod latency;
mod measure;
mod records;
mod table;
mod targets;
mod throughput;

/// The tunnel integration tests' loopback stack: broker on SQLite, a registered tunnel
/// server, tickets issued through the store, forwarders (it allows its own unused items).
#[path = "../../tests/it/support/mod.rs"]
mod support;

use std::time::Instant;

use portcullis_tunnel::config::TunnelConfig;

/// File descriptors one idle tunneled connection costs here: the bench's socket, the
/// forwarder's local and tunnel sockets, the server's tunnel and target sockets, and the
/// target's socket.
const FDS_PER_CONNECTION: u64 = 6;
/// Descriptors kept for everything else (listeners, SQLite, the runtime).
const FD_RESERVE: u64 = 1024;
/// Connections per session in the idle-memory phase.
const PER_SESSION: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Full,
    Quick,
    Smoke,
}

/// What one mode runs.
struct Plan {
    /// Bytes per throughput transfer.
    bytes: u64,
    /// Interleaved throughput rounds; the median is reported.
    rounds: usize,
    latency_samples: usize,
    idle_connections: usize,
    aborted_warmup: usize,
    aborted: usize,
}

impl Plan {
    fn for_mode(mode: Mode) -> Self {
        const MIB: u64 = 1024 * 1024;
        match mode {
            Mode::Full => Self {
                bytes: 256 * MIB,
                rounds: 3,
                latency_samples: 200,
                idle_connections: 10_000,
                aborted_warmup: 200,
                aborted: 1_000,
            },
            Mode::Quick => Self {
                bytes: 32 * MIB,
                rounds: 3,
                latency_samples: 50,
                idle_connections: 2_000,
                aborted_warmup: 200,
                aborted: 1_000,
            },
            Mode::Smoke => Self {
                bytes: 2 * MIB,
                rounds: 1,
                latency_samples: 3,
                idle_connections: 20,
                aborted_warmup: 10,
                aborted: 20,
            },
        }
    }
}

/// The tunnel server's limits, raised so one source address (the bench) can hold every
/// idle connection and hand shake as fast as it likes.
fn bench_config(config: &mut TunnelConfig, connections: usize) {
    let limits = &mut config.limits;
    limits.max_connections = connections + 1_000;
    limits.max_connections_per_source = connections + 1_000;
    limits.handshakes_per_second_per_source = 1_000_000;
    limits.max_pending_opens_per_source = limits.max_pending_opens;
    limits.max_connections_per_session = PER_SESSION;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var("PORTCULLIS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mode = match (args.iter().any(|arg| arg == "--bench"), quick) {
        (false, _) => Mode::Smoke,
        (true, true) => Mode::Quick,
        (true, false) => Mode::Full,
    };
    let mut plan = Plan::for_mode(mode);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!("Portcullis tunnel server benchmark ({mode:?} mode)");
    println!(
        "machine: {cpus} CPU(s); the bench's client and targets, the forwarder (launcher side), \
         the tunnel server and the broker (SQLite) run in this one process on one tokio \
         runtime with {cpus} workers and share these cores, all on 127.0.0.1."
    );
    if mode == Mode::Smoke {
        println!("(no --bench argument: smoke run with tiny sizes; use `cargo bench` for numbers)");
    }
    let wanted = plan.idle_connections as u64 * FDS_PER_CONNECTION + FD_RESERVE;
    let limit = measure::raise_fd_limit(wanted);
    if limit < wanted {
        let fit = (limit.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION) as usize;
        println!(
            "note: RLIMIT_NOFILE is {limit}, below the {wanted} that {} idle connections need \
             ({FDS_PER_CONNECTION} descriptors each in this process): measuring {fit}.",
            plan.idle_connections
        );
        plan.idle_connections = fit;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
        .unwrap();
    let mut report = runtime.block_on(run(&plan));
    report.records_secs_per_gib = records::seal_and_open_secs_per_gib(plan.bytes);
    println!();
    report.print(&plan);
    println!();
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
}

/// Every phase's results.
struct Report {
    aborted: aborted::Results,
    idle: idle::Results,
    latency: latency::Results,
    throughput: throughput::Results,
    /// One thread's seconds per GiB to seal and open full-size records, without I/O.
    records_secs_per_gib: f64,
}

/// Runs the phases, the most memory-sensitive first: aborted handshakes (RSS compared
/// with its own start), idle connections, latency, then the bulk transfers.
async fn run(plan: &Plan) -> Report {
    let connections = plan.idle_connections;
    let stack = support::Stack::with(|config| bench_config(config, connections)).await;
    println!("aborted handshakes…");
    let aborted = aborted::run(&stack, plan.aborted_warmup, plan.aborted).await;
    println!("{connections} idle connections…");
    let idle = idle::run(&stack, connections, PER_SESSION).await;
    println!("open latency, {} samples…", plan.latency_samples);
    let latency = latency::run(&stack, plan.latency_samples).await;
    println!(
        "throughput, {} per transfer, {} round(s)…",
        measure::mib(plan.bytes),
        plan.rounds
    );
    let throughput = throughput::run(&stack, plan.bytes, plan.rounds).await;
    Report {
        aborted,
        idle,
        latency,
        throughput,
        records_secs_per_gib: 0.0,
    }
}
