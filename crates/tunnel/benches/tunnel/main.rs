//! The tunnel server's capacity on loopback, against the budgets docs/tunnel.md states
//! ("Capacity"), printed side by side in one run:
//!
//! 1. throughput of one connection each way (bench → forwarder, sealing → tunnel server,
//!    opening → target), beside a plain unencrypted two-hop relay and a direct connection,
//!    with the whole process's CPU seconds per GiB;
//! 2. open latency (local connect at the forwarder → first byte at the target), for a full
//!    `Open` (broker `start` over HTTP, SQLite) and for an `Attach`;
//! 3. resident memory per idle connection;
//! 4. aborted handshakes: nothing left behind;
//! 5. throughput with real processes on loopback: iperf3 through `portcullis-launcher` and
//!    `portcullis tunnel`, beside two `socat` relays and plain TCP, with CPU per end;
//! 6. the same over a hop with 25 ms and 100 ms one-way delay, beside the hop alone.
//!
//! Phases 1–4 run in this one process on 127.0.0.1 — a real broker (SQLite), the tunnel
//! server, the launcher's forwarder, the targets and the bench's sockets — on one tokio
//! runtime with as many workers as CPUs, so they share the cores. Phases 5 and 6 run the
//! binaries (`portcullis dev`, `portcullis tunnel`, `portcullis-launcher`, built here in the
//! bench's profile) and iperf3 and socat (Debian packages) as separate processes.
//!
//! Run it with `cargo bench -p portcullis-tunnel --bench tunnel` (about 6 minutes);
//! `-- --quick` (or `PORTCULLIS_BENCH_QUICK=1`) makes a short run, and the phase names
//! `in-process`, `loopback` and `latency` after `--` run only those phases. Without the
//! `--bench` argument (as under `cargo test --all-targets`) it is a smoke run of phases 1–4
//! with tiny sizes.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod aborted;
mod idle;
mod iperf;
mod latency;
mod measure;
mod process_report;
mod processes;
mod programs;
mod real_stack;
mod records;
mod table;
mod targets;
mod throughput;

/// The tunnel integration tests' loopback stack: broker on SQLite, a registered tunnel
/// server, tickets issued through the store, forwarders (included: it needs
/// portcullis-broker, which portcullis-testkit must not depend on; it allows its own unused
/// items).
#[path = "../../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use portcullis_testkit::BenchMode as Mode;
use portcullis_tunnel::config::TunnelConfig;

use crate::iperf::Length;
use crate::processes::ProcessPlan;

/// File descriptors one idle tunneled connection costs here: the bench's socket, the
/// forwarder's local and tunnel sockets, the server's tunnel and target sockets, and the
/// target's socket.
const FDS_PER_CONNECTION: u64 = 6;
/// Descriptors kept for everything else (listeners, SQLite, the runtime).
const FD_RESERVE: u64 = 1024;
/// Connections per session in the idle-memory phase.
const PER_SESSION: usize = 1000;

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
    /// The phases with real processes (none in smoke mode).
    processes: Option<ProcessPlan>,
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
                processes: Some(ProcessPlan {
                    loopback: Some(Length {
                        secs: 5,
                        omit_secs: 0,
                    }),
                    rounds: 3,
                    hops: vec![
                        (
                            Duration::from_millis(25),
                            Length {
                                secs: 8,
                                omit_secs: 2,
                            },
                        ),
                        (
                            Duration::from_millis(100),
                            Length {
                                secs: 8,
                                omit_secs: 4,
                            },
                        ),
                    ],
                    tunnel_limits: String::new(),
                }),
            },
            Mode::Quick => Self {
                bytes: 32 * MIB,
                rounds: 3,
                latency_samples: 50,
                idle_connections: 2_000,
                aborted_warmup: 200,
                aborted: 1_000,
                processes: Some(ProcessPlan {
                    loopback: Some(Length {
                        secs: 3,
                        omit_secs: 0,
                    }),
                    rounds: 1,
                    hops: vec![
                        (
                            Duration::from_millis(25),
                            Length {
                                secs: 4,
                                omit_secs: 1,
                            },
                        ),
                        (
                            Duration::from_millis(100),
                            Length {
                                secs: 5,
                                omit_secs: 2,
                            },
                        ),
                    ],
                    tunnel_limits: String::new(),
                }),
            },
            Mode::Smoke => Self {
                bytes: 2 * MIB,
                rounds: 1,
                latency_samples: 3,
                idle_connections: 20,
                aborted_warmup: 10,
                aborted: 20,
                processes: None,
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

/// Phase names a run may be limited to (after `--`).
const PHASES: [&str; 3] = ["in-process", "loopback", "latency"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args();
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if let Some(unknown) = named.iter().find(|name| !PHASES.contains(name)) {
        eprintln!(
            "unknown phase {unknown:?}: the phases are {}",
            PHASES.join(", ")
        );
        std::process::exit(2);
    }
    let wants = |phase: &str| named.is_empty() || named.contains(&phase);
    let mut plan = Plan::for_mode(mode);
    if let Some(processes) = &mut plan.processes {
        if !wants("loopback") {
            processes.loopback = None;
        }
        if !wants("latency") {
            processes.hops.clear();
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!("Portcullis tunnel server benchmark ({mode:?} mode)");
    if mode == Mode::Smoke {
        println!("(no --bench argument: smoke run with tiny sizes; use `cargo bench` for numbers)");
    }
    let started = Instant::now();
    // The tools first: a missing one fails the run before anything is measured.
    let binaries = plan
        .processes
        .as_ref()
        .filter(|processes| processes.loopback.is_some() || !processes.hops.is_empty())
        .map(|_| {
            programs::require_tools(std::env::var_os(processes::PROFILE_ENV).is_some())
                .and_then(|()| programs::Binaries::build())
                .unwrap_or_else(|error| {
                    eprintln!("error: {error}");
                    std::process::exit(1);
                })
        });
    if wants("in-process") {
        in_process(&mut plan, cpus);
    }
    if let (Some(binaries), Some(processes)) = (binaries, &plan.processes) {
        println!();
        println!(
            "machine: {cpus} CPU(s); separate processes: portcullis dev (the broker), portcullis \
             tunnel, portcullis-launcher, iperf3 client and server, socat; the hop runs in this \
             process. Load now: {}",
            measure::load_average()
        );
        processes::run(binaries, processes);
        println!("load at the end: {}", measure::load_average());
    }
    println!();
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
}

/// Phases 1–4, in this process.
fn in_process(plan: &mut Plan, cpus: usize) {
    println!(
        "machine: {cpus} CPU(s); the bench's client and targets, the forwarder (launcher side), \
         the tunnel server and the broker (SQLite) run in this one process on one tokio \
         runtime with {cpus} workers and share these cores, all on 127.0.0.1. Load now: {}",
        measure::load_average()
    );
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
        .unwrap();
    let mut report = runtime.block_on(run(plan));
    report.records_secs_per_gib = records::seal_and_open_secs_per_gib(plan.bytes);
    println!();
    report.print(plan);
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
