//! Throughput as an outsider measures it: iperf3 through the real processes, beside the
//! tools an operator compares with, one connection each way.
//!
//! - **loopback**: iperf3 → `portcullis-launcher`'s local listener → `portcullis tunnel` →
//!   iperf3 server, against the same iperf3 through two `socat -b65536` relays (the
//!   tunnel's hop count without crypto) and plain TCP; CPU seconds per GiB of each end
//!   from `/proc/PID/stat`.
//! - **over latency**: a [`Hop`] that delays every chunk each way, between iperf3 and its
//!   server (the hop alone) and between the launcher and the tunnel server.
//!
//! Every tunnel transfer is a fresh launch (a Connect in the portal, the launcher on the
//! link), ended with Ctrl-C after it, as a user does.

use std::time::{Duration, Instant};

use crate::iperf::{self, Direction, IperfServer, Length, Run};
use crate::programs::{Binaries, Process, has_no_children};
use crate::real_stack::{RealStack, fresh_addr};
use portcullis_testkit::Hop;

/// What the hop lets be in flight per direction: a TCP path with Linux's usual window.
pub(crate) const HOP_WINDOW: usize = 4 * 1024 * 1024;
/// socat's buffer, as in the reference measurement (`socat -b65536`).
const SOCAT_BUFFER: &str = "65536";

/// A path's two relaying processes (none for plain TCP), with their CPU per GiB moved.
#[derive(Clone, Debug)]
pub(crate) struct Ends {
    pub(crate) names: [&'static str; 2],
    pub(crate) secs_per_gib: [f64; 2],
}

/// One measured path and direction: the median run of its rounds.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) direction: Direction,
    pub(crate) path: &'static str,
    pub(crate) run: Run,
    pub(crate) ends: Option<Ends>,
}

/// The loopback rows, and the rows over the hop per one-way delay.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) loopback: Vec<Row>,
    pub(crate) loopback_length: Option<Length>,
    pub(crate) rounds: usize,
    pub(crate) hops: Vec<(Duration, Length, Vec<Row>)>,
}

/// Which process phases run, how long and how often.
pub(crate) struct ProcessPlan {
    pub(crate) loopback: Option<Length>,
    pub(crate) rounds: usize,
    /// One-way delays, each with its run length.
    pub(crate) hops: Vec<(Duration, Length)>,
    /// `[limits]` lines of every `portcullis tunnel` started.
    pub(crate) tunnel_limits: String,
}

/// The loopback paths, in printed order.
pub(crate) const PLAIN: &str = "plain TCP";
pub(crate) const SOCAT: &str = "2 socat relays";
pub(crate) const TUNNEL: &str = "launcher + tunnel";
/// The paths over a hop.
pub(crate) const HOP_ALONE: &str = "hop alone";
pub(crate) const TUNNEL_OVER_HOP: &str = "launcher + tunnel over the hop";

pub(crate) fn run(binaries: Binaries, plan: &ProcessPlan) -> Results {
    let mut stack = RealStack::start(binaries);
    let iperf = IperfServer::start(stack.dir.path());
    let mut results = Results {
        rounds: plan.rounds,
        loopback_length: plan.loopback,
        ..Results::default()
    };
    if let Some(length) = plan.loopback {
        println!("real processes on loopback, iperf3 -t {}…", length.secs);
        results.loopback = loopback(&mut stack, &iperf, length, plan);
        println!();
        crate::process_report::print_loopback(&results);
        println!();
    }
    for &(delay, length) in &plan.hops {
        println!(
            "real processes over a hop with {} ms each way, iperf3 -t {} -O {}…",
            delay.as_millis(),
            length.secs,
            length.omit_secs
        );
        let rows = over_hop(&mut stack, &iperf, delay, length, plan);
        println!();
        crate::process_report::print_hop(delay, length, &rows, plan.rounds);
        println!();
        results.hops.push((delay, length, rows));
    }
    results
}

fn loopback(
    stack: &mut RealStack,
    iperf: &IperfServer,
    length: Length,
    plan: &ProcessPlan,
) -> Vec<Row> {
    let listen = fresh_addr();
    stack.add_tunnel("bench-lo", listen, listen, &plan.tunnel_limits);
    let tunnel = stack.tunnel_count() - 1;
    let service = stack.add_service("iperf3 loopback", iperf.addr, "bench-lo");
    let near = fresh_addr();
    let far = fresh_addr();
    let mut socat_far = socat(stack, far, iperf.addr.port(), "socat 2");
    crate::programs::wait_listening(far, &mut socat_far);
    let mut socat_near = socat(stack, near, far.port(), "socat 1");
    crate::programs::wait_listening(near, &mut socat_near);
    interleaved(
        &[PLAIN, SOCAT, TUNNEL],
        plan.rounds,
        |direction, path| match path {
            PLAIN => (iperf::run(iperf.addr, direction, length), None),
            SOCAT => measured_run([&socat_near, &socat_far], ["socat 1", "socat 2"], || {
                iperf::run(near, direction, length)
            }),
            _ => through_launcher(stack, service, tunnel, direction, length),
        },
    )
}

fn over_hop(
    stack: &mut RealStack,
    iperf: &IperfServer,
    delay: Duration,
    length: Length,
    plan: &ProcessPlan,
) -> Vec<Row> {
    let group = format!("bench-{}ms", delay.as_millis());
    let listen = fresh_addr();
    let to_tunnel = Hop::start(listen, delay, HOP_WINDOW);
    stack.add_tunnel(&group, listen, to_tunnel.addr, &plan.tunnel_limits);
    let tunnel = stack.tunnel_count() - 1;
    let service = stack.add_service(&format!("iperf3 {group}"), iperf.addr, &group);
    let to_iperf = Hop::start(iperf.addr, delay, HOP_WINDOW);
    interleaved(
        &[HOP_ALONE, TUNNEL_OVER_HOP],
        plan.rounds,
        |direction, path| {
            if path == HOP_ALONE {
                (iperf::run(to_iperf.addr, direction, length), None)
            } else {
                through_launcher(stack, service, tunnel, direction, length)
            }
        },
    )
}

