//! Signals to the process group a launched program leads (a terminal and the `ssh` in it
//! end together).

/// What [`signal_group`] sends.
#[derive(Clone, Copy)]
pub(super) enum GroupSignal {
    /// SIGTERM: end cleanly.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// Signals the process group a launched program leads (Unix); elsewhere only the program
/// itself is killed, by the caller.
pub(super) fn signal_group(group: Option<u32>, signal: GroupSignal) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        let Some(pid) = group
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
        else {
            return;
        };
        let signal = match signal {
            GroupSignal::Terminate => Signal::TERM,
            GroupSignal::Kill => Signal::KILL,
        };
        // Fails only when every process of the group has ended.
        let _ = kill_process_group(pid, signal);
    }
    #[cfg(not(unix))]
    let _ = (group, signal);
}
