//! The whole product in a real headless Chromium, as a newcomer's first try goes: sign in
//! to the portal of `portcullis dev`, click Connect on the tunneled SSH service, hand the
//! `udssv2://` link the page opened to `portcullis-launcher`, whose script runs `ssh` in
//! batch mode through the post-quantum tunnel to a real `sshd`; the page then shows the
//! connection connected and ended with the bytes the audit log records. And the sign-in
//! page for a keyboard user who mistypes the password.
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots/<test>/`; any browser console
//! error fails the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_testkit::Sshd;
use serde_json::Value;

use crate::support::operator::launcher_binary;
use crate::support::page_checks::assert_tab_reaches_every_control;
use crate::support::webdriver::{Browser, screenshot_dir};
use crate::support::{interrupt, start_dev, wait_with_timeout};

/// What the test script's `ssh` runs on the server.
/// (It lasts a few seconds, so that the page shows the session connected while it runs.)
const REMOTE_COMMAND: &str = "sleep 4; echo through-the-post-quantum-tunnel; uname -s";
/// How long the page may take to show a state change.
pub(crate) const PAGE_WAIT: Duration = Duration::from_secs(30);

/// A launcher script replacing the built-in `ssh-linux.js`: `ssh` in batch mode through
/// the service's tunnel, its output written to `output`.
fn ssh_script(sshd: &Sshd, output: &Path) -> String {
    let options = serde_json::to_string(&sshd.ssh_options()).unwrap();
    let output = serde_json::to_string(&output.display().to_string()).unwrap();
    let command = serde_json::to_string(REMOTE_COMMAND).unwrap();
    format!(
        "import {{ Process, Tasks, File, Logger }} from 'runtime';\n\
         const tunnel = data.tunnel;\n\
         const local = await Tasks.startTunnel({{\n\
             addr: tunnel.host, port: tunnel.port, ticket: tunnel.ticket,\n\
             startup_time_ms: 1000, check_certificate: tunnel.verify_ssl,\n\
             tls: tunnel.tls, protocol: tunnel.protocol,\n\
         }});\n\
         const ssh = Process.findExecutable('ssh');\n\
         if (!ssh) throw new Error('ssh is missing');\n\
         const args = [...{options}, '-p', String(local.port), '127.0.0.1', {command}];\n\
         const result = await Process.launchAndWait(ssh, args, 60000);\n\
         File.write({output}, result.stdout);\n\
         Logger.info('ssh finished');\n"
    )
}

/// Signs in through the form, as a person does.
pub(crate) async fn sign_in(browser: &Browser, username: &str, password: &str) {
    let user = browser.wait_for("#username", PAGE_WAIT).await;
    browser.type_into(&user, username).await;
    let field = browser.find("#password").await.unwrap();
    browser.type_into(&field, password).await;
    let button = browser.find("#sign-in").await.unwrap();
    browser.click(&button).await;
}

/// Signs in as dev.json's demo user and waits for the services page.
async fn sign_in_as_demo(browser: &Browser, info: &Value) {
    sign_in(
        browser,
        info["username"].as_str().unwrap(),
        info["password"].as_str().unwrap(),
    )
    .await;
    browser.wait_for("#services", PAGE_WAIT).await;
}

/// The connection panel's state once it is `wanted` (waiting at most [`PAGE_WAIT`]).
async fn wait_for_state(browser: &Browser, wanted: &str) {
    let deadline = std::time::Instant::now() + PAGE_WAIT;
    loop {
        let state = match browser.find("#connection").await {
            Some(panel) => browser.attribute(&panel, "data-state").await,
            None => None,
        };
        if state.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the connection never showed {wanted} (last: {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn number(browser: &Browser, selector: &str) -> u64 {
    let element = browser.find(selector).await.unwrap();
    let value = browser.attribute(&element, "data-value").await;
    value
        .as_deref()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{selector} has no numeric data-value: {value:?}"))
}

/// The launcher, run on the link the page opened, as the URL handler would.
fn run_launcher(link: &str, info: &Value, home: &Path) -> Child {
    run_launcher_with(link, info, home, &[])
}

/// [`run_launcher`] with `env` besides.
fn run_launcher_with(link: &str, info: &Value, home: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(launcher_binary());
    command
        .arg("--trust-fingerprint")
        .arg(info["broker_key_fingerprint"].as_str().unwrap())
        .arg("--ca-file")
        .arg(info["ca_cert"].as_str().unwrap())
        .arg(link)
        .env("PORTCULLIS_LAUNCHER_HOME", home)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// The `tunnel.stopped` audit event of the dev stack in `dir`.
fn stopped_event(dir: &Path) -> Value {
    let output = crate::support::run(
        &[
            "admin",
            "--data-dir",
            dir.to_str().unwrap(),
            "audit",
            "tail",
            "-n",
            "100",
        ],
        None,
    );
    let lines = crate::support::stdout(&output);
    lines
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|event| event["kind"] == "tunnel.stopped")
        .unwrap_or_else(|| panic!("no tunnel.stopped in the audit log:\n{lines}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_connect_ssh_through_the_launcher_and_see_the_session_end() {
    let shots = screenshot_dir("connect_ssh");
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let scripts = work.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let output = work.path().join("ssh-output.txt");
    std::fs::write(scripts.join("ssh-linux.js"), ssh_script(&sshd, &output)).unwrap();
    let dev_dir = work.path().join("dev");
    let (dev, info) = start_dev(
        &dev_dir,
        &[
            "--ssh",
            &sshd.addr().to_string(),
            "--scripts-dir",
            scripts.to_str().unwrap(),
        ],
    );
    for field in [
        "portal_url",
        "launcher_trust_command",
        "launcher_register_command",
    ] {
        assert!(
            info[field].as_str().is_some_and(|value| !value.is_empty()),
            "dev.json lacks {field}: {info}"
        );
    }

    let browser = Browser::start().await;
    browser.goto(info["portal_url"].as_str().unwrap()).await;
    browser.wait_for("#login-form", PAGE_WAIT).await;
    browser.screenshot(&shots.join("1-sign-in.png")).await;
    sign_in_as_demo(&browser, &info).await;
    browser.screenshot(&shots.join("2-services.png")).await;

    let connect = browser
        .wait_for(
            r#"[data-service-name="SSH (tunneled)"] .connect"#,
            PAGE_WAIT,
        )
        .await;
    browser.click(&connect).await;
    let link = browser.wait_for("#launch-link", PAGE_WAIT).await;
    let url = browser.attribute(&link, "href").await.unwrap_or_default();
    assert!(url.starts_with("udssv2://"), "the page opened {url:?}");
    wait_for_state(&browser, "waiting").await;

    let home = work.path().join("launcher-home");
    let launcher = run_launcher(&url, &info, &home);
    wait_for_state(&browser, "connected").await;
    browser.screenshot(&shots.join("3-connected.png")).await;
    let finished =
        tokio::task::spawn_blocking(move || wait_with_timeout(launcher, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(
        finished.status.success(),
        "the launcher failed with {}:\n{}\n{}",
        finished.status,
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr)
    );
    let remote = std::fs::read_to_string(&output).unwrap_or_default();
    assert_eq!(remote, "through-the-post-quantum-tunnel\nLinux\n");

    wait_for_state(&browser, "ended").await;
    let sent = number(&browser, "#bytes-sent").await;
    let received = number(&browser, "#bytes-received").await;
    assert!(sent > 0 && received > 0, "sent {sent}, received {received}");
    browser.screenshot(&shots.join("4-ended.png")).await;

    // The page counts as the tunnel server does: "sent to you", "received from you".
    let stopped = stopped_event(&dev_dir);
    let detail: Value = serde_json::from_str(stopped["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["sent"].as_u64(), Some(sent), "{stopped}");
    assert_eq!(detail["recv"].as_u64(), Some(received), "{stopped}");

    browser.finish_with_dev(dev, PAGE_WAIT).await;
    eprintln!("screenshots: {}", shots.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_shown_and_every_control_is_reachable_by_keyboard() {
    let shots = screenshot_dir("wrong_password");
    let work = tempfile::tempdir().unwrap();
    let (dev, info) = start_dev(work.path(), &[]);
    let browser = Browser::start().await;
    browser.goto(info["portal_url"].as_str().unwrap()).await;

    assert_tab_reaches_every_control(&browser, "the sign-in page").await;

    sign_in(
        &browser,
        info["username"].as_str().unwrap(),
        "not-the-password",
    )
    .await;
    // The sign-in page has an empty #login-error too: wait for the answer's, with text.
    let error = browser
        .wait_for("#login-error:not(:empty)", PAGE_WAIT)
        .await;
    let message = browser.text(&error).await;
    assert!(!message.trim().is_empty(), "the error is empty");
    assert_eq!(
        browser.attribute(&error, "role").await.as_deref(),
        Some("alert"),
        "the error is announced"
    );
    assert!(
        browser.find("#services").await.is_none(),
        "signed in with a wrong password"
    );
    browser.screenshot(&shots.join("wrong-password.png")).await;

    // The services page, signed in, for a keyboard user too.
    sign_in_as_demo(&browser, &info).await;
    assert_tab_reaches_every_control(&browser, "the services page").await;
    browser.finish_with_dev(dev, PAGE_WAIT).await;
}

/// A FreeRDP stand-in in a directory of its own: records its arguments (its
/// `/proc/PID/cmdline`, as every local user could read it) and what it reads on stdin
/// into `out`, then stays until killed, as a desktop session does.
fn freerdp_stand_in(bin: &Path, out: &Path) {
    let fake = bin.join("xfreerdp3");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             tr '\\0' '\\n' < /proc/$$/cmdline > '{out}/cmdline'\n\
             cat > '{out}/stdin.part'\n\
             mv '{out}/stdin.part' '{out}/stdin'\n\
             exec sleep 60\n",
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_from_the_portal_sign_in_to_freerdps_stdin() {
    let shots = screenshot_dir("pass_through");
    let work = tempfile::tempdir().unwrap();
    let dev_dir = work.path().join("dev");
    let (dev, info) = start_dev(&dev_dir, &[]);
    let echo = &info["services"][0];
    // The operator adds an RDP service that passes the portal password through.
    let admin = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["admin", "--data-dir", dev_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        crate::support::stdout(&crate::support::run(&all, stdin))
    };
    let port = echo["port"].to_string();
    admin(
        &[
            "service",
            "add",
            "Desktop",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--protocol",
            "rdp",
            "--transport",
            "tunneled",
            "--tunnel-group",
            "dev",
            "--group",
            "demo",
        ],
        None,
    );
    admin(
        &[
            "service",
            "set-credentials",
            "Desktop",
            "--mode",
            "pass-through",
            "--domain",
            "CORP",
        ],
        None,
    );

    let browser = Browser::start().await;
    browser.goto(info["portal_url"].as_str().unwrap()).await;
    sign_in_as_demo(&browser, &info).await;
    let connect = browser
        .wait_for(r#"[data-service-name="Desktop"] .connect"#, PAGE_WAIT)
        .await;
    browser.click(&connect).await;
    let link = browser.wait_for("#launch-link", PAGE_WAIT).await;
    let url = browser.attribute(&link, "href").await.unwrap_or_default();
    assert!(url.starts_with("udssv2://"), "the page opened {url:?}");
    browser.screenshot(&shots.join("1-connect.png")).await;

    let bin = work.path().join("bin");
    let out = work.path().join("out");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&out).unwrap();
    freerdp_stand_in(&bin, &out);
    let home = work.path().join("launcher-home");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut launcher = run_launcher_with(
        &url,
        &info,
        &home,
        &[("PATH", &path), ("RUST_LOG", "trace")],
    );
    let stdin = out.join("stdin");
    let deadline = std::time::Instant::now() + PAGE_WAIT;
    while !stdin.exists() {
        if let Ok(Some(status)) = launcher.try_wait() {
            panic!("the launcher ended with {status} before FreeRDP read its input");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "FreeRDP never read its input"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let password = info["password"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(&stdin).unwrap(),
        format!("{password}\n")
    );
    let cmdline = std::fs::read_to_string(out.join("cmdline")).unwrap();
    assert!(!cmdline.contains(password), "{cmdline}");
    for expected in ["/from-stdin:force", "/u:demo", "/d:CORP"] {
        assert!(cmdline.contains(expected), "{cmdline}");
    }
    wait_for_state(&browser, "preparing").await;
    browser.screenshot(&shots.join("2-launched.png")).await;

    // The user leaves: the launcher ends the session and FreeRDP with it.
    interrupt(&launcher);
    let finished =
        tokio::task::spawn_blocking(move || wait_with_timeout(launcher, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(
        finished.status.code(),
        Some(1),
        "stopped by the user: {finished:?}"
    );
    let log = std::fs::read_to_string(home.join("launcher.log")).unwrap();
    assert!(!log.contains(password), "the launcher logged the password");
    browser.finish_with_dev(dev, PAGE_WAIT).await;
}
