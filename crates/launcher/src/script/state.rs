//! What one script run shares between its API functions and the launcher: the time limit's
//! clock, the table of started processes and the files to remove.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};

use super::host::ScriptHost;
use super::process_group::{self, GroupSignal};

/// The deadline of the script's synchronous code: reset whenever the script resumes after
/// waiting for the launcher (an `await` on an API promise), checked by the engine's
/// interrupt handler.
pub(super) struct Clock {
    start: Instant,
    limit: Duration,
    /// Milliseconds since `start` after which the script is interrupted.
    deadline_ms: AtomicU64,
    /// Set once the interrupt handler stopped the script.
    fired: AtomicBool,
    /// Notified when `fired` is set.
    fired_event: Notify,
}

impl Clock {
    pub(super) fn new(limit: Duration) -> Self {
        let clock = Self {
            start: Instant::now(),
            limit,
            deadline_ms: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            fired_event: Notify::new(),
        };
        clock.reset();
        clock
    }

    /// Starts a new period of synchronous code.
    pub(super) fn reset(&self) {
        let deadline = self.start.elapsed().saturating_add(self.limit);
        let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    /// The interrupt handler: whether the script must stop now. Once it has fired, it keeps
    /// stopping whatever script code still runs.
    pub(super) fn should_interrupt(&self) -> bool {
        if self.fired.load(Ordering::Relaxed) {
            return true;
        }
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now >= self.deadline_ms.load(Ordering::Relaxed) {
            self.fired.store(true, Ordering::Relaxed);
            self.fired_event.notify_one();
            return true;
        }
        false
    }

    /// Resolves once the time limit stopped the script.
    pub(super) async fn fired_event(&self) {
        if !self.fired() {
            self.fired_event.notified().await;
        }
    }

    /// The time left to the script's synchronous code now.
    pub(super) fn remaining(&self) -> Duration {
        let deadline = Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed));
        deadline.saturating_sub(self.start.elapsed())
    }

    /// Whether the time limit stopped the script.
    pub(super) fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }
}

/// A process started by `Process.launch`. A watcher task owns the child: it publishes the
/// exit status and kills the child when asked.
#[derive(Debug)]
pub(super) struct Proc {
    /// `true` once the process has ended.
    pub(super) ended: watch::Receiver<bool>,
    /// Wakes the watcher to kill the child.
    pub(super) kill: Arc<Notify>,
    /// The process group the child leads (its pid), for a kill while unwinding.
    pub(super) group: Option<u32>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A launch that panics cannot end its programs in order (its tunnels are gone):
        // they are told to end as it unwinds, rather than left running.
        if std::thread::panicking() && self.is_running() {
            process_group::signal_group(self.group, GroupSignal::Terminate);
            self.kill.notify_one();
        }
    }
}

impl Proc {
    /// Whether the process still runs.
    pub(super) fn is_running(&self) -> bool {
        !*self.ended.borrow()
    }

    /// Resolves when the process has ended.
    pub(super) async fn wait(mut ended: watch::Receiver<bool>) {
        // An error means the watcher is gone, which it only is once the child ended (or
        // the runtime shuts down): either way there is nothing left to wait for.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

/// The mutable part of a run.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) next_handle: u32,
    pub(super) procs: HashMap<u32, Proc>,
    pub(super) waitable: Vec<u32>,
    pub(super) early_files: Vec<PathBuf>,
    pub(super) late_files: Vec<PathBuf>,
    pub(super) temp_files: Vec<PathBuf>,
    /// Directories the launcher made for the script (`Portcullis.sshIdentity`), removed
    /// with what they hold at the end.
    pub(super) temp_dirs: Vec<PathBuf>,
    /// The files `Portcullis.sshIdentity` wrote: key, certificate.
    pub(super) ssh_identity: Option<(PathBuf, PathBuf)>,
}

/// Everything the API functions of one run share.
pub(super) struct Shared {
    pub(super) host: Arc<dyn ScriptHost>,
    pub(super) clock: Arc<Clock>,
    /// `PATH` for `Process.findExecutable`, `Process.launch` and the started programs;
    /// `None`: the launcher's own.
    pub(super) path: Option<OsString>,
    /// The memory limit, also the largest file `File.read` returns.
    pub(super) memory_bytes: usize,
    /// `Process.launchAndWait` calls running at once, each holding up to 2 MiB of output:
    /// the others wait their turn.
    pub(super) run_slots: Arc<Semaphore>,
    tables: Mutex<Tables>,
}

/// The most `Process.launchAndWait` calls that run at once.
pub(super) const CONCURRENT_RUNS: usize = 8;

impl Shared {
    pub(super) fn new(
        host: Arc<dyn ScriptHost>,
        clock: Arc<Clock>,
        path: Option<OsString>,
        memory_bytes: usize,
    ) -> Self {
        Self {
            host,
            clock,
            path,
            memory_bytes,
            run_slots: Arc::new(Semaphore::new(CONCURRENT_RUNS)),
            tables: Mutex::new(Tables::default()),
        }
    }

    /// The tables; a poisoned lock is taken over (the tables stay consistent: every
    /// change is a single push or insert).
    pub(super) fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `PATH` to search.
    pub(super) fn search_path(&self) -> Option<OsString> {
        self.path.clone().or_else(|| std::env::var_os("PATH"))
    }
}
