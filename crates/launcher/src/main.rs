//! `portcullis-launcher`: the handler of `udssv2://` links on end-user machines.

#![forbid(unsafe_code)]
// The command line is where the launcher talks to the user.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_launcher::desktop;
use portcullis_launcher::failure::{Failure, Kind};
use portcullis_launcher::launch::{LaunchOptions, launch_until};
use portcullis_launcher::paths::Dirs;
use portcullis_launcher::script::{ScriptEnv, ScriptLimits};
use portcullis_launcher::stop::StopReason;
use portcullis_launcher::stop::StopWatch;
use portcullis_launcher::trust::{Pinned, TrustStore, parse_key};
use portcullis_launcher::ui::{self, Interface, Safe, Ui};
use portcullis_launcher::window::Window;

/// Opens Portcullis connections from `udssv2://` links.
///
/// The launcher fetches its connection instructions from the broker end-to-end encrypted
/// under a fresh ML-KEM-768 key, verifies the broker's ML-DSA-65 signatures on them
/// against the key pinned for that broker, runs the signed launch script (which starts
/// your RDP, SSH or VNC client) and opens the post-quantum tunnel it needs.
///
/// The first time you use a broker, the launcher shows its key fingerprint and asks you to
/// confirm it (or takes --trust-fingerprint). Exit codes: 0 done (or Disconnect),
/// 1 internal error or stopped (Ctrl-C, SIGTERM, SIGHUP, the window closed before the
/// connection was made: the session and the programs the script started are ended first),
/// 2 bad link or arguments, 3 broker not trusted yet,
/// 4 broker unreachable, 5 refused by the broker (start again from the portal), 6 answer
/// tampered with, 7 launch script failed, 8 tunnel failed or lost, 9 broker key changed,
/// 10 script signature wrong, 11 payload signature wrong, 12 the administrator ended this
/// connection (at the broker: a disconnect, a disabled account, access taken away). Every
/// failure is also written to
/// stderr. The log is in the user's state directory (launcher.log).
#[derive(Debug, Parser)]
#[command(
    name = "portcullis-launcher",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// The link the portal opened: udssv2://HOST[:PORT]/TICKET/SCRAMBLER.
    url: Option<String>,
    /// Trust a broker seen for the first time if its key has this SHA-256 fingerprint
    /// (64 hex digits, as the portal and `portcullis admin keys show` print it).
    #[arg(long, value_name = "FINGERPRINT")]
    trust_fingerprint: Option<String>,
    /// A PEM file of CA certificates to trust for the broker and the tunnel servers,
    /// besides the system's (a private CA, the dev stack's certificate).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// How long to wait, at most, while the broker prepares the service.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    max_wait: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the broker keys this launcher trusts (one per broker host).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Make this launcher the handler of udssv2:// links for the current user (Linux: a
    /// .desktop file and xdg-mime; Windows and macOS: see docs/launcher.md).
    Register,
    /// Remove the udssv2:// handler registration.
    Unregister,
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Pin a broker's key: HOST as in the links (host or host:port), KEY its base64
    /// public key (`portcullis admin keys show` prints it).
    Add {
        /// The broker host.
        host: String,
        /// The base64 ML-DSA-65 public key.
        key: String,
        /// A PEM file of CA certificates to trust for this broker and its tunnel servers
        /// from now on (a private CA, the dev stack's self-signed certificate).
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
    },
    /// List the pinned brokers and their key fingerprints.
    List,
    /// Forget a broker's key (after the broker's key was rotated: then trust the new one).
    Remove {
        /// The broker host.
        host: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(dirs) = Dirs::from_env() else {
        eprintln!("portcullis-launcher: cannot find your home directory (HOME is not set)");
        return ExitCode::from(Kind::Internal.exit_code());
    };
    let _log = init_logging(&dirs);
    match args.command {
        Some(Command::Trust(command)) => match trust(&dirs, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("portcullis-launcher: {error:#}");
                ExitCode::from(Kind::Usage.exit_code())
            }
        },
        Some(Command::Register) => report(register()),
        Some(Command::Unregister) => report(unregister()),
        None => {
            let interface = ui::detect();
            let Some(url) = args.url else {
                ui::Headless.error(
                    "No link given: run portcullis-launcher udssv2://HOST/TICKET/SCRAMBLER \
                     (see --help).",
                );
                return ExitCode::from(Kind::Usage.exit_code());
            };
            let options = LaunchOptions {
                url,
                trust_fingerprint: args.trust_fingerprint,
                ca_file: args.ca_file,
                dirs,
                max_wait: Duration::from_secs(args.max_wait),
                limits: ScriptLimits::default(),
                env: ScriptEnv::default(),
            };
            match interface {
                Interface::Terminal => run_launch(options, Arc::new(Safe(ui::Terminal::default()))),
                Interface::Headless => run_launch(options, Arc::new(Safe(ui::Headless))),
                Interface::Window => run_in_window(options),
            }
        }
    }
}

