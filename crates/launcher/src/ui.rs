//! How the launcher talks to the user: on a terminal (a progress bar, prompts on stdin);
//! started from a browser, in its own window (module `window`); without either (a
//! script, a service), on stderr. Every message also goes to the log file, and every text
//! passes [`safe_text`] first: most of it came from the network.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::safe_text::safe_text;
use crate::script::HostFuture;

/// The launcher's user interface.
pub trait Ui: Send + Sync + 'static {
    /// Shows progress (0–100) of a step that waits on the broker.
    fn progress(&self, label: &str, percent: u8);
    /// The step that showed progress is over.
    fn progress_done(&self);
    /// Shows a message without blocking.
    fn message(&self, text: &str);
    /// Shows an error.
    fn error(&self, text: &str);
    /// Asks whether to trust a broker seen for the first time; `false` without a way to ask.
    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> HostFuture<bool>;
    /// Shows `text` until the user chooses to disconnect.
    fn wait_until_closed(&self, text: &str) -> HostFuture<()>;
    /// The launch runs on (a client program, open tunnels): where there is a window, it
    /// says "Connected to `service`" with *Disconnect*, and resolves when pressed.
    fn connected(&self, _service: &str) -> HostFuture<()> {
        Box::pin(std::future::pending())
    }
}

/// How this process talks to the user.
pub enum Interface {
    /// stderr is a terminal.
    Terminal,
    /// No terminal, but a desktop session: the launcher's window.
    Window,
    /// Neither: stderr and the log only.
    Headless,
}

/// The interface for this process: the terminal when stderr is one, else a window when
/// the session can show one, else stderr alone.
pub fn detect() -> Interface {
    if std::io::stderr().is_terminal() {
        Interface::Terminal
    } else if display_available() {
        Interface::Window
    } else {
        Interface::Headless
    }
}

/// Whether this session can show a window: on Linux an X display that answers (a Wayland
/// desktop runs X programs through XWayland), always on Windows and macOS.
fn display_available() -> bool {
    if cfg!(any(windows, target_os = "macos")) {
        return true;
    }
    #[cfg(unix)]
    if let Some(display) = std::env::var_os("DISPLAY").filter(|display| !display.is_empty()) {
        let name = display.to_string_lossy();
        if crate::x_display::answers(&name) {
            return true;
        }
        tracing::warn!(display = %name, "the X display does not answer: messages go to stderr");
    }
    false
}

/// Passes every text through [`safe_text`] before `U` shows it.
pub struct Safe<U>(pub U);

impl<U: Ui> Ui for Safe<U> {
    fn progress(&self, label: &str, percent: u8) {
        self.0.progress(&safe_text(label), percent);
    }

    fn progress_done(&self) {
        self.0.progress_done();
    }

    fn message(&self, text: &str) {
        self.0.message(&safe_text(text));
    }

    fn error(&self, text: &str) {
        self.0.error(&safe_text(text));
    }

    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> HostFuture<bool> {
        self.0
            .confirm_new_broker(&safe_text(host), &safe_text(fingerprint))
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        self.0.wait_until_closed(&safe_text(text))
    }

    fn connected(&self, service: &str) -> HostFuture<()> {
        self.0.connected(&safe_text(service))
    }
}

/// Writes a line to stderr; a closed stderr is no reason to fail.
pub(crate) fn to_stderr(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A terminal: messages on stderr, prompts on stdin.
#[derive(Default)]
pub struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
}

impl Ui for Terminal {
    fn progress(&self, label: &str, percent: u8) {
        let mut bar = self
            .bar
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(100);
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos:>3} %") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        bar.set_message(label.to_owned());
        bar.set_position(u64::from(percent.min(100)));
        tracing::info!(percent, "{label}");
    }

    fn progress_done(&self) {
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }

    fn message(&self, text: &str) {
        tracing::info!(message = text, "message to the user");
        to_stderr(text);
    }

    fn error(&self, text: &str) {
        tracing::error!("{text}");
        to_stderr(&format!("portcullis-launcher: {text}"));
    }

    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> HostFuture<bool> {
        let question = format!(
            "The broker {host} is new to this launcher. Its key fingerprint is\n  \
             {fingerprint}\nCompare it with the one your administrator or the portal \
             shows. Trust this broker? [y/N] "
        );
        Box::pin(async move {
            if !std::io::stdin().is_terminal() {
                return false;
            }
            let _ = write!(std::io::stderr(), "{question}");
            // A blocking read off the runtime's threads: a signal still stops the launch.
            let answer = tokio::task::spawn_blocking(|| {
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut answer)
                    .map(|_| answer)
            })
            .await;
            matches!(answer, Ok(Ok(answer)) if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
        })
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        to_stderr(&format!("{text}\nPress Enter to disconnect."));
        Box::pin(async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            })
            .await;
        })
    }
}

/// Neither a terminal nor a desktop (a script, a service, journald): every text on stderr
/// and in the log. A first contact needs `--trust-fingerprint`; a `waitUntilClosed`
/// connection lasts until the launcher is stopped (a signal), which ends it.
pub struct Headless;

impl Ui for Headless {
    fn progress(&self, label: &str, percent: u8) {
        tracing::info!(percent, "{label}");
    }

    fn progress_done(&self) {}

    fn message(&self, text: &str) {
        tracing::info!(message = text, "message to the user");
        to_stderr(text);
    }

    fn error(&self, text: &str) {
        tracing::error!("{text}");
        to_stderr(&format!("portcullis-launcher: {text}"));
    }

    fn confirm_new_broker(&self, _host: &str, _fingerprint: &str) -> HostFuture<bool> {
        Box::pin(async { false })
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        to_stderr(text);
        Box::pin(std::future::pending())
    }
}
