//! Why a launch stops before its end: a termination signal (Ctrl-C, SIGTERM, SIGHUP: the
//! desktop session ends, the terminal closes) or a panic somewhere in the launcher. Either
//! way the launch ends its tunnel sessions and kills what its script started
//! (docs/launcher.md, "How the launcher ends").

use std::sync::Arc;

use tokio::sync::Notify;

/// What stopped the launcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT: Ctrl-C on the terminal.
    Interrupt,
    /// SIGTERM: asked to end (a logout, `kill`, a service manager).
    Terminate,
    /// SIGHUP: the terminal or the session went away.
    Hangup,
    /// A part of the launcher panicked.
    Panic,
    /// The user closed the launcher's window before the connection was made.
    WindowClosed,
}

impl StopReason {
    /// The sentence for the user: what happened and what to do.
    pub fn sentence(self) -> String {
        let what = match self {
            Self::Interrupt => "The launcher was stopped (Ctrl-C)",
            Self::Terminate => "The launcher was stopped (SIGTERM)",
            Self::Hangup => "The launcher was stopped (SIGHUP: the terminal or session closed)",
            Self::Panic => "The launcher hit an internal error (launcher.log has the details)",
            Self::WindowClosed => "The launcher's window was closed before the connection was made",
        };
        format!(
            "{what}: it ended the connection and the programs it started. Start the \
             connection again from the portal."
        )
    }
}

/// Watches for the reasons to stop from the moment it is installed.
#[derive(Debug)]
pub struct StopWatch {
    panicked: Arc<Notify>,
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 3],
}

impl StopWatch {
    /// Takes over SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere) from now on, and chains a
    /// panic hook that logs the panic and stops the launch. Must be called within a Tokio
    /// runtime.
    pub fn install() -> std::io::Result<Self> {
        let panicked = Arc::new(Notify::new());
        let notify = Arc::clone(&panicked);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!(panic = %info, "internal error: a part of the launcher panicked");
            notify.notify_one();
            previous(info);
        }));
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = [
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ];
            Ok(Self { panicked, signals })
        }
        #[cfg(not(unix))]
        Ok(Self { panicked })
    }

    /// Resolves with the first reason to stop.
    pub async fn stopped(self) -> StopReason {
        #[cfg(unix)]
        {
            let [mut interrupt, mut terminate, mut hangup] = self.signals;
            tokio::select! {
                Some(()) = interrupt.recv() => StopReason::Interrupt,
                Some(()) = terminate.recv() => StopReason::Terminate,
                Some(()) = hangup.recv() => StopReason::Hangup,
                () = self.panicked.notified() => StopReason::Panic,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                Ok(()) = tokio::signal::ctrl_c() => StopReason::Interrupt,
                () = self.panicked.notified() => StopReason::Panic,
            }
        }
    }
}