/// A Tokio runtime, or the failure to say.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new()
        .map_err(|error| Failure::internal(format!("The launcher cannot start: {error}.")))
}

/// Takes over the signals (within a runtime) and injects the test faults of a debug build:
/// what resolves with the first reason to stop.
fn watch_for_stops() -> Result<impl Future<Output = StopReason> + Send + 'static, Failure> {
    let stop = StopWatch::install().map_err(|error| {
        Failure::internal(format!("cannot watch for termination signals: {error}"))
    })?;
    #[cfg(debug_assertions)]
    return Ok(fault::install(stop.stopped()));
    #[cfg(not(debug_assertions))]
    Ok(stop.stopped())
}

/// The exit code of a launch's result (its failure already shown).
fn exit_code(result: &Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure.kind.exit_code()),
    }
}

/// Runs `launch_until` as a task of its own: a panic inside it (logged by the panic hook)
/// ends the launch with the internal error's sentence and exit code instead of taking the
/// process or the window's loop with it.
async fn launch_task(
    options: LaunchOptions,
    ui: Arc<dyn Ui>,
    stop: impl Future<Output = StopReason> + Send + 'static,
) -> Result<(), Failure> {
    tokio::spawn(launch_until(options, ui, stop))
        .await
        .unwrap_or_else(|_| Err(Failure::internal(StopReason::Panic.sentence())))
}

/// Runs a launch on a Tokio runtime with the signals taken over from the start.
fn run_launch(options: LaunchOptions, ui: Arc<dyn Ui>) -> ExitCode {
    let result = runtime().and_then(|runtime| {
        let result = runtime.block_on(async {
            let stop = watch_for_stops()?;
            launch_task(options, Arc::clone(&ui), stop).await
        });
        // A prompt may still block a thread on stdin: do not wait for it.
        runtime.shutdown_background();
        result
    });
    if let Err(failure) = &result {
        ui.error(&failure.message);
    }
    exit_code(&result)
}

/// Runs a launch on Tokio's threads while the window runs on this (the main) thread.
fn run_in_window(options: LaunchOptions) -> ExitCode {
    let (window, window_ui) = Window::open();
    let window_ui = Arc::new(Safe(window_ui));
    let ui: Arc<dyn Ui> = Arc::clone(&window_ui) as Arc<dyn Ui>;
    let closed_early = window.closed_early();
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(failure) => {
            ui.error(&failure.message);
            window_ui.0.finished();
            window.run();
            return ExitCode::from(failure.kind.exit_code());
        }
    };
    let stop = {
        let _entered = runtime.enter();
        watch_for_stops()
    };
    let result_slot = Arc::clone(&outcome);
    runtime.spawn(async move {
        let result = match stop {
            Ok(stop) => {
                let stopped = async move {
                    tokio::select! {
                        reason = stop => reason,
                        () = closed_early.notified() => StopReason::WindowClosed,
                    }
                };
                launch_task(options, Arc::clone(&ui), stopped).await
            }
            Err(failure) => Err(failure),
        };
        if let Err(failure) = &result {
            ui.error(&failure.message);
        }
        *result_slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        window_ui.0.finished();
    });
    window.run();
    runtime.shutdown_background();
    let result = outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| Err(Failure::internal("The launcher's window closed.")));
    exit_code(&result)
}

/// Faults the tests inject into a debug build (release builds have none), at SIGUSR1:
/// `PORTCULLIS_LAUNCHER_FAULT=panic-on-sigusr1` makes a task of its own panic,
/// `panic-in-launch-on-sigusr1` the launch's own task (through the stop future it polls).
#[cfg(debug_assertions)]
mod fault {
    use std::future::Future;
    use std::pin::Pin;

    use portcullis_launcher::stop::StopReason;