/// One run and what its relaying processes spent.
type Measured = (Run, Option<Ends>);

/// `rounds` interleaved rounds of every direction and path; each one's median run.
fn interleaved(
    paths: &[&'static str],
    rounds: usize,
    mut measure: impl FnMut(Direction, &'static str) -> Measured,
) -> Vec<Row> {
    let mut samples: Vec<(Direction, &'static str, Vec<Measured>)> = Direction::BOTH
        .iter()
        .flat_map(|&direction| paths.iter().map(move |&path| (direction, path, Vec::new())))
        .collect();
    for _ in 0..rounds {
        for (direction, path, runs) in &mut samples {
            runs.push(measure(*direction, path));
        }
    }
    samples
        .into_iter()
        .map(|(direction, path, runs)| median_row(direction, path, runs))
        .collect()
}

/// A fresh launch of `service`, one iperf3 run through its listener, and the launch ended
/// as a user does; with the CPU of the launcher and of tunnel server `tunnel`.
fn through_launcher(
    stack: &mut RealStack,
    service: i64,
    tunnel: usize,
    direction: Direction,
    length: Length,
) -> Measured {
    let launch = stack.launch(service);
    let measured = measured_run(
        [&launch.process, stack.tunnel(tunnel)],
        ["launcher", "tunnel server"],
        || iperf::run(launch.local, direction, length),
    );
    launch.end();
    measured
}

/// `socat -b65536 TCP-LISTEN:…,fork TCP:127.0.0.1:PORT`: one forked relay per connection.
fn socat(stack: &RealStack, listen: std::net::SocketAddr, to: u16, name: &str) -> Process {
    let mut command = std::process::Command::new("socat");
    command.args([
        "-b",
        SOCAT_BUFFER,
        &format!("TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork", listen.port()),
        &format!("TCP:127.0.0.1:{to}"),
    ]);
    Process::spawn(name, command, &stack.dir.path().join(format!("{name}.log")))
}

/// Runs `transfer` and measures what `processes` spent meanwhile (for socat, once its
/// forked relays ended and were reaped); with [`PROFILE_ENV`] set, profiles them too.
fn measured_run(
    processes: [&Process; 2],
    names: [&'static str; 2],
    transfer: impl FnOnce() -> Run,
) -> Measured {
    let profilers = std::env::var_os(PROFILE_ENV)
        .map(|dir| processes.map(|process| Profiler::attach(process, std::path::Path::new(&dir))));
    let before = processes.map(Process::cpu_seconds);
    let run = transfer();
    if let Some(profilers) = profilers {
        for profiler in profilers {
            profiler.stop();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes
        .iter()
        .any(|p| p.name.starts_with("socat") && !has_no_children(p.pid()))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = processes.map(Process::cpu_seconds);
    let gib = run.bytes as f64 / (1024.0 * 1024.0 * 1024.0);
    let ends = Ends {
        names,
        secs_per_gib: [0, 1].map(|end| (after[end] - before[end]) / gib),
    };
    (run, Some(ends))
}

fn median_row(direction: Direction, path: &'static str, mut runs: Vec<(Run, Option<Ends>)>) -> Row {
    runs.sort_by(|a, b| a.0.mbit_s().total_cmp(&b.0.mbit_s()));
    let (run, ends) = runs.swap_remove(runs.len() / 2);
    Row {
        direction,
        path,
        run,
        ends,
    }
}

/// Set to a directory, the tunnel runs are profiled: `perf record -g` (`cpu-clock`) and
/// `perf stat` (system calls, context switches) attached to each end for the transfer,
/// written there per process (`perf report -i FILE`).
pub(crate) const PROFILE_ENV: &str = "PORTCULLIS_BENCH_PROFILE";

/// The system calls `perf stat` counts.
const COUNTED: &str = "task-clock,context-switches,syscalls:sys_enter_read,\
syscalls:sys_enter_write,syscalls:sys_enter_readv,syscalls:sys_enter_writev,\
syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,\
syscalls:sys_enter_futex";

/// `perf record` and `perf stat` attached to one process.
struct Profiler {
    record: Process,
    stat: Process,
}

impl Profiler {
    fn attach(process: &Process, dir: &std::path::Path) -> Self {
        let _ = std::fs::create_dir_all(dir);
        let stem = dir.join(format!(
            "{}-{}",
            process.name.replace(' ', "-"),
            process.pid()
        ));
        let mut record = std::process::Command::new("perf");
        record
            .args(["record", "-g", "-e", "cpu-clock", "-F", "4999", "-p"])
            .arg(process.pid().to_string())
            .arg("-o")
            .arg(stem.with_extension("data"));
        let mut stat = std::process::Command::new("perf");
        stat.args(["stat", "-e", COUNTED, "-p"])
            .arg(process.pid().to_string())
            .arg("-o")
            .arg(stem.with_extension("stat"));
        let attached = Self {
            record: Process::spawn("perf record", record, &stem.with_extension("record.log")),
            stat: Process::spawn("perf stat", stat, &stem.with_extension("stat.log")),
        };
        // perf needs a moment to attach.
        std::thread::sleep(Duration::from_millis(300));
        attached
    }

    fn stop(self) {
        self.record.interrupt(Duration::from_secs(20));
        self.stat.interrupt(Duration::from_secs(20));
    }
}
