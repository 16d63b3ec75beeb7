//! Running the `portcullis` binary: commands, and `portcullis dev` in the background.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn portcullis() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.env_remove("RUST_LOG");
    command
}

pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = portcullis()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    wait_with_timeout(child, Duration::from_secs(60))
}

pub(crate) fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "portcullis did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Waits until `path` exists with a modification time other than `before`.
pub(crate) fn wait_for_new_file(
    path: &Path,
    before: Option<std::time::SystemTime>,
    child: &mut Child,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let modified = std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok();
        if modified.is_some() && modified != before {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("portcullis dev exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts `portcullis dev --dir DIR --port 0` with `extra` arguments and waits for its
/// dev.json.
pub(crate) fn start_dev(dir: &Path, extra: &[&str]) -> (Child, serde_json::Value) {
    let info_path = dir.join("dev.json");
    let before = std::fs::metadata(&info_path)
        .and_then(|meta| meta.modified())
        .ok();
    let mut child = portcullis()
        .args(["dev", "--dir", dir.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_new_file(&info_path, before, &mut child);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    (child, info)
}

/// Waits (at most 60 s) until the broker at `url` answers `/health` with 200; fails if its
/// process `child` exits first.
pub(crate) async fn wait_healthy(client: &reqwest::Client, url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = client.get(format!("{url}/health")).send().await {
            if answer.status().is_success() {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the broker at {url} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the broker at {url} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
