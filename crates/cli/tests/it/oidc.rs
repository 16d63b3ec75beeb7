//! OpenID Connect sign-in against a real provider (`oidc-provider` on loopback, see
//! `support::oidc_provider`): the whole flow in headless Chromium (the provider's login
//! page, then the portal with the user's services, the user listed with its provider and
//! disabled by the admin CLI); and, driven over HTTP like a browser, a wrong `state`, a
//! replayed authorization code, a wrong nonce, a code for another client, a wrong PKCE
//! challenge, a claim that maps to no group, a local user's name (not taken over), and the
//! provider down or hanging (a clear page, in bounded time).
//! Token-level faults (wrong nonce, expiry, unknown key, other audience) are unit tests of
//! the broker's verification (`portcullis_broker::oidc::verify`).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::oidc_provider::{CLIENT_SECRET, OidcProvider};
use crate::support::operator::free_port;
use crate::support::webdriver::{Browser, screenshot_dir};
use crate::support::{run, stdout, wait_healthy};

const PAGE_WAIT: Duration = Duration::from_secs(30);
const SLUG: &str = "test-idp";

/// A broker process, killed on drop.
struct Broker {
    child: Child,
    url: String,
    config: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn admin(&self, args: &[&str]) -> String {
        let mut all = vec!["admin", "--config", &self.config];
        all.extend_from_slice(args);
        stdout(&run(&all, None))
    }

    fn redirect_uri(&self) -> String {
        format!("{}/login/oidc/{SLUG}/callback", self.url)
    }

    /// The audit events of `kind`.
    fn audit(&self, kind: &str) -> Vec<Value> {
        self.admin(&["audit", "tail", "-n", "200"])
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["kind"] == kind)
            .collect()
    }
}

