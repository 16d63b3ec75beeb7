//! A real OpenSSH session through the tunnel: `sshd` on 127.0.0.1 with keys the test
//! generates, `ssh` in batch mode to the forwarder's local port, a remote command whose
//! output comes back.

use std::process::Stdio;

use portcullis_testkit::bounded;
use portcullis_testkit::{Sshd, program};
use tokio::process::Command;

use crate::support::{STEP, Stack, detail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_through_the_tunnel_runs_a_remote_command() {
    let stack = Stack::start().await;
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let forwarder = stack.forwarder(sshd.addr()).await;
    let output = bounded(
        "ssh through the tunnel",
        STEP,
        Command::new(program("ssh", "openssh-client"))
            .args(sshd.ssh_args(
                "127.0.0.1",
                forwarder.local_addr().port(),
                "echo through-the-post-quantum-tunnel; uname -s",
            ))
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ssh failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "through-the-post-quantum-tunnel\nLinux\n");
    let (sent, received) = forwarder.byte_counts();
    assert!(sent > 1000 && received > 1000, "{sent} {received}");
    forwarder.end_session().await.unwrap();
    let stops = stack.wait_for_stops(1).await;
    let stop = detail(&stops[0]);
    assert_eq!(stop["sent"].as_u64(), Some(received), "{stop}");
    assert_eq!(stop["recv"].as_u64(), Some(sent), "{stop}");
}
