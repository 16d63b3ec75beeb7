//! The administrator's side in a real headless Chromium, on `portcullis dev`: the admin
//! adds a TCP service to a real `sshd` on the services page and grants it to the demo group
//! on its edit page; the demo user connects through the `portcullis-launcher` binary (the
//! built-in `tcp` script) and runs a real `ssh` through its local port; the admin watches
//! the connection's bytes grow on the live connections page and clicks *End*; the user's
//! `ssh` ends, the launcher says why and exits with code 12; the audit page, filtered by
//! the service, tells the whole story. A screenshot of every admin page goes to
//! `$CARGO_TARGET_TMPDIR/screenshots/admin_ends_a_connection/`.
//!
//! And every admin page (with a live connection, a tunneled RDP service, the token page of
//! a tunnel server registered from a phone-sized window) in three window widths — 1280,
//! 1040 (just wider than where tables turn into lists) and 400 CSS pixels — with its
//! disclosures closed and open: Tab reaches each control, and the page fits the window
//! (`support::page_checks`). Whole-page screenshots go to
//! `$CARGO_TARGET_TMPDIR/screenshots/admin_narrow_window/`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{Sshd, program};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::{PAGE_WAIT, sign_in};
use crate::support::operator::{LauncherRun, Portal};
use crate::support::page_checks::{
    assert_fits_the_window, assert_tab_reaches_every_control, open_every_disclosure,
};
use crate::support::webdriver::{Browser, screenshot_dir};
use crate::support::{interrupt, start_dev, wait_with_timeout};

/// The service the administrator adds.
const SERVICE: &str = "Lab SSH";
/// What the user's `ssh` runs: output for up to two minutes, a line every 50 ms.
const REMOTE_COMMAND: &str =
    "for i in $(seq 1 2400); do echo \"line $i of the session\"; sleep 0.05; done";

/// The user's `ssh`, through the launcher's local port: when it ended, how, and what it
/// printed.
struct SshRun {
    ended: Option<std::thread::JoinHandle<(Instant, ExitStatus, usize)>>,
    pid: u32,
}

impl SshRun {
    fn start(sshd: &Sshd, local: std::net::SocketAddr) -> Self {
        let mut child = Command::new(program("ssh", "openssh-client"))
            .args(sshd.ssh_args("127.0.0.1", local.port(), REMOTE_COMMAND))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut stdout = child.stdout.take().unwrap();
        let ended = std::thread::spawn(move || {
            let mut output = Vec::new();
            let _ = stdout.read_to_end(&mut output);
            let status = child.wait().unwrap();
            (Instant::now(), status, output.len())
        });
        Self {
            ended: Some(ended),
            pid,
        }
    }

