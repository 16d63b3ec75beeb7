//! iperf3, the tool an operator measures a path with: a server on loopback, and client
//! runs of one TCP connection whose JSON report gives the bytes the receiver got.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::programs::{Process, wait_listening};
use crate::real_stack::fresh_addr;

/// `iperf3 -s` on a fresh loopback port (it serves one test at a time).
pub(crate) struct IperfServer {
    pub(crate) addr: SocketAddr,
    _process: Process,
}

impl IperfServer {
    pub(crate) fn start(dir: &Path) -> Self {
        let addr = fresh_addr();
        let mut command = Command::new("iperf3");
        command.args([
            "-s",
            "-B",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ]);
        let mut process = Process::spawn("iperf3 -s", command, &dir.join("iperf3-server.log"));
        wait_listening(addr, &mut process);
        Self {
            addr,
            _process: process,
        }
    }
}

/// Upload: the iperf3 client sends. Download: it receives (`-R`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Upload,
    Download,
}

impl Direction {
    pub(crate) const BOTH: [Self; 2] = [Self::Upload, Self::Download];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// What one iperf3 run measured at the receiver, after the omitted warm-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) bytes: u64,
    pub(crate) secs: f64,
}

impl Run {
    pub(crate) fn mbit_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
}

/// How long a run lasts and how much of its start is left out (TCP's slow start, and the
/// tunnel window's growth, over a hop with latency).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Length {
    pub(crate) secs: u32,
    pub(crate) omit_secs: u32,
}

/// How often a run is tried again while the server is still busy with the previous test
/// (over a hop with latency, it sees that test's end late).
const BUSY_RETRIES: u32 = 40;

/// One iperf3 client run of one connection to `addr` (an iperf3 server, or a relay or a
/// launcher in front of one); bytes and seconds at the receiver.
pub(crate) fn run(addr: SocketAddr, direction: Direction, length: Length) -> Run {
    let mut tries = 0;
    loop {
        match try_run(addr, direction, length) {
            Err(error) if error.contains("busy") && tries < BUSY_RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => panic!("iperf3 to {addr} ({direction:?}) failed: {error}"),
            Ok(run) => return run,
        }
    }
}

fn try_run(addr: SocketAddr, direction: Direction, length: Length) -> Result<Run, String> {
    let mut command = Command::new("iperf3");
    command.args([
        "-c",
        &addr.ip().to_string(),
        "-p",
        &addr.port().to_string(),
        "-t",
        &length.secs.to_string(),
        "-O",
        &length.omit_secs.to_string(),
        "-J",
    ]);
    if direction == Direction::Download {
        command.arg("-R");
    }
    // iperf3 gives up on its own when the path stalls; a bound for the whole run anyway.
    let limit = Duration::from_secs(u64::from(length.secs + length.omit_secs) + 60);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("iperf3 to {addr} ({direction:?}) did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(out.path()).unwrap();
    let report: Value = serde_json::from_slice(&stdout).unwrap_or(Value::Null);
    if let Some(error) = report["error"].as_str() {
        return Err(error.to_owned());
    }
    let received = &report["end"]["sum_received"];
    let (Some(bytes), Some(secs)) = (received["bytes"].as_u64(), received["seconds"].as_f64())
    else {
        panic!(
            "iperf3 to {addr}: no sum_received in its report ({}):\n{}",
            status,
            String::from_utf8_lossy(&stdout)
        );
    };
    Ok(Run { bytes, secs })
}
