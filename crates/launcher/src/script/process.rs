//! The `Process` object: finding, starting and waiting for programs (docs/launcher-scripts.md
//! §4.1). Programs start without a shell, with their arguments as a vector and stdio null.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rquickjs::prelude::Opt;
use rquickjs::{Ctx, IntoJs, Object, Promise, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use super::js::{self, method, promise, throw};
use super::process_group::{GroupSignal, signal_group};
use super::state::{Proc, Shared};

/// The most `launchAndWait` keeps of each output stream.
const OUTPUT_CAP: usize = 1024 * 1024;
/// `launchAndWait`'s timeout when the script gives none (or 0).
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed program's process group has to end after SIGTERM, before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Builds the `Process` object.
pub(super) fn object<'js>(ctx: &Ctx<'js>, shared: &Arc<Shared>) -> rquickjs::Result<Object<'js>> {
    let process = Object::new(ctx.clone())?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &process,
        "findExecutable",
        move |ctx: Ctx<'js>, name: String, dirs: Opt<Vec<String>>| {
            let dirs: Vec<PathBuf> = dirs
                .0
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect();
            match find_executable(s.search_path(), &name, &dirs) {
                Some(path) => path.to_string_lossy().into_owned().into_js(&ctx),
                None => Ok(Value::new_null(ctx)),
            }
        },
    )?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &process,
        "launch",
        move |ctx: Ctx<'js>, path: String, args: Vec<String>, options: Opt<Object<'js>>| {
            let stdin = match options.0 {
                Some(options) => options.get::<_, Option<String>>("stdin")?,
                None => None,
            };
            launch(&ctx, &s, &path, &args, stdin.map(Zeroizing::new))
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &process, "isRunning", move |ctx: Ctx<'js>, h: f64| {
        let h = js::handle(&ctx, h)?;
        let tables = s.tables();
        let proc = tables.procs.get(&h).ok_or_else(|| unknown(&ctx, h))?;
        Ok::<_, rquickjs::Error>(proc.is_running())
    })?;

    let s = Arc::clone(shared);
    method(ctx, &process, "kill", move |ctx: Ctx<'js>, h: f64| {
        let h = js::handle(&ctx, h)?;
        let tables = s.tables();
        let proc = tables.procs.get(&h).ok_or_else(|| unknown(&ctx, h))?;
        proc.kill.notify_one();
        Ok::<_, rquickjs::Error>(())
    })?;

    let s = Arc::clone(shared);
    method(ctx, &process, "wait", move |ctx: Ctx<'js>, h: f64| {
        let ended = ended(&ctx, &s, h)?;
        promise(
            &ctx,
            &s.clock,
            async move {
                Proc::wait(ended).await;
                Ok(())
            },
            js::undefined,
        )
    })?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &process,
        "waitTimeout",
        move |ctx: Ctx<'js>, h: f64, ms: f64| {
            let ended = ended(&ctx, &s, h)?;
            let limit = js::millis(&ctx, "the timeout", ms)?;
            promise(
                &ctx,
                &s.clock,
                async move {
                    Ok(tokio::time::timeout(limit, Proc::wait(ended))
                        .await
                        .is_err())
                },
                js::boolean,
            )
        },
    )?;

    let s = Arc::clone(shared);
    method(
        ctx,
        &process,
        "launchAndWait",
        move |ctx: Ctx<'js>, path: String, args: Vec<String>, timeout: Opt<f64>| {
            launch_and_wait(&ctx, &s, path, args, timeout.0)
        },
    )?;

    let s = Arc::clone(shared);
    method(ctx, &process, "sleep", move |ctx: Ctx<'js>, ms: f64| {
        sleep(&ctx, &s, ms)
    })?;

    Ok(process)
}

/// `Process.sleep` and `Utils.sleep`.
pub(super) fn sleep<'js>(
    ctx: &Ctx<'js>,
    shared: &Shared,
    ms: f64,
) -> rquickjs::Result<Promise<'js>> {
    let duration = js::millis(ctx, "the time to sleep", ms)?;
    promise(
        ctx,
        &shared.clock,
        async move {
            tokio::time::sleep(duration).await;
            Ok(())
        },
        js::undefined,
    )
}

fn unknown(ctx: &Ctx<'_>, h: u32) -> rquickjs::Error {
    js::throw_type(ctx, &format!("{h} is not a handle of a started process"))
}

/// The end of the process `h` to wait for.
fn ended(ctx: &Ctx<'_>, shared: &Shared, h: f64) -> rquickjs::Result<watch::Receiver<bool>> {
    let h = js::handle(ctx, h)?;
    let tables = shared.tables();
    let proc = tables.procs.get(&h).ok_or_else(|| unknown(ctx, h))?;
    Ok(proc.ended.clone())
}