    pub(crate) fn install(
        stop: impl Future<Output = StopReason> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = StopReason> + Send>> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let fault = std::env::var("PORTCULLIS_LAUNCHER_FAULT").unwrap_or_default();
            let user1 = || signal(SignalKind::user_defined1()).ok();
            match (fault.as_str(), user1()) {
                ("panic-on-sigusr1", Some(mut user1)) => {
                    tokio::spawn(async move {
                        if user1.recv().await.is_some() {
                            panic!("injected fault: a task panics at SIGUSR1");
                        }
                    });
                }
                ("panic-in-launch-on-sigusr1", Some(mut user1)) => {
                    return Box::pin(async move {
                        tokio::select! {
                            reason = stop => reason,
                            Some(()) = user1.recv() => {
                                panic!("injected fault: the launch panics at SIGUSR1")
                            }
                        }
                    });
                }
                _ => {}
            }
        }
        Box::pin(stop)
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis-launcher: {error:#}");
            ExitCode::from(Kind::Internal.exit_code())
        }
    }
}

fn applications_dir() -> anyhow::Result<PathBuf> {
    desktop::applications_dir(|name| std::env::var_os(name).map(PathBuf::from))
        .context("cannot find your data directory (neither XDG_DATA_HOME nor HOME is set)")
}

fn register() -> anyhow::Result<()> {
    if !cfg!(target_os = "linux") {
        anyhow::bail!(
            "register handles Linux desktops; docs/launcher.md explains Windows and macOS"
        );
    }
    let executable = std::env::current_exe().context("cannot find this program's path")?;
    let (path, default) = desktop::register(&applications_dir()?, &executable)
        .context("cannot write the desktop entry")?;
    println!("wrote {}", path.display());
    if default {
        println!("udssv2:// links now open with {}", executable.display());
    } else {
        println!(
            "xdg-mime is not installed: install xdg-utils, or set {} as the handler of {} in \
             your desktop's settings",
            desktop::DESKTOP_FILE,
            desktop::MIME_TYPE
        );
    }
    Ok(())
}

fn unregister() -> anyhow::Result<()> {
    if desktop::unregister(&applications_dir()?).context("cannot remove the desktop entry")? {
        println!("removed the udssv2:// handler");
    } else {
        println!("no udssv2:// handler was registered");
    }
    Ok(())
}

fn trust(dirs: &Dirs, command: TrustCommand) -> anyhow::Result<()> {
    let path = dirs.trust_file();
    let mut store = TrustStore::load(&path)?;
    match command {
        TrustCommand::Add { host, key, ca_file } => {
            let key = parse_key(&key)?;
            let fingerprint = key.fingerprint();
            // Absolute, since links are opened from any working directory.
            let ca_file = ca_file
                .map(|path| {
                    path.canonicalize()
                        .with_context(|| format!("cannot read the CA file {}", path.display()))
                })
                .transpose()?;
            let pinned = store.pin(&host, key)?;
            let ca_changed = ca_file.is_some() && store.ca_file(&host) != ca_file.as_deref();
            if ca_changed {
                store.set_ca_file(&host, ca_file);
            }
            if pinned == Pinned::New || ca_changed {
                store.save()?;
            }
            match pinned {
                Pinned::New => println!("trusted {host} (key fingerprint {fingerprint})"),
                Pinned::Unchanged => println!("{host} was already trusted with this key"),
            }
            if let Some(ca_file) = store.ca_file(&host) {
                println!(
                    "{host}: certificates are also checked against {}",
                    ca_file.display()
                );
            }
        }
        TrustCommand::List => {
            for (host, fingerprint) in store.entries() {
                match store.ca_file(host) {
                    Some(ca_file) => println!("{host}\t{fingerprint}\tca={}", ca_file.display()),
                    None => println!("{host}\t{fingerprint}"),
                }
            }
        }
        TrustCommand::Remove { host } => {
            if !store.remove(&host) {
                anyhow::bail!("{host} is not trusted: nothing to remove");
            }
            store.save()?;
            println!("removed {host}");
        }
    }
    Ok(())
}

/// Logs to `launcher.log` in the state directory (0600, also when it already existed with
/// a wider mode), never secrets: ticket ids appear shortened, keys and secrets not at all.
/// `RUST_LOG` sets the level (default info). The guard flushes the log when dropped.
fn init_logging(dirs: &Dirs) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let file = open_log(&dirs.log_file()).context("cannot open the log file")?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    Ok(guard)
}

/// Opens the log for appending: its directory created 0700, the file created 0600 or, if
/// it exists, set to 0600.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}
