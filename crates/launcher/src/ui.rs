//! How the launcher talks to the user: on a terminal (a progress bar, prompts on stdin),
//! or, started from a browser without one, through desktop dialogs when `zenity` or
//! `notify-send` is installed. Every message also goes to the log file.

use std::io::{BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

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
    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> bool;
    /// Shows `text` until the user chooses to disconnect.
    fn wait_until_closed(&self, text: &str) -> HostFuture<()>;
}

/// The interface for this process: the terminal when stderr is one, else the desktop.
pub fn detect() -> Box<dyn Ui> {
    if std::io::stderr().is_terminal() {
        Box::new(Terminal::default())
    } else {
        Box::new(Desktop)
    }
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
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    fn error(&self, text: &str) {
        tracing::error!("{text}");
        let _ = writeln!(std::io::stderr(), "portcullis-launcher: {text}");
    }

    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> bool {
        if !std::io::stdin().is_terminal() {
            return false;
        }
        let _ = write!(
            std::io::stderr(),
            "The broker {host} is new to this launcher. Its key fingerprint is\n  \
             {fingerprint}\nCompare it with the one your administrator or the portal \
             shows. Trust this broker? [y/N] "
        );
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        let _ = writeln!(std::io::stderr(), "{text}\nPress Enter to disconnect.");
        Box::pin(async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            })
            .await;
        })
    }
}

/// No terminal: desktop dialogs and notifications where available, the log always.
pub struct Desktop;

impl Desktop {
    fn run(program: &str, args: &[&str]) -> Option<bool> {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .map(|status| status.success())
    }
}

impl Ui for Desktop {
    fn progress(&self, label: &str, percent: u8) {
        tracing::info!(percent, "{label}");
    }

    fn progress_done(&self) {}

    fn message(&self, text: &str) {
        tracing::info!(message = text, "message to the user");
        let _ = Self::run("notify-send", &["Portcullis", text]);
    }

    fn error(&self, text: &str) {
        tracing::error!("{text}");
        if Self::run(
            "zenity",
            &[
                "--error",
                "--title=Portcullis",
                "--no-markup",
                &format!("--text={text}"),
            ],
        )
        .is_none()
        {
            let _ = Self::run("notify-send", &["--urgency=critical", "Portcullis", text]);
        }
    }

    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> bool {
        let text = format!(
            "The broker {host} is new to this launcher.\n\nIts key fingerprint is\n{fingerprint}\n\n\
             Compare it with the one your administrator or the portal shows. Trust this broker?"
        );
        Self::run(
            "zenity",
            &[
                "--question",
                "--title=Portcullis",
                "--no-markup",
                &format!("--text={text}"),
            ],
        )
        .unwrap_or(false)
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        let text = format!("--text={text}");
        Box::pin(async move {
            let shown = tokio::task::spawn_blocking(move || {
                Self::run(
                    "zenity",
                    &[
                        "--info",
                        "--title=Portcullis",
                        "--no-markup",
                        "--ok-label=Disconnect",
                        &text,
                    ],
                )
            })
            .await
            .ok()
            .flatten();
            if shown.is_none() {
                // No way to show a window: disconnect on Ctrl-C or a termination signal.
                let _ = tokio::signal::ctrl_c().await;
            }
        })
    }
}
