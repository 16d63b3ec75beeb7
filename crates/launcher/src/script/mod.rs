//! The launcher-script runtime: runs a broker's script (an ES module) in QuickJS with
//! exactly the API of docs/launcher-scripts.md §3–§5 — the `runtime` module (`Process`,
//! `Tasks`, `File`, `Logger`, `Utils`, also globals), the frozen `data` global and the
//! `Portcullis` global — under a memory limit and a limit on how long its synchronous code
//! runs between awaits.
//!
//! [`run`] returns once the module's evaluation settled, with what the script left running
//! ([`Settled`]): the launcher keeps going while its waitable apps run (and its tunnels say
//! so), then calls [`Settled::cleanup`].

mod file;
mod globals;
mod host;
mod js;
mod process;
mod process_group;
mod secrets;
mod state;
mod tasks;
mod utils;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use host::{HostFuture, ScriptHost, TunnelOptions};
use rquickjs::{AsyncContext, AsyncRuntime, CatchResultExt, CaughtError, Module, async_with};
use tokio::sync::{Notify, watch};

use state::{Clock, Proc, Shared};

/// How long after the script settled its early-unlinkable files are removed.
const EARLY_UNLINK_DELAY: Duration = Duration::from_secs(10);

/// How long [`Settled::kill_started`] waits for killed programs to end.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The bounds on a script run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptLimits {
    /// The most memory the script's engine may allocate. Default 64 MiB.
    pub memory_bytes: usize,
    /// The longest the script's synchronous code may run between awaits of the launcher's
    /// asynchronous functions. Default 5 s.
    pub sync_time: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            sync_time: Duration::from_secs(5),
        }
    }
}

/// The environment a script sees, where it may differ from the launcher's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptEnv {
    /// The `PATH` that `Process.findExecutable` and `Process.launch` search and that the
    /// started programs get; `None`: the launcher's own `PATH`.
    pub path: Option<OsString>,
}

/// Why a script failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptError {
    /// The script threw: its `Error`'s message, plain text, for the user.
    #[error("{0}")]
    Thrown(String),
    /// The script used more memory than [`ScriptLimits::memory_bytes`].
    #[error("the launcher script used too much memory")]
    MemoryLimit,
    /// The script's synchronous code ran longer than [`ScriptLimits::sync_time`].
    #[error("the launcher script ran too long without waiting")]
    TimeLimit,
    /// The script engine failed (or the script is not a valid module).
    #[error("the launcher script could not run: {0}")]
    Engine(String),
    /// The launcher stopped the script before it settled ([`run_until`]).
    #[error("the launcher stopped the script")]
    Aborted,
}

/// What the script left running that decides when the launcher ends
/// (docs/launcher-scripts.md §3 "When the launcher ends"), and what to clean up then.
#[derive(Debug)]
pub struct Settled {
    /// When the module's evaluation settled.
    settled_at: tokio::time::Instant,
    /// The ends of the waitable apps (`Tasks.addWaitableApp`).
    waitable: Vec<watch::Receiver<bool>>,
    /// `Tasks.addEarlyUnlinkableFile`; emptied by the task that removes them after 10 s.
    early_files: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    /// `Tasks.addLateUnlinkableFile` and every `File.createTempFile`.
    late_files: Vec<PathBuf>,
    /// The directories the launcher made for the script (its SSH identity).
    temp_dirs: Vec<PathBuf>,
    /// Every program `Process.launch` started, for [`Settled::kill_started`].
    started: Vec<Proc>,
}

impl Settled {
    /// Whether any waitable app still runs.
    pub fn apps_running(&self) -> bool {
        self.waitable.iter().any(|ended| !*ended.borrow())
    }

    /// Waits while any waitable app runs: returns once all have ended (at once if there
    /// are none).
    pub async fn wait_for_apps(&mut self) {
        for ended in &self.waitable {
            Proc::wait(ended.clone()).await;
        }
    }

    /// Kills the programs the script started that still run, and waits (at most 5 s) until
    /// they have ended: for a launcher that ends abnormally, whose programs would be left
    /// without their tunnels. A normal end leaves them alone.
    pub async fn kill_started(&self) {
        kill_and_wait(self.started.iter()).await;
    }

    /// Removes the script's files at the launcher's end: the late-unlinkable files and the
    /// temporary files, and the early-unlinkable ones, once 10 s have passed since the
    /// script settled (waiting for the rest of that time if needed, so the client program
    /// has read them).
    pub async fn cleanup(self) {
        let pending = !lock(&self.early_files).is_empty();
        if pending {
            tokio::time::sleep_until(self.settled_at + EARLY_UNLINK_DELAY).await;
        }
        let early = std::mem::take(&mut *lock(&self.early_files));
        remove_files(early.iter().chain(&self.late_files));
        remove_dirs(&self.temp_dirs);
    }
}

