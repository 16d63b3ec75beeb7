//! Just enough of the W3C WebDriver protocol to drive a real headless Chromium through
//! Debian's `chromedriver`: sessions, navigation, elements, keys, the window's size,
//! screenshots, and the browser's console log.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::program;
use serde_json::{Value, json};

use super::process::{interrupt, wait_with_timeout};

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium and its driver, both ended on drop.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    base: String,
    /// The browser's profile directory; its path also names the browser's processes.
    profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub(crate) struct Element(String);

impl Browser {
    /// Starts `chromedriver` on a free loopback port and a headless Chromium session that
    /// accepts the dev stack's self-signed certificate and records the console.
    pub(crate) async fn start() -> Self {
        let chromium = program("chromium", "chromium");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(program("chromedriver", "chromium-driver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(answer) => answer
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|status| status["value"]["ready"].as_bool()),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {answer}"))
            .to_owned();
        Self {
            http,
            session,
            driver,
            base,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.http.request(method, &url);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    /// Opens `url`.
    pub(crate) async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The current page's URL.
    pub(crate) async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching CSS `selector`, if any.
    pub(crate) async fn find(&self, selector: &str) -> Option<Element> {
        let url = format!("{}/session/{}/elements", self.base, self.session);
        let answer: Value = self
            .http
            .post(url)
            .json(&json!({ "using": "css selector", "value": selector }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"]
            .as_array()
            .and_then(|found| found.first())
            .and_then(|element| element[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_owned()))
    }

    /// Waits (at most `limit`) for an element matching `selector`.
    pub(crate) async fn wait_for(&self, selector: &str, limit: Duration) -> Element {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.find(selector).await {
                return element;
            }
            if Instant::now() >= deadline {
                let text = self
                    .execute("return document.body ? document.body.innerText : '';")
                    .await;
                panic!(
                    "no {selector} within {limit:?} on {}; the page says:\n{}",
                    self.url().await,
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks `element`.
    pub(crate) async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Replaces what `element` holds with `text`, typed.
    pub(crate) async fn type_into(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// `element`'s attribute `name`.
    pub(crate) async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", element.0))
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// `element`'s rendered text.
    pub(crate) async fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub(crate) async fn execute(&self, script: &str) -> Value {
        self.execute_with(script, json!([])).await
    }

    /// Runs `script` (a function body) with `args` (a JSON array: its `arguments`).
    pub(crate) async fn execute_with(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Presses Tab once, as a keyboard user does.
    pub(crate) async fn press_tab(&self) {
        let tab = "\u{E004}";
        self.post(
            "/actions",
            json!({ "actions": [{
                "type": "key",
                "id": "keyboard",
                "actions": [{ "type": "keyDown", "value": tab }, { "type": "keyUp", "value": tab }],
            }]}),
        )
        .await;
    }

    /// Resizes the window to `width` × `height` CSS pixels (headless, the window is all
    /// viewport) and checks that the page sees that width.
    pub(crate) async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
        let seen = self.execute("return window.innerWidth;").await;
        assert_eq!(
            seen.as_u64(),
            Some(u64::from(width)),
            "the page is not {width} px wide"
        );
    }

    /// Saves a PNG screenshot of the page as `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.get("/screenshot").await;
        write_png(&png, path);
    }

    /// Saves a PNG screenshot of the whole page, beyond the window's height, as `path`
    /// (Chromium's DevTools command through chromedriver: WebDriver shoots the window only).
    /// The page is laid out for the shot without a scroll bar, as a phone shows it: the
    /// shot is as wide as the window.
    pub(crate) async fn full_page_screenshot(&self, path: &Path) {
        let metrics = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let height = &metrics["cssContentSize"]["height"];
        let width = self.execute("return window.innerWidth;").await;
        let shot = self
            .devtools(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
                }),
            )
            .await;
        write_png(&shot["data"], path);
    }

    /// Runs the Chrome DevTools Protocol command `command` (chromedriver's extension).
    async fn devtools(&self, command: &str, params: Value) -> Value {
        self.post(
            "/goog/cdp/execute",
            json!({ "cmd": command, "params": params }),
        )
        .await
    }

    /// The browser console's messages at level SEVERE (errors) since the last call.
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        self.post("/se/log", json!({ "type": "browser" }))
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Browser {
    /// Ends the session (and the browser) cleanly.
    pub(crate) async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }

    /// The end of a browser test of `portcullis dev`: no console errors on the pages, the
    /// browser closed, and `dev` stopped by SIGINT within `limit`, exiting successfully.
    pub(crate) async fn finish_with_dev(self, dev: Child, limit: Duration) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "browser console errors: {errors:#?}");
        self.quit().await;
        interrupt(&dev);
        let stopped = tokio::task::spawn_blocking(move || wait_with_timeout(dev, limit))
            .await
            .unwrap();
        assert!(stopped.status.success(), "{stopped:?}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that failed never ended its session: the browser outlives its driver.
        // Every one of its processes names this session's own profile directory.
        let profile = format!("--user-data-dir={}", self.profile.path().display());
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", "--", &profile])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Writes `png` (a PNG in base64, as WebDriver and DevTools answer) to `path`.
fn write_png(png: &Value, path: &Path) {
    let bytes =
        portcullis_proto::b64::decode(png.as_str().unwrap_or_default(), "screenshot").unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Where a browser test keeps its screenshots: under cargo's directory for test output.
pub(crate) fn screenshot_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
