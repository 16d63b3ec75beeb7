//! The real programs of the process phases: Portcullis's own binaries (built here in the
//! bench's profile), the reference tools (iperf3, socat), child processes that never
//! outlive the bench, and what a process spent, read from `/proc/PID/stat`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A reference tool and the Debian package that has it.
pub(crate) struct Tool {
    pub(crate) command: &'static str,
    pub(crate) package: &'static str,
}

/// What the process phases run besides Portcullis.
pub(crate) const TOOLS: [Tool; 2] = [
    Tool {
        command: "iperf3",
        package: "iperf3",
    },
    Tool {
        command: "socat",
        package: "socat",
    },
];

/// The profiler, needed only when profiling is asked for.
pub(crate) const PERF: Tool = Tool {
    command: "perf",
    package: "linux-perf",
};

/// Fails with the `apt-get install` line when a reference tool is missing (or `perf`, when
/// `profiling`).
pub(crate) fn require_tools(profiling: bool) -> Result<(), String> {
    let missing: Vec<&Tool> = TOOLS
        .iter()
        .chain(profiling.then_some(&PERF))
        .filter(|tool| {
            Command::new(tool.command)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|tool| tool.command).collect();
    let packages: Vec<&str> = missing.iter().map(|tool| tool.package).collect();
    Err(format!(
        "{} missing: install {} (apt-get install {}) and run the bench again",
        names.join(" and "),
        if names.len() == 1 { "it" } else { "them" },
        packages.join(" ")
    ))
}

/// `portcullis` and `portcullis-launcher`, as a user runs them.
pub(crate) struct Binaries {
    pub(crate) portcullis: PathBuf,
    pub(crate) launcher: PathBuf,
}

impl Binaries {
    /// Builds both binaries in the profile of this bench (`cargo bench` runs it from
    /// `target/release/deps`, so `--release`) and returns their paths beside it.
    pub(crate) fn build() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|error| error.to_string())?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or("the bench executable is not in a target directory")?
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut build = Command::new(&cargo);
        build.args(["build", "--manifest-path"]).arg(&manifest);
        // What cargo set for running this bench would differ from a build in a shell and
        // make build scripts that watch these variables run again (and everything after
        // them be rebuilt): the nested build gets the environment the shell gave cargo.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_bench = (key.starts_with("CARGO_")
                && !["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&key.as_ref()))
                || key == "OUT_DIR"
                || key == "RUST_RECURSION_COUNT";
            if set_for_bench
                && !key.starts_with("CARGO_BUILD_")
                && !key.starts_with("CARGO_PROFILE_")
            {
                build.env_remove(key.as_ref());
            }
        }
        build.args(["-p", "portcullis", "-p", "portcullis-launcher"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        println!(
            "building portcullis and portcullis-launcher ({})…",
            dir.display()
        );
        let status = build
            .status()
            .map_err(|error| format!("cannot run {cargo}: {error}"))?;
        if !status.success() {
            return Err(format!("building the binaries failed: {status}"));
        }
        let binaries = Self {
            portcullis: dir.join("portcullis"),
            launcher: dir.join("portcullis-launcher"),
        };
        for path in [&binaries.portcullis, &binaries.launcher] {
            if !path.is_file() {
                return Err(format!("{} is missing after the build", path.display()));
            }
        }
        Ok(binaries)
    }
}

/// A child process killed (and reaped) when dropped, with its output in a log file.
pub(crate) struct Process {
    pub(crate) name: String,
    child: Child,
    pub(crate) log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the end of the log when the process has exited.
    pub(crate) fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); the end of its log:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
    }

    /// CPU seconds (user + system) of the process and of its children it has reaped.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.pid())
    }

    /// Sends SIGINT (a user's Ctrl-C) and waits at most `limit` for the exit.
    pub(crate) fn interrupt(mut self, limit: Duration) {
        if let Some(pid) = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                if std::env::var_os("PORTCULLIS_BENCH_KEEP").is_some() {
                    println!("{} exited with {status} after SIGINT", self.name);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "note: {} did not stop within {limit:?} of SIGINT; killed",
            self.name
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 40 lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `utime + stime + cutime + cstime` of `/proc/PID/stat` in seconds: the process's own CPU
/// time and that of the children it waited for (socat's forked relays).
pub(crate) fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return f64::NAN;
    };
    // Fields after the command name start at field 3 (`state`); utime, stime, cutime and
    // cstime are fields 14 to 17.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)
        .map(|times| times.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Whether `pid` has no child process now (`/proc/PID/task/PID/children`).
pub(crate) fn has_no_children(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|children| children.trim().is_empty())
}

pub(crate) use portcullis_testkit::free_port;

/// Waits (at most 30 s) until something listens on `addr`, an IPv4 address, read from
/// `/proc/net/tcp` rather than by connecting: a probe connection would reach the iperf3
/// server behind a relay as a bogus test and upset the next one.
pub(crate) fn wait_listening(addr: SocketAddr, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listens(addr) {
        process.check_alive();
        assert!(
            Instant::now() < deadline,
            "{} does not listen on {addr} after 30 s",
            process.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a socket in state LISTEN (0A) has local address `addr` in `/proc/net/tcp`.
fn listens(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    // The kernel prints the address as the u32 in memory order, in hex, then the port.
    let wanted = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
    })
}

/// Runs a short command to its end; its stdout, or a panic with its output.
pub(crate) fn run_to_end(what: &str, command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