/// Kills the programs of `procs` that still run and waits (at most 5 s) until they ended.
async fn kill_and_wait(procs: impl Iterator<Item = &Proc>) {
    let running: Vec<&Proc> = procs.filter(|p| p.is_running()).collect();
    for proc in &running {
        proc.kill.notify_one();
    }
    let ended = async {
        for proc in &running {
            Proc::wait(proc.ended.clone()).await;
        }
    };
    if tokio::time::timeout(KILL_WAIT, ended).await.is_err() {
        tracing::warn!(target: "script", "a started program did not end when killed");
    }
}

/// Locks a file list, taking over a poisoned lock (a list is always consistent).
fn lock(files: &std::sync::Mutex<Vec<PathBuf>>) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    files
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes `files`, ignoring those already gone.
fn remove_files<'a>(files: impl IntoIterator<Item = &'a PathBuf>) {
    for path in files {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(target: "script", path = %path.display(), "removed"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(target: "script", path = %path.display(), %err, "file not removed");
            }
        }
    }
}

/// Removes the launcher's own directories with what they hold.
fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => tracing::debug!(target: "script", dir = %dir.display(), "removed"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(target: "script", dir = %dir.display(), %err, "directory not removed");
            }
        }
    }
}

/// How the module's evaluation ended, inside the engine.
enum Outcome {
    Done,
    /// The thrown value's message and whether it is the engine's out-of-memory error (or
    /// may be: when the engine runs out of memory while reporting that, the script sees
    /// `null` thrown).
    Threw {
        message: String,
        out_of_memory: bool,
        error_object: bool,
    },
    Interrupted,
    /// The launcher stopped the script.
    Aborted,
    /// The evaluation waits for a promise that nothing can settle any more.
    Stalled,
    Engine(String),
}

/// Resolves once the script's evaluation can no longer progress: no job is pending and
/// none of the launcher's asynchronous functions runs, so nothing can settle what it
/// awaits (`await new Promise(() => {})`). Checked each time the evaluation returned
/// `Pending` (`idle`), when the engine is free.
async fn stalled(runtime: &AsyncRuntime, idle: &Notify) {
    loop {
        idle.notified().await;
        if !runtime.is_job_pending().await {
            return;
        }
    }
}

/// Runs `source` (an ES module) with `data` as the frozen `data` global, the `runtime`
/// module and the `Portcullis` global; resolves when the module's evaluation settled.
///
/// Must be called within a Tokio runtime (started programs are watched by Tokio tasks).
/// On failure, the files the script created or registered are removed and the programs
/// it started are killed (and waited for, at most 5 s) before this returns.
pub async fn run(
    source: &str,
    data: &serde_json::Value,
    host: Arc<dyn ScriptHost>,
    limits: &ScriptLimits,
    env: &ScriptEnv,
) -> Result<Settled, ScriptError> {
    run_until(source, data, host, limits, env, std::future::pending()).await
}