/// A broker (self-signed HTTPS on loopback) whose one provider is at `issuer`; a group
/// `staff` with the service `Desk`, which the claim value `vpn-users` maps to; and a local
/// password user `carol`.
async fn start_broker(dir: &Path, port: u16, issuer: &str, timeout_secs: u64) -> Broker {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let config = dir.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\n\
             [[auth.oidc]]\nname = \"Test IdP\"\nissuer = {issuer:?}\nclient_id = \"portcullis\"\n\
             client_secret_file = {secret:?}\n\
             scopes = [\"openid\", \"profile\", \"email\", \"groups\"]\ntimeout_secs = {timeout_secs}\n\
             [auth.oidc.groups]\n\"vpn-users\" = [\"staff\"]\n",
            data = dir.join("data").to_str().unwrap(),
            secret = secret.to_str().unwrap(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["broker", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut broker = Broker {
        child,
        url: format!("https://127.0.0.1:{port}"),
        config: config.to_str().unwrap().to_owned(),
    };
    wait_healthy(&http(), &broker.url, &mut broker.child).await;
    broker.admin(&["group", "add", "staff"]);
    broker.admin(&[
        "service",
        "add",
        "Desk",
        "--host",
        "127.0.0.1",
        "--port",
        "3389",
        "--protocol",
        "rdp",
        "--group",
        "staff",
        "--readiness",
        "off",
    ]);
    stdout(&run(
        &["admin", "--config", &broker.config, "user", "add", "carol"],
        Some("carol's password\n"),
    ));
    broker
}

/// An HTTP client like a browser that follows no redirects (the test follows them).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A tiny cookie jar: name → value, for one site.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, answer: &reqwest::Response) {
        for value in answer.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.0.retain(|(known, _)| known != name);
            if !value.is_empty() {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }
}

async fn get(client: &reqwest::Client, url: &str, jar: &mut Jar) -> reqwest::Response {
    let answer = client
        .get(url)
        .header(COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    jar.take(&answer);
    answer
}

fn location(answer: &reqwest::Response, base: &str) -> String {
    let location = answer
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no redirect: {}", answer.status()))
        .to_str()
        .unwrap();
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

/// Signs `login` in at the provider as a browser would, up to the broker's callback URL
/// (not visited): the broker's cookies (with the pending sign-in) and that URL.
async fn through_provider(broker: &Broker, issuer: &str, login: &str) -> (Jar, String) {
    through_provider_with(broker, issuer, login, str::to_owned).await
}

/// [`through_provider`], with the authorization URL the broker made changed by `tamper`
/// (as an attacker between the browser and the provider would).
async fn through_provider_with(
    broker: &Broker,
    issuer: &str,
    login: &str,
    tamper: impl Fn(&str) -> String,
) -> (Jar, String) {
    let client = http();
    let mut broker_jar = Jar::default();
    let mut provider_jar = Jar::default();
    let start = get(
        &client,
        &format!("{}/login/oidc/{SLUG}", broker.url),
        &mut broker_jar,
    )
    .await;
    assert_eq!(start.status(), 303);
    assert!(broker_jar.get("__Host-portcullis_oidc").is_some());
    let mut url = tamper(&location(&start, &broker.url));
    // Authorization endpoint → interaction (login page) → POST → back to authorization →
    // redirect to the broker.
    for _ in 0..10 {
        if url.starts_with(&broker.redirect_uri()) {
            return (broker_jar, url);
        }
        let answer = get(&client, &url, &mut provider_jar).await;
        if answer.status().is_redirection() {
            url = location(&answer, issuer);
            continue;
        }
        let page = answer.text().await.unwrap();
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no login form at {url}:\n{page}"));
        let action = if action.starts_with('/') {
            format!("{issuer}{action}")
        } else {
            action.to_owned()
        };
        let post = client
            .post(&action)
            .header(COOKIE, provider_jar.header())
            .form(&[("prompt", "login"), ("login", login), ("password", "any")])
            .send()
            .await
            .unwrap();
        provider_jar.take(&post);
        url = location(&post, issuer);
    }
    panic!("never redirected to the broker (last: {url})");
}

/// Visits the broker's callback: status, `data-reason` of a refusal (if any), cookies.
async fn callback(url: &str, jar: &mut Jar) -> (u16, Option<String>) {
    let answer = get(&http(), url, jar).await;
    let status = answer.status().as_u16();
    let page = answer.text().await.unwrap();
    let reason = page
        .split("data-reason=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    (status, reason)
}

/// The services page of the session in `jar`: the names of its services.
async fn services(broker: &Broker, jar: &mut Jar) -> Vec<String> {
    let answer = get(&http(), &format!("{}/api/services", broker.url), jar).await;
    assert_eq!(answer.status(), 200);
    let list: Vec<Value> = answer.json().await.unwrap();
    list.iter()
        .map(|service| service["name"].as_str().unwrap().to_owned())
        .collect()
}

fn users() -> Value {
    json!({
        "alice": { "groups": ["vpn-users", "unrelated"] },
        "bob": { "groups": ["unmapped"] },
        "carol": { "groups": ["vpn-users"] },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_in_a_browser_lands_on_the_portal_and_disable_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (broker_port, provider_port) = (free_port(), free_port());
    let redirect = format!("https://127.0.0.1:{broker_port}/login/oidc/{SLUG}/callback");
    let provider = OidcProvider::start(provider_port, &redirect, &users());
    let broker = start_broker(dir.path(), broker_port, &provider.issuer, 10).await;
    let shots = screenshot_dir("oidc_sign_in");

    let browser = Browser::start().await;
    browser.goto(&broker.url).await;
    let button = browser.wait_for(&format!("#oidc-{SLUG}"), PAGE_WAIT).await;
    assert_eq!(browser.text(&button).await, "Sign in with Test IdP");
    browser.screenshot(&shots.join("1-sign-in.png")).await;
    browser.click(&button).await;

    // The provider's own login page.
    let login = browser.wait_for("input[name=login]", PAGE_WAIT).await;
    assert!(browser.url().await.starts_with(&provider.issuer));
    browser.type_into(&login, "alice").await;
    let password = browser.find("input[name=password]").await.unwrap();
    browser.type_into(&password, "any password").await;
    browser.screenshot(&shots.join("2-provider.png")).await;
    // The provider's page is not ours: its console messages are not checked.
    browser.console_errors().await;
    let submit = browser.find("button[type=submit]").await.unwrap();
    browser.click(&submit).await;

    // Back on the portal, signed in, with the services of the mapped group.
    browser
        .wait_for("li[data-service-name=\"Desk\"]", PAGE_WAIT)
        .await;
    assert_eq!(browser.url().await, format!("{}/", broker.url));
    let header = browser.wait_for(".user strong", PAGE_WAIT).await;
    assert_eq!(browser.text(&header).await, "alice");
    browser.screenshot(&shots.join("3-services.png")).await;
    let errors = browser.console_errors().await;
    assert!(
        errors.is_empty(),
        "console errors on the portal: {errors:?}"
    );

    let list = broker.admin(&["user", "list"]);
    assert!(list.contains("alice\tstaff\toidc:Test IdP"), "{list}");
    assert!(list.contains("carol\t\tpassword"), "{list}");
    let signed_in = broker.audit("login.oidc");
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    assert_eq!(signed_in[0]["username"], "alice");
    let detail: Value = serde_json::from_str(signed_in[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["provider"], "Test IdP");
    assert_eq!(detail["groups"], json!(["staff"]));

    // Disabled: the session ends at once, and the next sign-in is refused.
    broker.admin(&["user", "disable", "alice"]);
    browser.goto(&broker.url).await;
    let button = browser.wait_for(&format!("#oidc-{SLUG}"), PAGE_WAIT).await;
    browser.click(&button).await;
    // The provider still knows alice: straight back to the broker, which refuses.
    let refused = browser.wait_for("#oidc-refused", PAGE_WAIT).await;
    assert_eq!(
        browser.attribute(&refused, "data-reason").await.as_deref(),
        Some("disabled")
    );
    assert!(browser.text(&refused).await.contains("disabled"));
    browser.screenshot(&shots.join("4-disabled.png")).await;
    browser.quit().await;
    let refusals = broker.audit("login.oidc_refused");
    assert!(
        refusals.iter().any(|event| event["detail"]
            .as_str()
            .unwrap()
            .contains("\"reason\":\"disabled\"")),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refuses_wrong_state_replayed_codes_wrong_nonce_other_clients_and_takeovers() {
    let dir = tempfile::tempdir().unwrap();
    let (broker_port, provider_port) = (free_port(), free_port());
    let redirect = format!("https://127.0.0.1:{broker_port}/login/oidc/{SLUG}/callback");
    let provider = OidcProvider::start(provider_port, &redirect, &users());
    let broker = start_broker(dir.path(), broker_port, &provider.issuer, 10).await;

    // A wrong state: refused, and the code is not redeemed.
    let (mut jar, url) = through_provider(&broker, &provider.issuer, "alice").await;
    let tampered = url.replace("state=", "state=x");
    assert_eq!(
        callback(&tampered, &mut jar).await,
        (403, Some("state".to_owned()))
    );
    // Without the browser's pending sign-in cookie: refused too.
    let (_, url) = through_provider(&broker, &provider.issuer, "alice").await;
    assert_eq!(
        callback(&url, &mut Jar::default()).await,
        (403, Some("state".to_owned()))
    );

    // The real callback signs in; the same code again is refused by the provider.
    let (mut jar, url) = through_provider(&broker, &provider.issuer, "alice").await;
    let pending = jar.get("__Host-portcullis_oidc").unwrap().to_owned();
    assert_eq!(callback(&url, &mut jar).await, (200, None));
    assert!(jar.get("portcullis_session").is_some());
    assert_eq!(services(&broker, &mut jar).await, ["Desk"]);
    let mut replay = Jar(vec![("__Host-portcullis_oidc".into(), pending)]);
    assert_eq!(
        callback(&url, &mut replay).await,
        (403, Some("token".to_owned()))
    );
    assert!(replay.get("portcullis_session").is_none());

    // The ID token carries another nonce than the browser's cookie: refused.
    let (mut jar, url) = through_provider_with(&broker, &provider.issuer, "alice", |url| {
        url.replace("nonce=", "nonce=other")
    })
    .await;
    assert_eq!(
        callback(&url, &mut jar).await,
        (403, Some("token".to_owned()))
    );
    // A code issued to another client (its ID token's audience): the provider refuses it.
    let (mut jar, url) = through_provider_with(&broker, &provider.issuer, "alice", |url| {
        url.replace("client_id=portcullis", "client_id=other")
    })
    .await;
    assert_eq!(
        callback(&url, &mut jar).await,
        (403, Some("token".to_owned()))
    );
    // A PKCE challenge not made from the cookie's verifier: the provider refuses the code.
    let (mut jar, url) = through_provider_with(&broker, &provider.issuer, "alice", |url| {
        url.replace("code_challenge=", "code_challenge=AAAA")
    })
    .await;
    assert_eq!(
        callback(&url, &mut jar).await,
        (403, Some("token".to_owned()))
    );

    // A claim that maps to no group: signed in, no services.
    let (mut jar, url) = through_provider(&broker, &provider.issuer, "bob").await;
    assert_eq!(callback(&url, &mut jar).await, (200, None));
    assert!(services(&broker, &mut jar).await.is_empty());

    // A local user's name is not taken over.
    let (mut jar, url) = through_provider(&broker, &provider.issuer, "carol").await;
    assert_eq!(
        callback(&url, &mut jar).await,
        (403, Some("name_taken".to_owned()))
    );
    assert!(jar.get("portcullis_session").is_none());
    let list = broker.admin(&["user", "list"]);
    assert!(list.contains("carol\t\tpassword"), "{list}");

    let refusals: Vec<(String, String)> = broker
        .audit("login.oidc_refused")
        .iter()
        .map(|event| {
            let detail: Value = serde_json::from_str(event["detail"].as_str().unwrap()).unwrap();
            assert_eq!(detail["provider"], "Test IdP");
            let reason = detail["reason"].as_str().unwrap().to_owned();
            (reason, detail["detail"].as_str().unwrap().to_lowercase())
        })
        .collect();
    let reasons: Vec<&str> = refusals.iter().map(|(reason, _)| reason.as_str()).collect();
    let expected = [
        "state",
        "state",
        "token",
        "token",
        "token",
        "token",
        "name_taken",
    ];
    assert_eq!(reasons, expected);
    // The technical reasons, for the operator.
    assert!(refusals[1].1.contains("cookie"), "{refusals:?}");
    assert!(refusals[2].1.contains("invalid_grant"), "{refusals:?}");
    assert!(refusals[3].1.contains("nonce"), "{refusals:?}");
    assert!(refusals[4].1.contains("invalid_grant"), "{refusals:?}");
    assert!(refusals[5].1.contains("invalid_grant"), "{refusals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_down_or_hanging_gives_a_clear_page_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let (broker_port, provider_port) = (free_port(), free_port());
    let redirect = format!("https://127.0.0.1:{broker_port}/login/oidc/{SLUG}/callback");
    // Up for one sign-in (discovery cached), then down before the code is redeemed.
    let mut provider = OidcProvider::start(provider_port, &redirect, &users());
    let issuer = provider.issuer.clone();
    let broker = start_broker(dir.path(), broker_port, &issuer, 2).await;
    let (mut jar, url) = through_provider(&broker, &issuer, "alice").await;
    provider.stop();
    let started = Instant::now();
    assert_eq!(
        callback(&url, &mut jar).await,
        (502, Some("unreachable".to_owned()))
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A provider that accepts connections and never answers: a page within the timeout.
    let hanging = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let issuer = format!("http://127.0.0.1:{}", hanging.local_addr().unwrap().port());
    let broker = start_broker(dir2.path(), free_port(), &issuer, 2).await;
    let started = Instant::now();
    let answer = get(
        &http(),
        &format!("{}/login/oidc/{SLUG}", broker.url),
        &mut Jar::default(),
    )
    .await;
    assert_eq!(answer.status(), 502);
    let page = answer.text().await.unwrap();
    assert!(page.contains("data-reason=\"unreachable\""), "{page}");
    assert!(page.contains("Test IdP could not be reached"), "{page}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(hanging);
}
