//! The launcher's window, headless under Xvfb, driven as a user would with xdotool: the
//! first-contact question (Trust), progress while the broker prepares the service,
//! "connected" with Disconnect, an error. A screenshot of each state is saved under
//! `$CARGO_TARGET_TMPDIR/screenshots/launcher_window/` and named in the test output.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_launcher::window::title;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::process::LauncherProcess;
use crate::support::{Stack, bounded, ca_file, free_port, local_address};

/// The primary button's centre (Trust, Disconnect, Close), relative to the window: the
/// layout of `portcullis_launcher::window`.
const PRIMARY: (u32, u32) = (452, 260);

/// A headless X server of the test's own.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start Xvfb ({error}): install the Debian packages xvfb, xdotool \
                     and imagemagick (bash scripts/test.sh installs them)"
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let display = format!(":{}", line.trim());
        assert!(display.len() > 1, "Xvfb said no display number");
        Self { child, display }
    }

    /// Runs an X client tool on this display; its stdout.
    fn tool(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run {program} ({error}): bash scripts/test.sh installs it")
            });
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (at most 60 s) for the launcher's window titled `title`; its id. On a timeout
    /// the failure names the windows there are, so that an error window says what went wrong.
    async fn window(&self, title: &str) -> String {
        let pattern = format!("^{}$", title.replace('.', "\\."));
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let found = self.tool("xdotool", &["search", "--name", &pattern]);
                if let Some(id) = found.lines().next() {
                    // Drawn: give FLTK a moment to paint after the title changed.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break id.to_owned();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let titles = self.tool("xdotool", &["search", "--name", ".", "getwindowname", "%@"]);
            panic!(
                "the window {title:?} did not appear within 60 s; the windows there are: {titles:?}"
            )
        })
    }

    /// Saves a screenshot of `window` as `name`.png and names it in the test output.
    #[allow(clippy::print_stdout)] // The test output is where the screenshots are named.
    fn screenshot(&self, window: &str, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots/launcher_window");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let status = Command::new("import")
            .args(["-window", window, path.to_str().unwrap()])
            .env("DISPLAY", &self.display)
            .status()
            .unwrap_or_else(|error| {
                panic!("cannot run import ({error}): install the Debian package imagemagick")
            });
        assert!(status.success(), "import failed for {name}");
        println!("screenshot of the launcher window: {}", path.display());
        path
    }

    /// Clicks at `(x, y)` of `window`.
    fn click(&self, window: &str, (x, y): (u32, u32)) {
        let (x, y) = (x.to_string(), y.to_string());
        self.tool(
            "xdotool",
            &["mousemove", "--window", window, &x, &y, "click", "1"],
        );
    }

    /// Presses `key` in `window`.
    fn key(&self, window: &str, key: &str) {
        self.tool("xdotool", &["windowfocus", window]);
        self.tool("xdotool", &["key", key]);
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 60 s) for the launcher's stderr to name the local tunnel address.
async fn local_address_shown(launcher: &LauncherProcess) -> SocketAddr {
    bounded("the local address", Duration::from_secs(60), async {
        loop {
            let stderr = launcher.stderr();
            if stderr.contains("127.0.0.1:") {
                break local_address(&stderr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Echoes through `local` once.
async fn echo_through(local: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(local).await.unwrap();
    stream.write_all(b"in the window").await.unwrap();
    let mut back = [0u8; 13];
    bounded(
        "the echo",
        Duration::from_secs(20),
        stream.read_exact(&mut back),
    )
    .await
    .unwrap();
    assert_eq!(&back, b"in the window");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_asks_trust_shows_progress_and_disconnect_ends_the_session() {
    let x = Xvfb::start();
    let stack = Stack::start().await;
    // A service whose target listens only once the progress was seen: the broker says
    // "Preparing service" until then.
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let service = stack.checked_service(target).await;
    let link = stack.link_to(service).await;
    let home = TempDir::new().unwrap();
    let ca = ca_file(&stack.dir).display().to_string();
    let launcher = LauncherProcess::spawn(
        ["--ca-file", &ca, &link],
        home.path(),
        &[("DISPLAY", &x.display)],
    );

    let window = x.window(title::NEW_BROKER).await;
    x.screenshot(&window, "1-first-contact");
    x.click(&window, PRIMARY);

    let window = x.window(title::PREPARING).await;
    x.screenshot(&window, "2-preparing");
    let listener = TcpListener::bind(target).await.unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });

    let window = x.window(title::CONNECTED).await;
    let _connection = echo_through(local_address_shown(&launcher).await).await;
    x.screenshot(&window, "3-connected");
    x.click(&window, PRIMARY);

    let exit = launcher.exit().await;
    assert_eq!(exit.code, Some(0), "{exit:?}");
    stack.end_session_reached_the_tunnel_server().await;
    let trust = std::fs::read_to_string(home.path().join("trust.json")).unwrap();
    assert!(trust.contains(&stack.fingerprint()), "Trust pinned the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connected_window_ends_the_session() {
    let x = Xvfb::start();
    let stack = Stack::start().await;
    let link = stack.link().await;
    let home = TempDir::new().unwrap();
    let ca = ca_file(&stack.dir).display().to_string();
    let fingerprint = stack.fingerprint();
    let launcher = LauncherProcess::spawn(
        ["--ca-file", &ca, "--trust-fingerprint", &fingerprint, &link],
        home.path(),
        &[("DISPLAY", &x.display)],
    );
    let window = x.window(title::CONNECTED).await;
    let _connection = echo_through(local_address_shown(&launcher).await).await;
    // Escape closes an FLTK window as its title bar's close button does.
    x.key(&window, "Escape");
    let exit = launcher.exit().await;
    assert_eq!(exit.code, Some(0), "{exit:?}");
    stack.end_session_reached_the_tunnel_server().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_shows_an_error_until_closed() {
    let x = Xvfb::start();
    let home = TempDir::new().unwrap();
    let link = format!(
        "udssv2://127.0.0.1:{}/{}/scrambler",
        free_port(),
        "A".repeat(48)
    );
    let launcher = LauncherProcess::spawn([&link], home.path(), &[("DISPLAY", &x.display)]);
    let window = x.window(title::ERROR).await;
    x.screenshot(&window, "4-error");
    assert!(
        launcher.stderr().contains("Cannot reach the broker"),
        "also on stderr: {}",
        launcher.stderr()
    );
    x.click(&window, PRIMARY);
    let exit = launcher.exit().await;
    assert_eq!(exit.code, Some(4), "{exit:?}");
}