/// Like [`run`], but when `abort` resolves before the script settled, the script is
/// stopped as if it had failed ([`ScriptError::Aborted`]): its programs killed, its files
/// removed.
pub async fn run_until(
    source: &str,
    data: &serde_json::Value,
    host: Arc<dyn ScriptHost>,
    limits: &ScriptLimits,
    env: &ScriptEnv,
    abort: impl Future<Output = ()>,
) -> Result<Settled, ScriptError> {
    let clock = Arc::new(Clock::new(limits.sync_time));
    let shared = Arc::new(Shared::new(
        host,
        Arc::clone(&clock),
        env.path.clone(),
        limits.memory_bytes,
    ));
    let data_json =
        serde_json::to_string(data).map_err(|err| ScriptError::Engine(err.to_string()))?;

    let runtime = AsyncRuntime::new().map_err(engine)?;
    runtime.set_memory_limit(limits.memory_bytes).await;
    let interrupt = Arc::clone(&clock);
    runtime
        .set_interrupt_handler(Some(Box::new(move || interrupt.should_interrupt())))
        .await;
    runtime
        .set_loader(globals::RuntimeResolver, globals::RuntimeLoader)
        .await;
    let context = AsyncContext::full(&runtime).await.map_err(engine)?;

    let source = source.to_owned();
    let shared_js = Arc::clone(&shared);
    clock.reset();
    let evaluation = async_with!(context => |ctx| {
        let evaluation = async {
            globals::install(&ctx, &shared_js, &data_json)?;
            let module = Module::declare(ctx.clone(), "script.js", source)?;
            let (_module, promise) = module.eval()?;
            promise.into_future::<()>().await
        };
        let interrupted = shared_js.clock.fired_event();
        tokio::select! {
            biased;
            () = interrupted => Outcome::Interrupted,
            result = evaluation => match result.catch(&ctx) {
                Ok(()) => Outcome::Done,
                Err(caught) => caught_outcome(caught),
            },
        }
    });
    let outcome = {
        // Each time the evaluation waits, whether anything can still wake it is checked.
        let idle = Notify::new();
        let mut evaluation = std::pin::pin!(evaluation);
        let evaluation = std::future::poll_fn(|cx| {
            let poll = evaluation.as_mut().poll(cx);
            if poll.is_pending() {
                idle.notify_one();
            }
            poll
        });
        tokio::select! {
            outcome = evaluation => outcome,
            () = stalled(&runtime, &idle) => Outcome::Stalled,
            () = abort => Outcome::Aborted,
        }
    };
    // Near the limit after a failure: the failure is (almost certainly) the limit's.
    let usage = runtime.memory_usage().await;
    let near_limit =
        usize::try_from(usage.malloc_size).unwrap_or(usize::MAX) >= limits.memory_bytes / 4 * 3;
    drop(context);
    drop(runtime);

    let failure = match outcome {
        Outcome::Done => None,
        Outcome::Aborted => Some(ScriptError::Aborted),
        _ if clock.fired() => Some(ScriptError::TimeLimit),
        Outcome::Interrupted => Some(ScriptError::TimeLimit),
        Outcome::Threw {
            out_of_memory: true,
            ..
        } => Some(ScriptError::MemoryLimit),
        Outcome::Threw {
            error_object: false,
            ..
        } if near_limit => Some(ScriptError::MemoryLimit),
        Outcome::Threw { message, .. } => Some(ScriptError::Thrown(message)),
        Outcome::Stalled => Some(ScriptError::Thrown(
            "The launcher script waits for something that never happens.".into(),
        )),
        Outcome::Engine(message) => Some(ScriptError::Engine(message)),
    };
    let mut tables = std::mem::take(&mut *shared.tables());
    if let Some(failure) = failure {
        kill_and_wait(tables.procs.values()).await;
        remove_files(
            tables
                .early_files
                .iter()
                .chain(&tables.late_files)
                .chain(&tables.temp_files),
        );
        remove_dirs(&tables.temp_dirs);
        return Err(failure);
    }

    let waitable = tables
        .waitable
        .iter()
        .filter_map(|h| tables.procs.get(h).map(|proc| proc.ended.clone()))
        .collect();
    let early_files = Arc::new(std::sync::Mutex::new(std::mem::take(
        &mut tables.early_files,
    )));
    if !lock(&early_files).is_empty() {
        let early = Arc::clone(&early_files);
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_UNLINK_DELAY).await;
            let files = std::mem::take(&mut *lock(&early));
            remove_files(&files);
        });
    }
    let mut late_files = tables.late_files;
    late_files.append(&mut tables.temp_files);
    Ok(Settled {
        settled_at: tokio::time::Instant::now(),
        waitable,
        early_files,
        late_files,
        temp_dirs: tables.temp_dirs,
        started: tables.procs.into_values().collect(),
    })
}

/// An engine error outside the script's own code.
fn engine(err: rquickjs::Error) -> ScriptError {
    ScriptError::Engine(err.to_string())
}

/// What a caught failure of the evaluation means.
fn caught_outcome(caught: CaughtError<'_>) -> Outcome {
    match caught {
        CaughtError::Exception(exception) => {
            let message = exception.message().unwrap_or_default();
            let name: Option<String> = exception.as_object().get("name").ok();
            let out_of_memory =
                name.as_deref() == Some("InternalError") && message == "out of memory";
            Outcome::Threw {
                message,
                out_of_memory,
                error_object: true,
            }
        }
        CaughtError::Value(value) => {
            let message = match value.as_string().map(|s| s.to_string()) {
                Some(Ok(text)) => text,
                _ => format!(
                    "The launcher script failed (it threw a {}).",
                    value.type_name()
                ),
            };
            Outcome::Threw {
                message,
                out_of_memory: false,
                error_object: false,
            }
        }
        CaughtError::Error(rquickjs::Error::Allocation) => Outcome::Threw {
            message: "out of memory".into(),
            out_of_memory: true,
            error_object: false,
        },
        CaughtError::Error(err) => Outcome::Engine(err.to_string()),
    }
}