/// Searches `path_var`, then `extra_dirs`, for an executable file `name`. Relative
/// directories (and `PATH`'s empty entries, the current directory) are skipped.
pub(super) fn find_executable(
    path_var: Option<OsString>,
    name: &str,
    extra_dirs: &[PathBuf],
) -> Option<PathBuf> {
    if !is_file_name(name) {
        return None;
    }
    let from_path = path_var.map(|var| std::env::split_paths(&var).collect::<Vec<_>>());
    from_path
        .unwrap_or_default()
        .iter()
        .chain(extra_dirs)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `name` is a plain file name (no directory part).
fn is_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

/// Whether `path` is a file the user may execute. On Unix: a regular file (after
/// symbolic links) with an execute bit set.
pub(super) fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = path.metadata() else {
        return false;
    };
    if !metadata.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// The program `path` names: itself when it has a directory part, else found on `PATH`.
fn program(ctx: &Ctx<'_>, shared: &Shared, path: &str) -> rquickjs::Result<PathBuf> {
    if path.is_empty() {
        return Err(js::throw_type(
            ctx,
            "the program to start is an empty string",
        ));
    }
    if is_file_name(path) {
        return find_executable(shared.search_path(), path, &[])
            .ok_or_else(|| throw(ctx, &format!("The program {path} was not found.")));
    }
    Ok(PathBuf::from(path))
}

/// A command for `program` with `args`, stdin null and `PATH` set as the run says.
fn command(shared: &Shared, program: &Path, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    if let Some(path) = &shared.path {
        command.env("PATH", path);
    }
    command
}

/// `Process.launch`: starts the program and returns its handle. With `stdin`, the
/// program's standard input is a pipe that gets `stdin` and is then closed (how a script
/// hands over a password without a command line); the text is never logged.
fn launch(
    ctx: &Ctx<'_>,
    shared: &Shared,
    path: &str,
    args: &[String],
    stdin: Option<Zeroizing<String>>,
) -> rquickjs::Result<u32> {
    let program = program(ctx, shared, path)?;
    let mut command = command(shared, &program, args);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    // A group of its own, so that `kill` reaches what it started too (a terminal's shell
    // and ssh); its stdin is null, so it never needs the launcher's terminal.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|err| {
        throw(
            ctx,
            &format!("{} could not be started: {err}", program.display()),
        )
    })?;
    tracing::debug!(
        target: "script",
        program = %program.display(),
        stdin = stdin.is_some(),
        "started"
    );
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Written in the background (a program that reads late must not block the script),
        // then the pipe is closed: the program reads its end of input.
        tokio::spawn(async move {
            if let Err(error) = pipe.write_all(text.as_bytes()).await {
                tracing::debug!(target: "script", %error, "the program did not read its input");
            }
        });
    }

    let (ended_tx, ended_rx) = watch::channel(false);
    let kill = Arc::new(Notify::new());
    let kill_requested = Arc::clone(&kill);
    let group = child.id();
    tokio::spawn(async move {
        tokio::select! {
            _ = child.wait() => {}
            () = kill_requested.notified() => {
                signal_group(group, GroupSignal::Terminate);
                if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
                    signal_group(group, GroupSignal::Kill);
                    // Fails only when the process has already ended.
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
        ended_tx.send_replace(true);
    });

    let mut tables = shared.tables();
    tables.next_handle = tables.next_handle.wrapping_add(1).max(1);
    let h = tables.next_handle;
    tables.procs.insert(
        h,
        Proc {
            ended: ended_rx,
            kill,
            group,
        },
    );
    Ok(h)
}

/// `Process.launchAndWait`.
fn launch_and_wait<'js>(
    ctx: &Ctx<'js>,
    shared: &Shared,
    path: String,
    args: Vec<String>,
    timeout: Option<f64>,
) -> rquickjs::Result<Promise<'js>> {
    let limit = match timeout {
        None => DEFAULT_RUN_TIMEOUT,
        Some(ms) => match js::millis(ctx, "the timeout", ms)? {
            Duration::ZERO => DEFAULT_RUN_TIMEOUT,
            limit => limit,
        },
    };
    let program = program(ctx, shared, &path)?;
    let mut command = command(shared, &program, &args);
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let slots = Arc::clone(&shared.run_slots);
    promise(
        ctx,
        &shared.clock,
        async move {
            // The program starts once a slot is free; its timeout counts from then.
            let _slot = slots
                .acquire_owned()
                .await
                .map_err(|_| "the launcher is ending".to_owned())?;
            let name = program.display();
            let mut child = command
                .spawn()
                .map_err(|err| format!("{name} could not be started: {err}"))?;
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let run = async {
                let (stdout, stderr, _status) =
                    tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
                (stdout, stderr)
            };
            match tokio::time::timeout(limit, run).await {
                Ok((stdout, stderr)) => Ok((
                    String::from_utf8_lossy(&stdout).into_owned(),
                    String::from_utf8_lossy(&stderr).into_owned(),
                )),
                Err(_) => {
                    // Dropping the child kills it too (`kill_on_drop`); this says so at once.
                    let _ = child.start_kill();
                    Err(format!(
                        "{name} did not finish within {} ms.",
                        limit.as_millis()
                    ))
                }
            }
        },
        output,
    )
}

/// `{stdout, stderr}`.
fn output<'js>(ctx: &Ctx<'js>, (stdout, stderr): (String, String)) -> rquickjs::Result<Value<'js>> {
    let object = Object::new(ctx.clone())?;
    object.set("stdout", stdout)?;
    object.set("stderr", stderr)?;
    Ok(object.into_value())
}

/// Reads `stream` to its end, keeping the first [`OUTPUT_CAP`] bytes (the rest is read
/// and dropped, so the program never blocks on a full pipe).
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut chunk = vec![0; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP - kept.len();
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}
