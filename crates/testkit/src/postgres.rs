//! A real PostgreSQL server for tests: Debian's `postgresql` package, a throwaway cluster
//! in a temporary directory, listening on 127.0.0.1 only, on a free port.
//!
//! One server per test process, started on first use and shared by every test in it;
//! each test gets its own fresh database from [`create_database`], so tests stay
//! independent. Several stores, and several processes (brokers started by a test), can
//! share one database through its URL.
//!
//! # Lifetime
//!
//! Rust never drops statics, so cleanup cannot rely on a destructor. The server runs under
//! a small `sh` supervisor, in its own process group (a Ctrl-C aimed at the test does not
//! reach it), whose standard input is a pipe from the test process. Nothing is ever
//! written to it: when the test process ends (normally, by panic, or killed with
//! SIGKILL) the kernel closes the pipe, the supervisor's `read` returns, and it stops the
//! server with SIGQUIT (immediate shutdown) and deletes the temporary directory. A run
//! therefore leaves no server and no files behind.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the tests run as root, `initdb` and the server
//! run as the `postgres` system user (created by the Debian package) through
//! `setpriv --reuid/--regid/--init-groups`, which `exec`s (unlike `runuser`, which forks
//! and would keep the server's process id from the supervisor). The temporary directory is
//! handed to that user. As any other user, both run as that user directly.
//!
//! Settings: `fsync`, `synchronous_commit` and `full_page_writes` off (a test cluster
//! need not survive a crash), trust authentication (loopback only), unix sockets in the
//! temporary directory, `max_connections = 300`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// Where Debian installs the server binaries, one folder per major version.
const PG_ROOT: &str = "/usr/lib/postgresql";
/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with a fresh port when another process grabbed ours first.
const PORT_ATTEMPTS: usize = 5;

/// Stops the server and removes its directory once stdin reaches end of file.
const SUPERVISOR: &str = r#"
dir=$1; shift
"$@" >"$dir/server.log" 2>&1 </dev/null &
pg=$!
read -r _ || true
kill -QUIT "$pg" 2>/dev/null
wait "$pg"
rm -rf "$dir"
"#;

/// The running test server.
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    version: String,
    startup: Duration,
    /// The supervisor's stdin: the server lives as long as this stays open, which is as
    /// long as the test process.
    _lifeline: ChildStdin,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// The process's server, started on first call. Blocks; panics with the reason (and the
/// server log) if PostgreSQL is missing or does not start.
pub fn server() -> &'static PgServer {
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(reason) => panic!("{reason}"),
    }
}

/// The URL of a fresh, empty database on the process's server.
pub async fn create_database() -> String {
    let server = match tokio::task::spawn_blocking(server).await {
        Ok(server) => server,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    };
    server.create_database().await
}

impl PgServer {
    /// The URL of `database` on this server, as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (cluster, sockets, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL major version in use.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How long `initdb` and the start took.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Creates `test_N` and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("test_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|error| panic!("connecting to the test server: {error}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        admin.close().await.ok();
        self.url(&name)
    }
}

/// `initdb` and start a server, retrying on a port collision.
fn start() -> Result<PgServer, String> {
    let began = Instant::now();
    let (version, bin) = find_binaries()?;
    let run_as = if running_as_root()? {
        Some(postgres_user()?)
    } else {
        None
    };
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match start_once(&bin, run_as) {
            Ok((port, dir, lifeline)) => {
                return Ok(PgServer {
                    port,
                    dir,
                    version,
                    startup: began.elapsed(),
                    _lifeline: lifeline,
                });
            }
            Err(Attempt::PortTaken(log)) => last_error = log,
            Err(Attempt::Failed(reason)) => return Err(reason),
        }
    }
    Err(format!(
        "the test PostgreSQL server found no free port in {PORT_ATTEMPTS} attempts; last log:\n{last_error}"
    ))
}

enum Attempt {
    /// Another process took the port between our probe and the server's bind.
    PortTaken(String),
    /// Anything else: give up.
    Failed(String),
}

fn start_once(
    bin: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<(u16, PathBuf, ChildStdin), Attempt> {
    let failed = Attempt::Failed;
    let dir = tempfile::Builder::new()
        .prefix("portcullis-pg-")
        .tempdir()
        .map_err(|e| failed(format!("creating the test server's directory: {e}")))?
        .keep();
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| {
            failed(format!(
                "handing {} to the postgres user: {e}",
                dir.display()
            ))
        })?;
    }

    let data = dir.join("data");
    let initdb = as_server_user(run_as, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("running initdb: {e}")))?;
    if !initdb.status.success() {
        let _ = fs::remove_dir_all(&dir);
        return Err(failed(format!(
            "initdb failed ({}):\n{}{}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        )));
    }

    let port = crate::free_port();
    let server = as_server_user(run_as, &bin.join("postgres"));
    let mut supervisor = Command::new("sh");
    supervisor
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("portcullis-pg-supervisor")
        .arg(&dir)
        .arg(server.get_program())
        .args(server.get_args())
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = supervisor
        .spawn()
        .map_err(|e| failed(format!("starting the PostgreSQL supervisor (sh): {e}")))?;
    let lifeline = child
        .stdin
        .take()
        .ok_or_else(|| failed("the supervisor has no stdin pipe".to_owned()))?;

    match wait_until_ready(&dir.join("server.log"), &mut child) {
        Ok(()) => Ok((port, dir, lifeline)),
        Err(outcome) => {
            // Closing the lifeline makes the supervisor stop the server and clean up.
            drop(lifeline);
            let _ = child.wait();
            Err(outcome)
        }
    }
}

/// Polls the server log until the server accepts connections, fails, or times out.
fn wait_until_ready(log: &Path, supervisor: &mut Child) -> Result<(), Attempt> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains("ready to accept connections") {
            return Ok(());
        }
        if text.contains("could not bind") || text.contains("Address already in use") {
            return Err(Attempt::PortTaken(text));
        }
        if text.contains("FATAL") || text.contains("PANIC") {
            return Err(Attempt::Failed(format!(
                "the test PostgreSQL server failed to start; its log:\n{text}"
            )));
        }
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(Attempt::Failed(format!(
                "the PostgreSQL supervisor exited ({status}); server log:\n{text}"
            )));
        }
        if Instant::now() > deadline {
            return Err(Attempt::Failed(format!(
                "the test PostgreSQL server did not accept connections within {} s; its log:\n{text}",
                READY_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `postgres`.
fn find_binaries() -> Result<(String, PathBuf), String> {
    let missing = || {
        format!(
            "PostgreSQL server binaries (initdb, postgres) not found under {PG_ROOT}/*/bin. \
             The storage tests run against a real PostgreSQL server: install it with \
             `apt-get install postgresql` (or run `bash scripts/test.sh`, which installs it)."
        )
    };
    let entries = fs::read_dir(PG_ROOT).map_err(|_| missing())?;
    let mut found: Vec<(Vec<u32>, String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, name, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, name, bin)| (name, bin))
        .ok_or_else(missing)
}

fn running_as_root() -> Result<bool, String> {
    fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .map_err(|e| format!("reading /proc/self: {e}"))
}

/// Uid and gid of the `postgres` system user.
fn postgres_user() -> Result<(u32, u32), String> {
    let missing = "the tests run as root, so PostgreSQL must run as the `postgres` system \
                   user, which does not exist: `apt-get install postgresql` creates it";
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or_else(|| missing.to_owned())
}

/// A command that runs `program` as the server user (see the module documentation).
fn as_server_user(run_as: Option<(u32, u32)>, program: &Path) -> Command {
    match run_as {
        Some(_) => {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}