    /// Waits (at most [`PAGE_WAIT`]) for its end: when, its exit status, how many bytes it
    /// printed.
    fn wait(mut self) -> (Instant, ExitStatus, usize) {
        let deadline = Instant::now() + PAGE_WAIT;
        while !self.ended.as_ref().is_some_and(|ended| ended.is_finished()) {
            assert!(Instant::now() < deadline, "the user's ssh did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.ended.take().unwrap().join().unwrap()
    }
}

impl Drop for SshRun {
    fn drop(&mut self) {
        // A test that failed before the end: the session must not outlive it.
        if self
            .ended
            .as_ref()
            .is_some_and(|ended| !ended.is_finished())
        {
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
        }
    }
}

/// Saves a screenshot of the page as `shot` and says where.
#[allow(clippy::print_stderr)] // The test output is where the screenshots are named.
async fn shoot(browser: &Browser, shot: &Path) {
    browser.screenshot(shot).await;
    eprintln!("screenshot: {}", shot.display());
}

/// The admin page at `path`, once `selector` shows, its screenshot saved as `shot`.
async fn visit(browser: &Browser, base: &str, path: &str, selector: &str, shot: &Path) {
    browser.goto(&format!("{base}{path}")).await;
    browser.wait_for(selector, PAGE_WAIT).await;
    shoot(browser, shot).await;
}

/// Chooses `value` in the `<select>` `select` (a CSS selector), as a click does.
async fn choose(browser: &Browser, select: &str, value: &str) {
    let option = browser
        .find(&format!("{select} option[value=\"{value}\"]"))
        .await
        .unwrap_or_else(|| panic!("{select} has no option {value}"));
    browser.click(&option).await;
}

/// Types `text` into the field `selector`.
async fn fill(browser: &Browser, selector: &str, text: &str) {
    let field = browser.find(selector).await.unwrap();
    browser.type_into(&field, text).await;
}

/// The figure of the live session's `.sent` cell (empty until its tunnel server reported).
async fn sent_figure(browser: &Browser) -> Option<u64> {
    let cell = browser.find("#live tr[data-session] .sent").await?;
    browser.attribute(&cell, "data-value").await?.parse().ok()
}

/// Waits (at most [`PAGE_WAIT`]) until the page's `.sent` figure is above `floor`.
async fn sent_above(browser: &Browser, floor: u64) -> u64 {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        if let Some(sent) = sent_figure(browser).await.filter(|sent| *sent > floor) {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed more than {floor} bytes sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The event names of the audit page, newest first.
async fn audit_kinds(browser: &Browser) -> Vec<String> {
    let kinds = browser
        .execute(
            "return Array.from(document.querySelectorAll('#audit tbody tr'))\n\
                 .map((row) => row.dataset.kind);",
        )
        .await;
    serde_json::from_value(kinds).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_service_watches_its_connection_and_ends_it() {
    let shots = screenshot_dir("admin_ends_a_connection");
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (dev, info) = start_dev(&work.path().join("dev"), &[]);
    let base = info["broker_url"].as_str().unwrap().trim_end_matches('/');
    let text = |field: &str| info[field].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    browser.goto(&text("portal_url")).await;
    sign_in(&browser, &text("admin_username"), &text("admin_password")).await;
    let link = browser.wait_for("#admin-link", PAGE_WAIT).await;
    browser.click(&link).await;
    browser.wait_for("#overview", PAGE_WAIT).await;
    shoot(&browser, &shots.join("1-overview.png")).await;
    visit(
        &browser,
        base,
        "/admin/users",
        "#users",
        &shots.join("2-users.png"),
    )
    .await;
    visit(
        &browser,
        base,
        "/admin/tunnels",
        "#tunnel-servers",
        &shots.join("3-tunnels.png"),
    )
    .await;
    visit(
        &browser,
        base,
        "/admin/key",
        "#key-fingerprint",
        &shots.join("4-key.png"),
    )
    .await;

    // The service, added without a group, then granted to the demo group on its own page.
    visit(
        &browser,
        base,
        "/admin/services",
        "#new-service-form",
        &shots.join("5-services.png"),
    )
    .await;
    fill(&browser, "#new-name", SERVICE).await;
    fill(&browser, "#new-host", "127.0.0.1").await;
    fill(&browser, "#new-port", &sshd.addr().port().to_string()).await;
    choose(&browser, "#new-protocol", "tcp").await;
    choose(&browser, "#new-transport", "tunneled").await;
    fill(&browser, "#new-tunnel-group", "dev").await;
    browser
        .click(&browser.find("#new-save").await.unwrap())
        .await;
    let notice = browser.wait_for("#notice", PAGE_WAIT).await;
    assert!(
        browser.text(&notice).await.contains("Added the service"),
        "{}",
        browser.text(&notice).await
    );
    let change = browser
        .wait_for(&format!("tr[data-service=\"{SERVICE}\"] a"), PAGE_WAIT)
        .await;
    browser.click(&change).await;
    let form = browser
        .wait_for("form[id$=\"-service-form\"]", PAGE_WAIT)
        .await;
    let form_id = browser.attribute(&form, "id").await.unwrap();
    let service_id: i64 = form_id
        .trim_start_matches('s')
        .trim_end_matches("-service-form")
        .parse()
        .unwrap();
    shoot(&browser, &shots.join("6-service.png")).await;
    let demo_box = browser
        .find(&format!("#{form_id} input[name=\"group\"][value=\"demo\"]"))
        .await
        .expect("the demo group's box");
    browser.click(&demo_box).await;
    browser
        .click(&browser.find(&format!("#s{service_id}-save")).await.unwrap())
        .await;
    let notice = browser.wait_for("#notice", PAGE_WAIT).await;
    assert!(
        browser.text(&notice).await.contains("Saved the service"),
        "{}",
        browser.text(&notice).await
    );
    let granted = browser
        .wait_for(
            &format!("tr[data-service=\"{SERVICE}\"] td[data-label=\"Groups\"]"),
            PAGE_WAIT,
        )
        .await;
    assert_eq!(browser.text(&granted).await, "demo");

    // The user connects: the link through the portal's API, the launcher binary, a real
    // `ssh` through its local port.
    let ca = Path::new(&text("ca_cert")).to_owned();
    let portal = Portal::new(base, &ca);
    let demo = portal.sign_in(&text("username"), &text("password")).await;
    let url = portal.connect(&demo, service_id).await;
    let home = work.path().join("launcher-home");
    let launcher = LauncherRun::start(&url, &text("broker_key_fingerprint"), &ca, &home);
    let ssh = SshRun::start(&sshd, launcher.local_address().await);

    // The administrator sees it live, its bytes growing, and ends it.
    visit(
        &browser,
        base,
        "/admin/connections",
        "#live tr[data-session][data-state=\"live\"]",
        &shots.join("7-connections.png"),
    )
    .await;
    let first = sent_above(&browser, 0).await;
    let later = sent_above(&browser, first).await;
    eprintln!("the page showed {first} then {later} bytes sent to the user");
    shoot(&browser, &shots.join("8-connections-growing.png")).await;
    let end = browser.find("button.end-connection").await.unwrap();
    let clicked = Instant::now();
    browser.click(&end).await;
    let (ended, status, printed) = tokio::task::spawn_blocking(move || ssh.wait())
        .await
        .unwrap();
    let took = ended.saturating_duration_since(clicked);
    eprintln!(
        "the user's ssh ended {took:?} after the click on End ({status}, {printed} bytes printed)"
    );
    // Speed is the benchmark's (`end_connection`); this only says the end came.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!status.success(), "ssh ended normally: {status}");
    let (code, stderr) = launcher.finish().await;
    assert_eq!(code, Some(12), "{stderr}");
    assert!(
        stderr.contains("The administrator ended this connection."),
        "{stderr}"
    );
    let notice = browser.wait_for("#notice", PAGE_WAIT).await;
    assert!(
        browser
            .text(&notice)
            .await
            .contains("Ending the connection of demo"),
        "{}",
        browser.text(&notice).await
    );
    browser
        .wait_for("#live-empty:not([hidden])", PAGE_WAIT)
        .await;
    shoot(&browser, &shots.join("9-connections-ended.png")).await;

    // The audit page, filtered by the service: the whole story, newest first.
    visit(
        &browser,
        base,
        "/admin/audit",
        "#audit-filter",
        &shots.join("10-audit.png"),
    )
    .await;
    fill(&browser, "#filter-service", SERVICE).await;
    browser.click(&browser.find("#filter").await.unwrap()).await;
    browser
        .wait_for("#audit tr[data-kind=\"tunnel.stopped\"]", PAGE_WAIT)
        .await;
    shoot(&browser, &shots.join("11-audit-service.png")).await;
    let mut story = audit_kinds(&browser).await;
    story.reverse();
    let expected = [
        "admin.service.added",
        "admin.service.changed",
        "ticket.issued",
        "ticket.exchanged",
        "tunnel.started",
        "admin.connection.ended",
        "tunnel.stopped",
    ];
    assert_eq!(story, expected, "the audit page of {SERVICE}");
    let stopped = browser
        .find("#audit tr[data-kind=\"tunnel.stopped\"] code.detail")
        .await
        .unwrap();
    let detail: Value = serde_json::from_str(&browser.text(&stopped).await).unwrap();
    assert_eq!(detail["ended_by"], "administrator", "{detail}");
    assert_eq!(
        detail["end_requested_by"],
        text("admin_username"),
        "{detail}"
    );
    assert!(detail["sent"].as_u64().unwrap() >= later, "{detail}");

    browser.finish_with_dev(dev, PAGE_WAIT).await;
}

/// The window widths (CSS pixels) the admin pages are checked in: a desktop's, a window
/// just wider than where tables turn into lists of labelled fields (64 em, 1024 px), and a
/// phone's held upright (or half of a small laptop's screen).
const WIDTHS: [(u32, &str); 3] = [(1280, "wide"), (1040, "medium"), (400, "narrow")];
/// The window's height while the pages are checked.
const HEIGHT: u32 = 860;

/// An admin page to check: its path, an element that shows it is there, and its name.
struct AdminPage {
    path: String,
    ready: &'static str,
    name: &'static str,
}

/// Opens `page` and waits for it.
async fn open(browser: &Browser, base: &str, page: &AdminPage) {
    browser.goto(&format!("{base}{}", page.path)).await;
    browser.wait_for(page.ready, PAGE_WAIT).await;
}

/// The page open in the window's current width, with every disclosure closed and then
/// open: Tab reaches each control, the page fits the window, and its screenshot (the whole
/// page) is saved as `shot` (and `shot` with `.open` when it had closed disclosures).
async fn check_page(browser: &Browser, page: &str, shot: &Path) {
    assert_tab_reaches_every_control(browser, page).await;
    assert_fits_the_window(browser, page).await;
    shoot_whole(browser, shot).await;
    if open_every_disclosure(browser).await > 0 {
        let page = format!("{page}, disclosures open");
        assert_tab_reaches_every_control(browser, &page).await;
        assert_fits_the_window(browser, &page).await;
        shoot_whole(browser, &shot.with_extension("open.png")).await;
    }
}

/// Saves a screenshot of the whole page as `shot` and says where.
#[allow(clippy::print_stderr)] // The test output is where the screenshots are named.
async fn shoot_whole(browser: &Browser, shot: &Path) {
    browser.full_page_screenshot(shot).await;
    eprintln!("screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_page_is_keyboard_reachable_and_fits_narrow_and_wide_windows() {
    let shots = screenshot_dir("admin_narrow_window");
    let work = tempfile::tempdir().unwrap();
    let dev_dir = work.path().join("dev");
    let (dev, info) = start_dev(&dev_dir, &[]);
    let base = info["broker_url"].as_str().unwrap().trim_end_matches('/');
    let text = |field: &str| info[field].as_str().unwrap().to_owned();

    // An RDP service signing its users in (the longest form of the service page), at a
    // long host name (the widest table cell).
    let admin_cli = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", dev_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        crate::support::stdout(&crate::support::run(&all, None))
    };
    admin_cli(&[
        "service",
        "add",
        "Desktop",
        "--host",
        "rdp-gateway-01.eu-west.corp.example.com",
        "--port",
        "3389",
        "--readiness",
        "off",
        "--protocol",
        "rdp",
        "--transport",
        "tunneled",
        "--tunnel-group",
        "dev",
        "--group",
        "demo",
    ]);
    admin_cli(&[
        "service",
        "set-credentials",
        "Desktop",
        "--mode",
        "pass-through",
        "--domain",
        "CORP",
    ]);

    // A live connection for the connections page: the demo user through the launcher to
    // the tunneled echo service, held open.
    let echo = info["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["transport"] == "tunneled")
        .expect("dev.json's tunneled echo service");
    let ca = Path::new(&text("ca_cert")).to_owned();
    let portal = Portal::new(base, &ca);
    let demo = portal.sign_in(&text("username"), &text("password")).await;
    let url = portal.connect(&demo, echo["id"].as_i64().unwrap()).await;
    let launcher = LauncherRun::start(
        &url,
        &text("broker_key_fingerprint"),
        &ca,
        &work.path().join("launcher-home"),
    );
    let mut held = tokio::net::TcpStream::connect(launcher.local_address().await)
        .await
        .unwrap();
    held.write_all(b"hello through the tunnel\n").await.unwrap();
    let mut echoed = [0u8; 25];
    held.read_exact(&mut echoed).await.unwrap();

    let browser = Browser::start().await;
    browser.goto(&text("portal_url")).await;
    sign_in(&browser, &text("admin_username"), &text("admin_password")).await;
    browser.wait_for("#admin-link", PAGE_WAIT).await;
    browser.goto(&format!("{base}/admin/services")).await;
    let change = browser
        .wait_for("tr[data-service=\"Desktop\"] a", PAGE_WAIT)
        .await;
    let service_page = browser.attribute(&change, "href").await.unwrap();
    let service_page = service_page.trim_start_matches(base).to_owned();
    let pages = [
        AdminPage {
            path: "/admin".into(),
            ready: "#overview",
            name: "overview",
        },
        AdminPage {
            path: "/admin/connections".into(),
            ready: "#live tr[data-session][data-state=\"live\"]",
            name: "connections",
        },
        AdminPage {
            path: "/admin/users".into(),
            ready: "#users",
            name: "users",
        },
        AdminPage {
            path: "/admin/services".into(),
            ready: "#services",
            name: "services",
        },
        AdminPage {
            path: service_page,
            ready: "#credentials-form",
            name: "service",
        },
        AdminPage {
            path: "/admin/tunnels".into(),
            ready: "#tunnel-servers",
            name: "tunnels",
        },
        AdminPage {
            path: "/admin/key".into(),
            ready: "#key-fingerprint",
            name: "key",
        },
        AdminPage {
            path: "/admin/audit".into(),
            ready: "#audit tbody tr",
            name: "audit",
        },
    ];
    for (width, window) in WIDTHS {
        browser.set_window_size(width, HEIGHT).await;
        for (number, page) in pages.iter().enumerate() {
            open(&browser, base, page).await;
            let shot = shots.join(format!("{window}-{}-{}.png", number + 1, page.name));
            check_page(&browser, &format!("{} ({window})", page.path), &shot).await;
        }
    }
    // A form used in the narrow window: a new tunnel server, and its token page.
    open(&browser, base, &pages[5]).await;
    fill(&browser, "#tunnel-name", "edge-2").await;
    fill(&browser, "#tunnel-address", "edge-2.example.com:7443").await;
    fill(&browser, "#tunnel-group", "edge").await;
    browser
        .click(&browser.find("#add-tunnel").await.unwrap())
        .await;
    browser.wait_for("#new-token", PAGE_WAIT).await;
    let shot = shots.join(format!("narrow-{}-tunnel-token.png", pages.len() + 1));
    check_page(&browser, "the new tunnel server's token (narrow)", &shot).await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
    browser.quit().await;
    drop(held);
    drop(launcher);
    interrupt(&dev);
    let stopped = tokio::task::spawn_blocking(move || wait_with_timeout(dev, PAGE_WAIT))
        .await
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
}
