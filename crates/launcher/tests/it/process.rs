//! The launcher as a user's machine runs it: the real binary in a process of its own,
//! with stderr to a pipe (no terminal, no display), its files in a temporary home.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::bounded;

/// The launcher binary under test (`PORTCULLIS_TEST_LAUNCHER` names another build, to
/// show a test failing on an older one).
fn launcher_binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_TEST_LAUNCHER").map_or_else(
        || env!("CARGO_BIN_EXE_portcullis-launcher").into(),
        PathBuf::from,
    )
}

/// A running launcher process.
pub(crate) struct LauncherProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

/// How a launcher process ended.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The exit code; `None` when a signal ended the process.
    pub(crate) code: Option<i32>,
    /// All it wrote to stderr.
    pub(crate) stderr: String,
}

impl LauncherProcess {
    /// Starts the launcher with `args`, its trust file and log in `home`, no display and
    /// `env` besides.
    pub(crate) fn spawn<I, S>(args: I, home: &Path, env: &[(&str, &str)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(launcher_binary());
        command
            .args(args)
            .env("PORTCULLIS_LAUNCHER_HOME", home)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the launcher starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut lines = lines;
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stderr }
    }

    /// Sends `signal` to the launcher.
    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// What the launcher wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most 60 s) for the launcher to end.
    pub(crate) async fn exit(mut self) -> Exit {
        let status = bounded(
            "the launcher's exit",
            Duration::from_secs(60),
            self.child.wait(),
        )
        .await
        .unwrap();
        // The pipe's reader finishes when the process closed it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Exit {
            code: status.code(),
            stderr: self.stderr(),
        }
    }
}

/// Waits (at most 60 s) until `path` holds a whole line, and returns it.
pub(crate) async fn read_line_file(path: &Path) -> String {
    bounded(
        &format!("a line in {}", path.display()),
        Duration::from_secs(60),
        async {
            loop {
                if let Ok(text) = std::fs::read_to_string(path) {
                    if text.ends_with('\n') {
                        break text.trim().to_owned();
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await
}

/// Waits (at most 10 s) until process `pid` is gone (or a zombie nobody reaps).
pub(crate) async fn process_ended(pid: &str) {
    let stat = Path::new("/proc").join(pid).join("stat");
    bounded(
        &format!("the end of process {pid}"),
        Duration::from_secs(10),
        async {
            loop {
                match std::fs::read_to_string(&stat) {
                    Err(_) => break,
                    Ok(text)
                        if text
                            .rsplit(')')
                            .next()
                            .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
                    {
                        break;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        },
    )
    .await;
}
